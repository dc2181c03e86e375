"""The guard of the tests that need the CUDA backend (test_cuda.py, test_cuda_models.py)."""
from __future__ import annotations

import pytest


def cuda_module_or_skip():
    """resnet_cpp._cuda, or a skip of the calling test module saying why it cannot run (not
    built, or no usable device; on the CPU emulator it is usable)."""
    try:
        from resnet_cpp import _cuda
    except ImportError as e:
        pytest.skip(f"resnet_cpp._cuda not built ({e}); build with RESNET_CPP_CUDA=1",
                    allow_module_level=True)
    if not _cuda.available():
        pytest.skip(f"CUDA unavailable: {_cuda.why_unavailable()}", allow_module_level=True)
    return _cuda
