"""resnet_cpp: train ResNets on the CPU with hand-written C++ kernels, no framework.

Kernels live in the compiled extension ``resnet_cpp._core``; ``resnet_cpp.functional``
wraps them as NumPy float32 forward/backward functions.
"""
from __future__ import annotations

from . import _core
from ._core import (
    active_isa,
    compiled_isas,
    conv_algorithm,
    detected_isa,
    num_threads,
    set_conv_algorithm,
    set_max_isa,
    set_num_threads,
)

from . import checkpoint, data, functional, models, nn, optim, train  # noqa: E402

__version__ = _core.__version__

__all__ = [
    "__version__",
    "active_isa",
    "build_info",
    "checkpoint",
    "compiled_isas",
    "conv_algorithm",
    "data",
    "functional",
    "models",
    "nn",
    "optim",
    "train",
    "detected_isa",
    "num_threads",
    "set_conv_algorithm",
    "set_max_isa",
    "set_num_threads",
]


def build_info() -> dict:
    """Describe this build: version, ISA paths, OpenMP, threads, CUDA and the usable devices."""
    from . import backend

    return {
        "version": __version__,
        "compiled_isas": list(_core.compiled_isas()),
        "detected_isa": _core.detected_isa(),
        "max_isa": _core.max_isa(),
        "active_isa": _core.active_isa(),
        "openmp": bool(_core.openmp),
        "num_threads": _core.num_threads(),
        "conv_algorithm": _core.conv_algorithm(),
        **backend.cuda_info(),
        "devices": backend.devices(),
    }
