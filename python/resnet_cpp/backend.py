"""Which compute backends this installation has: the CPU always, CUDA when built."""
from __future__ import annotations


def cuda_info() -> dict:
    """``{"cuda_built": bool, "cuda": str}``: the device, or why CUDA is unavailable."""
    try:
        from . import _cuda  # noqa: F401  (built only with RESNET_CPP_CUDA=ON)
    except ImportError as e:
        return {"cuda_built": False, "cuda": f"not built ({e})"}
    return {"cuda_built": True, "cuda": _cuda.device_summary()}
