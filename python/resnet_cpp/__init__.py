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

from ._precision import bf16_active, precision, set_precision, use_precision  # noqa: E402
from . import checkpoint, data, distributed, functional, io, models, nn, optim, train  # noqa: E402

__version__ = _core.__version__

__all__ = [
    "__version__",
    "active_isa",
    "bf16_active",
    "build_info",
    "checkpoint",
    "compiled_isas",
    "conv_algorithm",
    "conv_precision",
    "data",
    "distributed",
    "functional",
    "io",
    "models",
    "nn",
    "optim",
    "precision",
    "set_precision",
    "use_precision",
    "train",
    "detected_isa",
    "num_threads",
    "set_conv_algorithm",
    "set_max_isa",
    "set_num_threads",
]


# What each convolution setting guarantees (README, "Precision"; measured by
# benchmarks/precision.py --models, tested by tests/test_precision.py for "auto").
CONV_PRECISION = {
    "auto": "float32: every model output and gradient within 10x PyTorch fp32's error "
            "against float64 (tested: ResNet-20 A/B, ResNet-56 v2, ResNet-18; measured <= 3.5x)",
    "fast": "fast (opt-in): F(4x4) Winograd; gradients up to 9x PyTorch fp32's error given "
            "the same ReLU branches, forward 4x, and 3-4x as many ReLU masks flipped "
            "(worst gradient seen with a flip: 2e-2 relative)",
    "direct": "float32: direct convolution only (measured <= 3.5x PyTorch fp32's error)",
}


def conv_precision(setting: str | None = None) -> str:
    """What the convolution setting (default: the current one) guarantees about precision."""
    setting = conv_algorithm() if setting is None else setting
    return CONV_PRECISION.get(setting, "forced per-pass setting: no precision guarantee "
                              "beyond 'fast' (see README, 'Precision')")


def build_info() -> dict:
    """Describe this build: version, ISA paths, OpenMP, threads, precision, CUDA and the
    usable devices."""
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
        "conv_precision": conv_precision(),
        "amx": _core.amx_status(),
        "precision": _core.precision() if _core.precision() == "fp32" or _core.bf16_active()
        else "bf16 (runs fp32: no AVX512-BF16 on the active path)",
        **backend.cuda_info(),
        "devices": backend.devices(),
    }
