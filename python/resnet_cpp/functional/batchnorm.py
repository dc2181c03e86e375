"""Batch normalization (2-d, per channel), optionally fused with the following ReLU.

Kernels: ``cpp/batchnorm.cpp`` (NHWC). ``layout="NCHW"`` (the default, like PyTorch) is the
slow path: x is transposed to NHWC, normalized, and transposed back (two extra passes each
way); models call with ``layout="NHWC"`` and keep activations channels-last. A ``residual``
operand fuses a ResNet block's join, ``relu(batch_norm(x) + residual)``, into one pass.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np

from .. import _core

__all__ = ["BatchNormCache", "batch_norm2d", "batch_norm2d_backward"]

_LAYOUTS = ("NCHW", "NHWC")


class BatchNormCache(NamedTuple):
    """What ``batch_norm2d_backward`` needs. Arrays are NHWC (the kernel layout).

    x: the input (N,H,W,C); gamma, beta (C,); mean, rstd (C,): the batch statistics in
    training, the running ones (copied at forward time) in eval; training, layout, relu: as
    passed. A fused ReLU's mask is recomputed from x (bit for bit the forward's), so y is
    kept only with a residual (y: the output, whose > 0 mask then depends on the residual),
    else None. residual: whether one was added (the backward then returns its gradient too).
    """

    x: np.ndarray
    gamma: np.ndarray
    beta: np.ndarray
    mean: np.ndarray
    rstd: np.ndarray
    training: bool
    layout: str
    relu: bool
    residual: bool
    y: Optional[np.ndarray]


def _check_layout(layout: str) -> None:
    if layout not in _LAYOUTS:
        raise ValueError(f"layout: expected 'NCHW' or 'NHWC', got {layout!r}")


def batch_norm2d(x, gamma, beta, running_mean, running_var, *, training: bool = True,
                 momentum: float = 0.1, eps: float = 1e-5, relu: bool = False,
                 layout: str = "NCHW", out=None, residual=None):
    """Batch norm over (N, H, W) for each channel, optionally plus a residual and a ReLU.

    Args:
        x: float32 (N,C,H,W) if layout == "NCHW", (N,H,W,C) if "NHWC"; C-contiguous.
        gamma, beta: float32 (C,) scale and shift.
        running_mean, running_var: float32 (C,). In training they are updated IN PLACE:
            r = (1 - momentum) * r + momentum * batch_stat, the variance unbiased (PyTorch).
        training: normalize with the batch statistics (biased variance; needs N*H*W > 1),
            else with the running statistics.
        momentum: in [0, 1]. eps: > 0, added to the variance.
        relu: return relu(batch_norm(x)) in the same pass.
        out: optional float32 array of x's shape to write y into (may be ``residual``).
        residual: optional float32 array of x's shape and layout added before the ReLU:
            y = relu?(batch_norm(x) + residual), bit for bit the unfused ops.

    Returns:
        (y, cache): y has x's shape and layout; pass cache to ``batch_norm2d_backward``.
    """
    _check_layout(layout)
    nchw = layout == "NCHW"
    xt = _core.nchw_to_nhwc(x) if nchw else x
    rt = _core.nchw_to_nhwc(residual) if nchw and residual is not None else residual
    if training:
        yt, mean, rstd = _core.batch_norm_forward_train(
            xt, gamma, beta, running_mean, running_var, momentum, eps, relu,
            out=None if nchw else out, residual=rt)
    else:
        yt = _core.batch_norm_forward_eval(xt, gamma, beta, running_mean, running_var, eps,
                                           relu, out=None if nchw else out, residual=rt)
        mean = np.array(running_mean, dtype=np.float32)
        rstd = (1.0 / np.sqrt(np.asarray(running_var, np.float64) + eps)).astype(np.float32)
    y = _core.nhwc_to_nchw(yt, out=out) if nchw else yt
    fused = residual is not None
    cache = BatchNormCache(xt, gamma, beta, mean, rstd, bool(training), layout, bool(relu), fused,
                           yt if relu and fused else None)
    return y, cache


def batch_norm2d_backward(dy, cache: BatchNormCache, *, out=None, overwrite_cache=False,
                          add=None):
    """Backward of ``batch_norm2d`` (training or eval cache; fused ReLU included).

    Args:
        dy: float32 gradient of y, same shape and layout as y.
        cache: from ``batch_norm2d``.
        out: optional float32 array of dy's shape to write dx into; it may be dy itself
            (dx overwrites dy in place), except after a residual without ReLU (dresidual
            is dy itself then).
        overwrite_cache: the kernels write over the cache's x (NHWC dx; with NHWC layout
            that is the forward's input itself) and y (dresidual), which are spent
            afterwards: no new activation-sized arrays. Use once per cache, without out.
        add: optional float32 array of dy's shape and layout summed into dx in the same
            pass (a residual block's other branch: dx = dx_bn + add); not ``out``.

    Returns:
        (dx, dgamma, dbeta), and for a fused residual (dx, dgamma, dbeta, dresidual): dx
        like dy; dgamma, dbeta float32 (C,); dresidual = dy masked by the ReLU (dy itself
        without one). In eval mode the statistics are constants, so dx = dy * gamma * rstd
        (frozen BN).
    """
    if not isinstance(cache, BatchNormCache):
        raise TypeError(f"cache: expected the BatchNormCache batch_norm2d returned, got "
                        f"{type(cache).__name__}")
    if overwrite_cache and out is not None:
        raise ValueError("out: not allowed with overwrite_cache=True (dx goes over cache.x)")
    nchw = cache.layout == "NCHW"
    dyt = _core.nchw_to_nhwc(dy) if nchw else dy
    relu = cache.relu
    if cache.residual and relu:
        # The masked gradient reaches both summands: compute it once, then a plain BN backward.
        dyt = _core.relu_backward(dyt, cache.y, out=cache.y if overwrite_cache else None)
        relu = False
    addt = _core.nchw_to_nhwc(add) if nchw and add is not None else add
    dxt, dgamma, dbeta = _core.batch_norm_backward(
        dyt, cache.x, cache.gamma, cache.mean, cache.rstd, beta=cache.beta, relu=relu,
        train=cache.training, out=cache.x if overwrite_cache else None if nchw else out,
        add=addt)
    dx = _core.nhwc_to_nchw(dxt, out=out) if nchw else dxt
    if not cache.residual:
        return dx, dgamma, dbeta
    return dx, dgamma, dbeta, (_core.nhwc_to_nchw(dyt) if nchw else dyt)
