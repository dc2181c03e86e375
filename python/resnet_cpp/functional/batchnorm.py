"""Batch normalization (2-d, per channel), optionally fused with the following ReLU.

Kernels: ``cpp/batchnorm.cpp`` and ``cpp/cuda/batchnorm.cu`` (NHWC), picked by the arrays'
device. ``layout="NCHW"`` (the default, like PyTorch) is the
slow path: x is transposed to NHWC, normalized, and transposed back (two extra passes each
way); models call with ``layout="NHWC"`` and keep activations channels-last. A ``residual``
operand fuses a ResNet block's join, ``relu(batch_norm(x) + residual)``, into one pass.

Synchronized BN (``allreduce=``): the training statistics cover the union of every
process's batch. Each pass then runs as two kernels with the per-channel sums added up
across processes in between: forward ``batch_norm_stats`` -> sum -> ``batch_norm_finalize``
-> ``batch_norm_apply``; backward ``batch_norm_backward_reduce`` -> sum ->
``batch_norm_backward_apply``. dgamma and dbeta stay this process's own (its share of the
gradient, which data-parallel training then sums with the others'), while dx uses the sums
over all processes: the gradient of the loss summed over processes.
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Optional

import numpy as np

from .. import _core
from ..backend import device_of, empty, kernels
from ._layout import check_cache, check_layout, to_nchw, to_nhwc

__all__ = ["BatchNormCache", "batch_norm2d", "batch_norm2d_backward"]


class BatchNormCache(NamedTuple):
    """What ``batch_norm2d_backward`` needs. Arrays are NHWC (the kernel layout).

    x: the input (N,H,W,C); gamma, beta (C,); mean, rstd (C,): the batch statistics in
    training, the running ones (mean and 1/sqrt(var + eps), copied at forward time) in eval; training, layout, relu: as
    passed. A fused ReLU's mask is recomputed from x (bit for bit the forward's), so y is
    kept only with a residual (y: the output, whose > 0 mask then depends on the residual),
    else None. residual: whether one was added (the backward then returns its gradient too).
    allreduce, count: synchronized BN's sum across processes and the number of values per
    channel over all of them (None without synchronization).
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
    allreduce: Optional[Callable[[np.ndarray], None]] = None
    count: Optional[float] = None


def _length(v) -> int:
    """len(v) of a (C,) vector, 1 for anything else (the kernel then names the bad argument)."""
    try:
        return len(v)
    except TypeError:
        return 1


def batch_norm2d(x, gamma, beta, running_mean, running_var, *, training: bool = True,
                 momentum: float = 0.1, eps: float = 1e-5, relu: bool = False,
                 layout: str = "NCHW", out=None, residual=None, allreduce=None):
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
        allreduce: synchronized BN (training only): a function that sums a float64 vector
            in place over all processes (``resnet_cpp.distributed`` makes one). The batch
            statistics then cover every process's batch; running_mean, which centers the
            sums, must be equal on every process (it stays so: all update it alike).

    Returns:
        (y, cache): y has x's shape and layout; pass cache to ``batch_norm2d_backward``.
    """
    check_layout(layout)
    K = kernels("batch_norm2d", x=x, gamma=gamma, beta=beta, running_mean=running_mean,
                running_var=running_var, out=out, residual=residual)
    nchw = layout == "NCHW"
    xt = to_nhwc(K, x, "x") if nchw else x
    rt = to_nhwc(K, residual, "residual") if nchw and residual is not None else residual
    count = None
    if training and allreduce is not None:  # synchronized BN: CPU kernels only
        mean, rstd, count = _synced_stats(xt, running_mean, running_var, momentum, eps,
                                          allreduce)
        yt = _core.batch_norm_apply(xt, gamma, beta, mean, rstd, relu,
                                    out=None if nchw else out, residual=rt)
    elif training:
        yt, mean, rstd = K.batch_norm_forward_train(
            xt, gamma, beta, running_mean, running_var, momentum, eps, relu,
            out=None if nchw else out, residual=rt)
    else:
        mean, rstd = (empty((_length(gamma),), np.float32, device_of(x)) for _ in range(2))
        yt = K.batch_norm_forward_eval(xt, gamma, beta, running_mean, running_var, eps, relu,
                                       out=None if nchw else out, residual=rt, mean_out=mean,
                                       rstd_out=rstd)
    y = to_nchw(K, yt, out) if nchw else yt
    fused = residual is not None
    cache = BatchNormCache(xt, gamma, beta, mean, rstd, bool(training), layout, bool(relu), fused,
                           yt if relu and fused else None,
                           None if count is None else allreduce, count)
    return y, cache


def _copy_into(out: np.ndarray, value: np.ndarray) -> np.ndarray:
    np.copyto(out, value)
    return out


def _synced_stats(xt, running_mean, running_var, momentum, eps, allreduce):
    """Batch mean and rstd over every process's x (NHWC), and the running stats' update;
    also returns the number of values per channel summed over the processes."""
    c = xt.shape[-1]
    s1, s2 = _core.batch_norm_stats(xt, running_mean)
    sums = np.empty(2 * c + 1)  # [s1 | s2 | count]: one collective
    sums[:c], sums[c:2 * c], sums[-1] = s1, s2, xt.size // c
    allreduce(sums)
    count = float(sums[-1])
    if count < 2:
        raise ValueError(f"x: training batch norm needs more than one value per channel over "
                         f"all processes, got {count:.0f}")
    # The pivot the sums were taken around: running_mean before finalize updates it.
    mean, rstd = _core.batch_norm_finalize(sums[:c], sums[c:2 * c], running_mean.copy(), count,
                                           running_mean, running_var, momentum, eps)
    return mean, rstd, count


def batch_norm2d_backward(dy, cache: BatchNormCache, *, out=None, overwrite_cache=False,
                          add=None, dgamma_out=None, dbeta_out=None):
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
        dgamma_out, dbeta_out: optional (C,) arrays that receive dgamma and dbeta.

    Returns:
        (dx, dgamma, dbeta), and for a fused residual (dx, dgamma, dbeta, dresidual): dx
        like dy; dgamma, dbeta float32 (C,); dresidual = dy masked by the ReLU (dy itself
        without one). In eval mode the statistics are constants, so dx = dy * gamma * rstd
        (frozen BN).
    """
    check_cache(cache, BatchNormCache, "batch_norm2d")
    if overwrite_cache and out is not None:
        raise ValueError("out: not allowed with overwrite_cache=True (dx goes over cache.x)")
    K = kernels("batch_norm2d_backward", dy=dy, x=cache.x, out=out, add=add,
                dgamma_out=dgamma_out, dbeta_out=dbeta_out)
    nchw = cache.layout == "NCHW"
    dyt = to_nhwc(K, dy, "dy") if nchw else dy
    relu = cache.relu
    if cache.residual and relu:
        # The masked gradient reaches both summands: compute it once, then a plain BN backward.
        dyt = K.relu_backward(dyt, cache.y, out=cache.y if overwrite_cache else None)
        relu = False
    addt = to_nhwc(K, add, "add") if nchw and add is not None else add
    dx_out = cache.x if overwrite_cache else None if nchw else out
    if cache.allreduce is not None:
        sdy, sdyx, dgamma, dbeta = _core.batch_norm_backward_reduce(
            dyt, cache.x, cache.gamma, cache.mean, cache.rstd, beta=cache.beta, relu=relu)
        c = len(sdy)
        sums = np.concatenate([sdy, sdyx])  # one collective
        cache.allreduce(sums)
        dxt = _core.batch_norm_backward_apply(
            dyt, cache.x, cache.gamma, cache.mean, cache.rstd, sums[:c], sums[c:], cache.count,
            beta=cache.beta, relu=relu, out=dx_out, add=addt)
        dgamma = dgamma if dgamma_out is None else _copy_into(dgamma_out, dgamma)
        dbeta = dbeta if dbeta_out is None else _copy_into(dbeta_out, dbeta)
    else:
        dxt, dgamma, dbeta = K.batch_norm_backward(
            dyt, cache.x, cache.gamma, cache.mean, cache.rstd, beta=cache.beta, relu=relu,
            train=cache.training, out=dx_out, add=addt, dgamma_out=dgamma_out,
            dbeta_out=dbeta_out)
    dx = to_nchw(K, dxt, out) if nchw else dxt
    if not cache.residual:
        return dx, dgamma, dbeta
    return dx, dgamma, dbeta, (to_nchw(K, dyt) if nchw else dyt)
