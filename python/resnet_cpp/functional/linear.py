"""Fully connected layer: y = x W^T + b (PyTorch nn.Linear layout).

Kernels: cpp/linear.cpp (register-blocked AVX-512/AVX2 GEMMs, no BLAS) and
cpp/cuda/linear.cu, picked by the arrays' device.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..backend import kernels
from ._layout import check_cache

__all__ = ["LinearCache", "linear", "linear_backward"]


class LinearCache(NamedTuple):
    """What linear keeps for its backward: references to x (N, F) and w (O, F), not copies."""

    x: np.ndarray
    w: np.ndarray
    with_bias: bool


def linear(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None, *,
           out: np.ndarray | None = None):
    """Forward: x (N,F) float32, w (O,F), b (O,) or None -> (y (N,O), cache).

    `out`, if given, is a writeable float32 (N,O) array that receives y (and is returned).
    """
    y = kernels("linear", x=x, w=w, b=b, out=out).linear_forward(x, w, b, out)
    return y, LinearCache(x, w, b is not None)


def linear_backward(dy: np.ndarray, cache: LinearCache, *, need_dx: bool = True, dw_out=None, db_out=None):
    """Backward: dy (N,O) -> (dx (N,F) or None, dw (O,F), db (O,) or None).

    dx = dy W, dw = dy^T x, db = sum over the batch of dy. Pass need_dx=False for the first
    layer of a network (saves one GEMM); db is None when the forward had no bias. dw_out and
    db_out, if given, receive dw and db.
    """
    x, w, with_bias = check_cache(cache, LinearCache, "linear")
    K = kernels("linear_backward", dy=dy, x=x, dw_out=dw_out, db_out=db_out)
    return K.linear_backward(dy, x, w, bool(need_dx), with_bias, dw_out=dw_out, db_out=db_out)
