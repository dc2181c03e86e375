"""Pooling ops: max pooling (3x3/2 in the ResNet stem) and global average pooling.

Kernels: cpp/pool.cpp and cpp/cuda/pool.cu (NHWC), picked by the arrays' device. Arrays
here are float32, NCHW by default; ``layout="NHWC"`` passes channels-last arrays straight to
the kernels with no transposes.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..backend import is_array, kernels
from ._layout import check_cache, check_int, check_layout, to_nchw, to_nhwc

__all__ = [
    "AvgPoolCache",
    "MaxPoolCache",
    "global_avg_pool2d",
    "global_avg_pool2d_backward",
    "max_pool2d",
    "max_pool2d_backward",
]


class MaxPoolCache(NamedTuple):
    """What max_pool2d keeps for its backward."""

    argmax: np.ndarray  # int32 (N, P, Q, C): h*W + w of each window's first maximum
    H: int              # the input's spatial size
    W: int
    kernel_size: int
    stride: int
    padding: int
    layout: str


class AvgPoolCache(NamedTuple):
    """What global_avg_pool2d keeps for its backward: the input's spatial size, layout."""

    H: int
    W: int
    layout: str


def _check_4d(x, name: str) -> None:
    if not is_array(x):
        raise TypeError(f"{name}: expected a NumPy float32 array or a DeviceArray, "
                        f"got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(f"{name}: expected a 4-d array, got shape {x.shape}")


def max_pool2d(x: np.ndarray, kernel_size: int = 3, stride: int = 2, padding: int = 1, *,
               layout: str = "NCHW", out: np.ndarray | None = None):
    """Max pooling over square windows with -inf padding.

    x: float32 (N,C,H,W) (or (N,H,W,C) with layout="NHWC"). Needs padding <= kernel_size//2.
    Returns (y, cache): y is (N,C,P,Q) (or (N,P,Q,C)), P = (H + 2*padding - kernel_size)
    // stride + 1. The cache keeps the int32 argmax (first maximum in row-major window order,
    as PyTorch) for max_pool2d_backward. `out`, if given, receives y (same layout as x).
    """
    check_layout(layout)
    _check_4d(x, "x")
    k = check_int(kernel_size, "kernel_size", 1)
    s = check_int(stride, "stride", 1)
    p = check_int(padding, "padding", 0)
    if p > k // 2:
        raise ValueError(f"padding: expected <= kernel_size // 2 = {k // 2}, got {p}")
    K = kernels("max_pool2d", x=x, out=out)
    if layout == "NHWC":
        y, argmax = K.max_pool2d_forward(x, k, s, p, out)
        H, W = x.shape[1], x.shape[2]
    else:
        yh, argmax = K.max_pool2d_forward(to_nhwc(K, x, "x"), k, s, p)
        y = to_nchw(K, yh, out)
        H, W = x.shape[2], x.shape[3]
    return y, MaxPoolCache(argmax, H, W, k, s, p, layout)


def max_pool2d_backward(dy: np.ndarray, cache: MaxPoolCache) -> np.ndarray:
    """Gradient of max_pool2d: dy (N,C,P,Q) (layout as in forward) -> dx (N,C,H,W).

    Each dy element goes to the position of its window's first maximum; overlapping
    windows accumulate.
    """
    argmax, H, W, k, s, p, layout = check_cache(cache, MaxPoolCache, "max_pool2d")
    check_layout(layout)
    _check_4d(dy, "dy")
    K = kernels("max_pool2d_backward", dy=dy, argmax=argmax)
    dyh = to_nhwc(K, dy, "dy") if layout == "NCHW" else dy
    dx = K.max_pool2d_backward(dyh, argmax, H, W, k, s, p)
    return to_nchw(K, dx) if layout == "NCHW" else dx


def global_avg_pool2d(x: np.ndarray, *, layout: str = "NCHW"):
    """Mean over the spatial dims: x (N,C,H,W) (or (N,H,W,C)) -> (y (N,C), cache)."""
    check_layout(layout)
    _check_4d(x, "x")
    K = kernels("global_avg_pool2d", x=x)
    xh = to_nhwc(K, x, "x") if layout == "NCHW" else x
    return K.global_avg_pool_forward(xh), AvgPoolCache(xh.shape[1], xh.shape[2], layout)


def global_avg_pool2d_backward(dy: np.ndarray, cache: AvgPoolCache) -> np.ndarray:
    """Gradient of global_avg_pool2d: dy (N,C) -> dx (N,C,H,W) = dy / (H*W) (layout as in forward)."""
    H, W, layout = check_cache(cache, AvgPoolCache, "global_avg_pool2d")
    check_layout(layout)
    K = kernels("global_avg_pool2d_backward", dy=dy)
    dx = K.global_avg_pool_backward(dy, H, W)
    return to_nchw(K, dx) if layout == "NCHW" else dx
