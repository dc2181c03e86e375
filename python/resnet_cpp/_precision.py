"""Mixed precision: which operand precision the convolutions use.

``"fp32"`` (default) or ``"bf16"``: every convolution (forward, backward-data and
backward-weight) rounds its operands to bf16 (nearest even) and sums the products in
fp32; its outputs, the weights (master copy), the optimizer state, batch norm, the loss
and the weight gradients stay fp32, and no loss scaling is needed. bf16 runs where the
active ISA path has a bf16 dot product (``avx512_bf16``: Zen 4, Sapphire Rapids and later);
elsewhere, or under a lower ``set_max_isa`` cap, the convolutions run in fp32 and
:func:`set_precision` warns. The setting is process-wide, like ``set_conv_algorithm``;
``RESNET_CPP_PRECISION`` sets it at import.
"""
from __future__ import annotations

import contextlib
import warnings

from . import _core

__all__ = ["PRECISIONS", "set_precision", "precision", "use_precision", "bf16_active"]

PRECISIONS = ("fp32", "bf16")


def precision() -> str:
    """The precision set now: ``"fp32"`` or ``"bf16"``."""
    return _core.precision()


def bf16_active() -> bool:
    """True when the convolutions run bf16 now (set, and the active path supports it)."""
    return bool(_core.bf16_active())


def _warn_if_fallback(stacklevel: int) -> None:
    """Warn (at the caller ``stacklevel`` frames up) if bf16 is set but cannot run."""
    if precision() == "bf16" and not bf16_active():
        warnings.warn(
            f"precision 'bf16' needs AVX512-BF16, which the active ISA path "
            f"({_core.active_isa()}) lacks: the convolutions run in fp32",
            RuntimeWarning, stacklevel=stacklevel + 1)


def set_precision(name: str) -> None:
    """Set the convolutions' precision: ``"fp32"`` or ``"bf16"`` (see the module doc).

    Warns (RuntimeWarning) when bf16 is asked for where it cannot run; the convolutions
    then stay fp32. Raises ValueError for other names.
    """
    _set(name)
    _warn_if_fallback(stacklevel=2)


def _set(name: str) -> None:
    if name not in PRECISIONS:
        raise ValueError(f"precision: expected 'fp32' or 'bf16', got {name!r}")
    _core.set_precision(name)


@contextlib.contextmanager
def use_precision(name: str):
    """``with use_precision("bf16"): ...`` sets the precision (warning like
    :func:`set_precision`) and restores the previous one on exit."""
    old = precision()
    _set(name)
    _warn_if_fallback(stacklevel=3)  # the caller's `with` line, past contextlib's __enter__
    try:
        yield
    finally:
        _core.set_precision(old)


_warn_if_fallback(stacklevel=2)  # RESNET_CPP_PRECISION=bf16 on a CPU without it
