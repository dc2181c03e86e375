"""Which compute backends this installation has: the CPU always, CUDA when built."""
from __future__ import annotations


def cuda_info() -> dict:
    """``cuda_built``, ``cuda_available`` and ``cuda``: the device, or why it cannot be used."""
    try:
        from . import _cuda  # built only with RESNET_CPP_CUDA=1
    except ImportError as e:
        return {"cuda_built": False, "cuda_available": False, "cuda": f"not built ({e})"}
    return {"cuda_built": True, "cuda_available": bool(_cuda.available()),
            "cuda": _cuda.device_summary()}
