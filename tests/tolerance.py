"""The one tolerance helper every parity test uses.

Defaults: forward rtol=1e-4, atol=1e-5; backward and batch norm use BACKWARD (rtol=1e-3,
atol=1e-4) because their float32 reductions run over N*H*W terms. Any looser tolerance at
a call site carries a comment saying why.
"""
from __future__ import annotations

import numpy as np

FORWARD = dict(rtol=1e-4, atol=1e-5)
BACKWARD = dict(rtol=1e-3, atol=1e-4)


def assert_close(actual, ref, rtol: float = 1e-4, atol: float = 1e-5, name: str = "") -> None:
    """Assert |actual - ref| <= atol + rtol * |ref| elementwise; NaN/inf never pass.

    The message names the array, the worst element's index and both values.
    """
    actual = np.asarray(actual)
    ref = np.asarray(ref)
    if actual.shape != ref.shape:
        raise AssertionError(f"{name}: shape {actual.shape} != reference {ref.shape}")
    a = actual.astype(np.float64)
    r = ref.astype(np.float64)
    if not np.all(np.isfinite(a)):
        raise AssertionError(f"{name}: non-finite values in result")
    err = np.abs(a - r)
    bound = atol + rtol * np.abs(r)
    bad = err > bound
    if np.any(bad):
        excess = np.where(bad, err - bound, -np.inf)
        i = np.unravel_index(int(np.argmax(excess)), a.shape)
        raise AssertionError(
            f"{name}: {int(bad.sum())} of {a.size} elements out of tolerance "
            f"(rtol={rtol}, atol={atol}); worst at {tuple(int(j) for j in i)}: "
            f"got {a[i]!r}, expected {r[i]!r}, max abs err {err.max():.3g}"
        )


# bf16 convolutions against fp32 (README, "Precision"): each operand keeps 8 significant
# bits (rounding error up to 2^-9 of itself), so each product may be off by 2^-8 of itself
# and a sum of them by about that much of the largest output. Elementwise
# |bf16 - fp32| <= BF16_VS_FP32 * (|fp32| + max|fp32|); the parity shapes measured up to
# 3.4e-3 (against 1e-7 for fp32).
BF16_VS_FP32 = 4e-3


def assert_close_bf16(actual, ref, name: str = "") -> None:
    """assert_close with the bf16-against-fp32 tolerance above."""
    scale = float(np.max(np.abs(np.asarray(ref, np.float64))))
    assert_close(actual, ref, rtol=BF16_VS_FP32, atol=BF16_VS_FP32 * scale, name=name)
