"""ReLU, the residual add (optionally fused with ReLU), the option-A shortcut, NCHW<->NHWC.

Kernels: ``cpp/eltwise.cpp`` and ``cpp/cuda/eltwise.cu``, picked by the arrays' device.
relu/add work on float32 C-contiguous arrays of any shape and layout (elementwise); the ReLU
caches only its output y, whose > 0 mask is the backward.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..backend import kernels
from ._layout import check_cache

__all__ = ["relu", "relu_backward", "add", "add_relu", "add_relu_backward", "shortcut_a",
           "shortcut_a_backward", "to_nhwc", "to_nchw", "ReluCache", "ShortcutACache"]


class ReluCache(NamedTuple):
    """What relu / add_relu keep: their output, whose > 0 mask is the backward."""

    y: np.ndarray


class ShortcutACache(NamedTuple):
    """What shortcut_a keeps: the input's (H, W, C) and the stride."""

    H: int
    W: int
    C: int
    stride: int


def relu(x, *, out=None):
    """y = max(x, 0). x: float32, any shape. Returns (y, ReluCache(y))."""
    y = kernels("relu", x=x, out=out).relu_forward(x, out=out)
    return y, ReluCache(y)


def relu_backward(dy, cache: ReluCache):
    """dx = dy * (y > 0); dy has y's shape. Returns dx."""
    y = check_cache(cache, ReluCache, "relu").y
    return kernels("relu_backward", dy=dy, y=y).relu_backward(dy, y)


def add(a, b, *, out=None):
    """y = a + b for float32 arrays of the same shape (no broadcasting). Returns y.

    The backward is the identity for both inputs, so there is no cache.
    """
    return kernels("add", a=a, b=b, out=out).add_forward(a, b, out=out)


def add_relu(a, b, *, out=None):
    """y = max(a + b, 0), the residual join of a ResNet block. Returns (y, ReluCache(y))."""
    y = kernels("add_relu", a=a, b=b, out=out).add_relu_forward(a, b, out=out)
    return y, ReluCache(y)


def add_relu_backward(dy, cache: ReluCache):
    """d = dy * (y > 0): the gradient for both a and b. Returns d."""
    y = check_cache(cache, ReluCache, "add_relu").y
    return kernels("add_relu_backward", dy=dy, y=y).add_relu_backward(dy, y)


def shortcut_a(x, channels_out: int, stride: int, *, out=None):
    """Parameter-free shortcut (He et al. 2015, option A) on NHWC float32 x (N, H, W, C).

    Subsamples by ``stride`` and zero-pads the channels to ``channels_out`` (>= C), (K-C)//2
    below and the rest above. Returns (y (N, ceil(H/stride), ceil(W/stride), K), cache).
    """
    y = kernels("shortcut_a", x=x, out=out).shortcut_a_forward(x, channels_out, stride, out=out)
    return y, ShortcutACache(x.shape[1], x.shape[2], x.shape[3], int(stride))


def shortcut_a_backward(dy, cache: ShortcutACache, *, out=None, accumulate: bool = False):
    """dx (N, H, W, C) of ``shortcut_a``: dy's middle channels at the stride grid, else 0.

    ``accumulate=True`` adds that into ``out`` instead (the residual sum in one pass).
    """
    H, W, C, stride = check_cache(cache, ShortcutACache, "shortcut_a")
    K = kernels("shortcut_a_backward", dy=dy, out=out)
    return K.shortcut_a_backward(dy, C, H, W, stride, out=out, accumulate=accumulate)


def to_nhwc(x, *, out=None):
    """float32 (N,C,H,W) -> a new (N,H,W,C) array (threaded, cache-blocked transpose)."""
    return kernels("to_nhwc", x=x, out=out).nchw_to_nhwc(x, out=out)


def to_nchw(x, *, out=None):
    """float32 (N,H,W,C) -> a new (N,C,H,W) array (threaded, cache-blocked transpose)."""
    return kernels("to_nchw", x=x, out=out).nhwc_to_nchw(x, out=out)
