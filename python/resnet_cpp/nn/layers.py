"""Layers over resnet_cpp.functional: each forward caches, each backward adds into .grad.

All arithmetic runs in the C++ kernels behind ``resnet_cpp.functional``; these classes
only hold parameters, pick buffers and route gradients (the contract: ``nn.module``).
Spatial layers take ``layout="NCHW"`` (default, like PyTorch) or ``"NHWC"`` (what the
models use inside, with no per-layer transposes). Conv weights are stored (R, S, C, K),
the kernels' order, and read and written as (K, C, R, S) (``Parameter.host``/``copy_``,
state_dicts).
"""
from __future__ import annotations

import numpy as np

from .. import functional as F
from ..backend import is_array, is_device_array
from ..functional._layout import check_layout
from . import init as _init
from .module import Module, Parameter

__all__ = ["Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d", "GlobalAvgPool2d", "Linear", "Flatten"]


def _pair_int(v, name: str) -> int:
    """Square kernels/strides only: accept k or (k, k)."""
    if isinstance(v, (tuple, list)):
        if len(v) != 2 or v[0] != v[1]:
            raise ValueError(f"{name} must be an int or a square pair, got {v!r}")
        v = v[0]
    return int(v)


def _spatial_out(x: np.ndarray, layout: str, channels_out: int, k: int, stride: int, pad: int):
    """Output shape of a k x k window op, or None when x is malformed (the kernel reports it)."""
    if not is_array(x) or x.ndim != 4:
        return None
    n, h, w = (x.shape[0], x.shape[2], x.shape[3]) if layout == "NCHW" else x.shape[:3]
    ho, wo = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
    if n < 1 or ho < 1 or wo < 1:
        return None
    return (n, channels_out, ho, wo) if layout == "NCHW" else (n, ho, wo, channels_out)


def _channels(x: np.ndarray, layout: str) -> int:
    return x.shape[1] if layout == "NCHW" else x.shape[3]


class _Cached(Module):
    """A layer whose backward consumes its forward's cache (``functional``'s NamedTuple)."""

    def saved_input(self):
        """The input of the forward the next backward consumes, as this layer keeps it (an
        NHWC layer keeps the caller's array itself, an NCHW one an NHWC copy); Conv2d,
        BatchNorm2d and Linear.

        The backward only reads it, so once that backward has returned the array is spent
        for this layer: a caller that owns it may reuse it, e.g. as the ``out`` of a later
        backward (``conv.backward(dy, out=conv.saved_input())`` is allowed: the weight
        gradient reads x before dx overwrites it).
        """
        return self._saved().x


class Conv2d(_Cached):
    """2-D convolution, weight (out_channels, in_channels, k, k), optional bias (out_channels,).

    Initialized like PyTorch's default (uniform +-1/sqrt(fan_in)) from ``rng`` (None, a
    seed or a Generator); ``init=False`` leaves zeros for a caller that initializes itself
    (the models: He normal). ``backward(dy, need_dx=False)`` skips the input gradient.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 bias: bool = True, *, layout: str = "NCHW", rng=None, init: bool = True):
        super().__init__()
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size = _pair_int(kernel_size, "kernel_size")
        self.stride = _pair_int(stride, "stride")
        self.padding = _pair_int(padding, "padding")
        self.layout = check_layout(layout)
        k = self.kernel_size
        self.weight = Parameter.zeros((self.out_channels, self.in_channels, k, k), decay=True,
                                      layout="RSCK")
        self.bias = Parameter.zeros((self.out_channels,), decay=False) if bias else None
        if init:
            rng = _init.as_rng(rng)
            fan_in = self.in_channels * k * k
            _init.default_uniform_(self.weight, rng, fan_in)
            if bias:
                _init.default_uniform_(self.bias, rng, fan_in)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, bias={self.bias is not None}, "
                f"layout={self.layout!r}")

    def forward(self, x: np.ndarray) -> np.ndarray:
        shape = _spatial_out(x, self.layout, self.out_channels, self.kernel_size,
                             self.stride, self.padding)
        out = None if shape is None else self._buffer("y", shape)
        b = None if self.bias is None else self.bias.data
        y, cache = F.conv2d(x, self.weight.data, b, self.stride, self.padding,
                            layout=self.layout, w_layout="RSCK", out=out)
        self._save(cache)
        return y

    def backward(self, dy: np.ndarray, need_dx: bool = True, out: np.ndarray = None):
        """dx (None without need_dx); ``out`` (NHWC) receives it and may be the forward's
        input (``saved_input()``), which the weight gradient reads first."""
        dw, db = self._grad_out("weight"), self._grad_out("bias")
        dx, _, _ = F.conv2d_backward(dy, self._saved(), need_dx=need_dx, dx_out=out,
                                     dw_out=dw, db_out=db)
        self._consume()
        self._add_grads(weight=dw, bias=db)
        return dx


class BatchNorm2d(_Cached):
    """Batch norm over (N, H, W) per channel, PyTorch semantics; ``relu=True`` fuses a ReLU.

    Parameters ``weight`` (gamma, ones) and ``bias`` (beta, zeros); buffers
    ``running_mean``, ``running_var`` (float32) and ``num_batches_tracked`` (int64 0-d),
    updated in place in training mode. Eval mode normalizes with the running stats.
    ``forward(x, residual)`` fuses a ResNet block's join, relu?(bn(x) + residual); its
    backward then returns ``(dx, dresidual)``. ``allreduce`` (None: off) synchronizes the
    training statistics across processes (``functional.batch_norm2d``; set by
    ``resnet_cpp.distributed.sync_batch_norm``).
    """

    allreduce = None

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1, *,
                 relu: bool = False, layout: str = "NCHW"):
        super().__init__()
        self.num_features = int(num_features)
        self.eps, self.momentum = float(eps), float(momentum)
        self.relu = bool(relu)
        self.layout = check_layout(layout)
        self.weight = Parameter.zeros((self.num_features,), decay=False)
        self.weight.data.fill(1.0)
        self.bias = Parameter.zeros((self.num_features,), decay=False)
        self.register_buffer("running_mean", np.zeros(self.num_features, np.float32))
        self.register_buffer("running_var", np.ones(self.num_features, np.float32))
        self.register_buffer("num_batches_tracked", np.zeros((), np.int64))

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"relu={self.relu}, layout={self.layout!r}")

    def forward(self, x: np.ndarray, residual: np.ndarray = None) -> np.ndarray:
        ok = is_array(x) and x.ndim == 4 and x.shape[0] > 0
        out = self._buffer("y", x.shape) if ok else None
        y, cache = F.batch_norm2d(
            x, self.weight.data, self.bias.data, self.running_mean, self.running_var,
            training=self.training, momentum=self.momentum, eps=self.eps, relu=self.relu,
            layout=self.layout, out=out, residual=residual, allreduce=self.allreduce)
        self._save(cache)
        if self.training:
            self.num_batches_tracked[...] += 1
        return y

    def backward(self, dy: np.ndarray, out: np.ndarray = None, overwrite_forward: bool = False,
                 add: np.ndarray = None):
        """dx, or ``(dx, dresidual)`` after ``forward(x, residual)``.

        dx is a fresh array unless ``out`` is given (``out=dy`` overwrites dy in place).
        ``overwrite_forward``: dx goes over the forward's input x and dresidual over its
        output y (NHWC; with NCHW over the cache's NHWC copies), for callers done with both.
        Either saves activation-sized arrays. ``add`` (dy's shape) is summed into dx in the
        same pass: a residual block's gradient from its other branch.
        """
        dgamma, dbeta = self._grad_out("weight"), self._grad_out("bias")
        dx, _, _, *dres = F.batch_norm2d_backward(
            dy, self._saved(), out=out, overwrite_cache=overwrite_forward, add=add,
            dgamma_out=dgamma, dbeta_out=dbeta)
        self._consume()
        self._add_grads(weight=dgamma, bias=dbeta)
        return (dx, dres[0]) if dres else dx


class ReLU(_Cached):
    """max(x, 0) for any shape (models fuse it into BatchNorm2d / add_relu instead)."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        out = self._buffer("y", x.shape) if is_array(x) else None
        y, cache = F.relu(x, out=out)
        self._save(cache)
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        dx = F.relu_backward(dy, self._saved())
        self._consume()
        return dx


class MaxPool2d(_Cached):
    """k x k max pooling with -inf padding (stride defaults to kernel_size, like PyTorch)."""

    def __init__(self, kernel_size=3, stride=None, padding=0, *, layout: str = "NCHW"):
        super().__init__()
        self.kernel_size = _pair_int(kernel_size, "kernel_size")
        self.stride = self.kernel_size if stride is None else _pair_int(stride, "stride")
        self.padding = _pair_int(padding, "padding")
        self.layout = check_layout(layout)

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, layout={self.layout!r}")

    def forward(self, x: np.ndarray) -> np.ndarray:
        shape = None
        if is_array(x) and x.ndim == 4:
            shape = _spatial_out(x, self.layout, _channels(x, self.layout), self.kernel_size,
                                 self.stride, self.padding)
        out = None if shape is None else self._buffer("y", shape)
        y, cache = F.max_pool2d(x, self.kernel_size, self.stride, self.padding,
                                layout=self.layout, out=out)
        self._save(cache)
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        dx = F.max_pool2d_backward(dy, self._saved())
        self._consume()
        return dx


class GlobalAvgPool2d(_Cached):
    """Mean over H and W: (N, C, H, W) or (N, H, W, C) -> (N, C)."""

    def __init__(self, *, layout: str = "NCHW"):
        super().__init__()
        self.layout = check_layout(layout)

    def extra_repr(self) -> str:
        return f"layout={self.layout!r}"

    def forward(self, x: np.ndarray) -> np.ndarray:
        y, cache = F.global_avg_pool2d(x, layout=self.layout)
        self._save(cache)
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        dx = F.global_avg_pool2d_backward(dy, self._saved())
        self._consume()
        return dx


class Linear(_Cached):
    """y = x @ weight.T + bias, weight (out_features, in_features).

    The output is freshly allocated (it is usually the model's logits, which callers keep).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, rng=None):
        super().__init__()
        self.in_features, self.out_features = int(in_features), int(out_features)
        rng = _init.as_rng(rng)
        self.weight = Parameter.zeros((self.out_features, self.in_features), decay=True)
        _init.default_uniform_(self.weight, rng, self.in_features)
        self.bias = None
        if bias:
            self.bias = Parameter.zeros((self.out_features,), decay=False)
            _init.default_uniform_(self.bias, rng, self.in_features)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, bias={self.bias is not None}"

    def forward(self, x: np.ndarray) -> np.ndarray:
        b = None if self.bias is None else self.bias.data
        y, cache = F.linear(x, self.weight.data, b)
        self._save(cache)
        return y

    def backward(self, dy: np.ndarray, need_dx: bool = True):
        dw, db = self._grad_out("weight"), self._grad_out("bias")
        dx, _, _ = F.linear_backward(dy, self._saved(), need_dx=need_dx, dw_out=dw, db_out=db)
        self._consume()
        self._add_grads(weight=dw, bias=db)
        return dx


class Flatten(Module):
    """(N, ...) -> (N, prod(...)) in C order; backward restores the shape."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._save(x.shape)
        return _contiguous(x).reshape(x.shape[0], -1)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        dx = _contiguous(dy).reshape(self._saved())
        self._consume()
        return dx


def _contiguous(a):
    """Device arrays are always C-contiguous; NumPy ones are made so."""
    return a if is_device_array(a) else np.ascontiguousarray(a)
