"""2-D convolution (kernels in cpp/conv.cpp and cpp/cuda/conv.cu; raw NHWC/RSCK entry
points in ``_core`` / ``_cuda``, picked by the arrays' device).

Weights come in one of two layouts, named by ``w_layout`` on either device: ``"OIHW"``
``(K, C, R, S)``, PyTorch's, converted to the kernels' order per call (NumPy only), or
``"RSCK"`` ``(R, S, C, K)``, the kernels' own order, used as is: what ``rc.nn`` conv
parameters hold on every device. The weight gradient comes back in the weight's layout.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..backend import is_device_array, kernels
from ._layout import check_cache, check_layout, to_nchw, to_nhwc

__all__ = ["conv2d", "conv2d_backward", "ConvCache", "W_LAYOUTS"]

W_LAYOUTS = ("OIHW", "RSCK")


class ConvCache(NamedTuple):
    """What conv2d keeps for its backward: NHWC input, RSCK weights and the geometry."""

    x: np.ndarray        # (N, H, W, C) float32, the forward input in NHWC
    w: np.ndarray        # (R, S, C, K) float32 (the caller's own array when w_layout="RSCK")
    stride: int
    padding: int
    with_bias: bool
    layout: str
    w_layout: str


def _rsck(w, w_layout: str):
    """w in the kernels' (R, S, C, K) order: itself, or an OIHW NumPy weight transposed."""
    if w_layout not in W_LAYOUTS:
        raise ValueError(f"w_layout: expected 'OIHW' or 'RSCK', got {w_layout!r}")
    if w_layout == "RSCK":
        return w
    if is_device_array(w):
        raise ValueError("w: a DeviceArray weight must be (R, S, C, K): pass w_layout='RSCK'")
    if not isinstance(w, np.ndarray) or w.ndim != 4:
        raise ValueError(f"w: expected a 4-d (K, C, R, S) NumPy array, got {getattr(w, 'shape', type(w))}")
    return np.ascontiguousarray(w.transpose(2, 3, 1, 0))


def conv2d(x, w, b=None, stride: int = 1, padding: int = 0, *, layout: str = "NCHW",
           w_layout: str = "OIHW", out=None):
    """Convolution ``y = x * w + b`` (cross-correlation, as in PyTorch), float32.

    Args:
        x: input, (N, C, H, W) for ``layout="NCHW"`` or (N, H, W, C) for ``"NHWC"``
            (NHWC must be C-contiguous; it is used without a copy).
        w: weights, (K, C, R, S) for ``w_layout="OIHW"`` or (R, S, C, K) for ``"RSCK"``
            (see the module doc; a DeviceArray weight must be RSCK).
        b: bias (K,) or None.
        stride, padding: the same in both spatial dims; 0 <= padding < kernel size.
        layout: "NCHW" (default; transposed to NHWC and back per call) or "NHWC".
        out: optional preallocated output in ``layout`` ((N, K, P, Q) or (N, P, Q, K)).

    Returns:
        ``(y, cache)``: y is (N, K, P, Q) or (N, P, Q, K) with P = (H + 2*padding - R)
        // stride + 1 (Q likewise); cache feeds :func:`conv2d_backward` and references x
        (do not modify x in place before the backward).
    """
    check_layout(layout)
    K = kernels("conv2d", x=x, w=w, b=b, out=out)
    w_rsck = _rsck(w, w_layout)
    if layout == "NCHW":
        x_nhwc = to_nhwc(K, x, "x")
        y = to_nchw(K, K.conv2d_forward(x_nhwc, w_rsck, b, stride, padding), out)
    else:
        x_nhwc = x
        y = K.conv2d_forward(x_nhwc, w_rsck, b, stride, padding, out)
    return y, ConvCache(x_nhwc, w_rsck, int(stride), int(padding), b is not None, layout,
                        w_layout)


def conv2d_backward(dy, cache: ConvCache, *, need_dx: bool = True, dx_out=None, dw_out=None,
                    db_out=None):
    """Gradients of :func:`conv2d`.

    Args:
        dy: gradient of y, in the layout given to the forward.
        cache: the forward's cache.
        need_dx: False skips the input gradient (e.g. for the first layer).
        dx_out: optional NHWC float32 array for dx (``layout="NHWC"`` only). It may be the
            forward's input ``cache.x`` itself: the weight gradient is computed first.
            Reusing a spent activation this way saves allocating (and page-faulting) an
            activation-sized array per layer and step.
        dw_out, db_out: optional arrays that receive dw (the weight's shape) and db.

    Returns:
        ``(dx or None, dw, db (K,) or None)``; dx in the forward's layout, dw in the
        weight's (``w_layout``).
    """
    x, w, stride, pad, with_bias, layout, w_layout = check_cache(cache, ConvCache, "conv2d")
    K = kernels("conv2d_backward", dy=dy, x=x, dx_out=dx_out, dw_out=dw_out, db_out=db_out)
    if layout == "NCHW":
        dy = to_nhwc(K, dy, "dy")
    if dx_out is not None and layout != "NHWC":
        raise ValueError("dx_out: only supported with layout='NHWC'")
    R, S = w.shape[0], w.shape[1]
    rsck = w_layout == "RSCK"
    dw, db = K.conv2d_backward_weight(x, dy, R, S, stride, pad, with_bias,
                                      dw_out if rsck else None, db_out)
    if not rsck:  # back to the caller's OIHW
        dw = dw.transpose(3, 2, 0, 1)
        dw = np.ascontiguousarray(dw) if dw_out is None else _copy_into(dw_out, dw, "dw_out")
    dx = None
    if need_dx:
        try:
            dx = K.conv2d_backward_data(dy, w, x.shape[1], x.shape[2], stride, pad, dx_out)
        except ValueError as e:  # the kernel calls dx_out "out": name it as the caller did
            if dx_out is not None and str(e).startswith("out: "):
                raise ValueError(f"dx_out: {str(e)[5:]}") from None
            raise
        if layout == "NCHW":
            dx = to_nchw(K, dx)
    return dx, dw, db


def _copy_into(out, a, name: str):
    if not isinstance(out, np.ndarray) or out.shape != a.shape or out.dtype != np.float32:
        raise ValueError(f"{name}: expected a float32 array of shape {a.shape}")
    np.copyto(out, a)
    return out
