"""Argument helpers for all of ``functional``: the layout check, NCHW <-> NHWC on either
device, integer arguments, and the check that a backward got its forward's cache.

The kernels run NHWC; an op called with ``layout="NCHW"`` converts its inputs with
:func:`to_nhwc` and its outputs with :func:`to_nchw` (two extra passes each way), while the
models pass ``layout="NHWC"`` and convert once at the model's entry. ``K`` is the kernel
module of the call (``backend.kernels``): ``_core`` for NumPy arrays, ``_cuda`` for
DeviceArrays.
"""
from __future__ import annotations

import operator

import numpy as np

from .. import _core

LAYOUTS = ("NCHW", "NHWC")


def check_layout(layout) -> str:
    """``layout`` itself, or ValueError unless it is "NCHW" or "NHWC"."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout: expected 'NCHW' or 'NHWC', got {layout!r}")
    return layout


def to_nhwc(K, x, name: str):
    """A new C-contiguous (N,H,W,C) copy of the (N,C,H,W) array ``x`` (argument ``name``).

    NumPy arrays of any strides and dtype are accepted (the kernel that follows checks the
    dtype under ``name``); float32 C-contiguous ones go through the threaded C++ transpose.
    """
    if K is not _core:
        return K.nchw_to_nhwc(x)
    if not isinstance(x, np.ndarray) or x.ndim != 4:
        raise ValueError(f"{name}: expected a 4-d (N, C, H, W) NumPy array, "
                         f"got {getattr(x, 'shape', type(x).__name__)}")
    if x.dtype == np.float32 and x.flags.c_contiguous and x.dtype.isnative:
        return _core.nchw_to_nhwc(x)
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1))


def to_nchw(K, y, out=None):
    """(N,H,W,C) kernel output -> (N,C,H,W): a new array, or written into ``out`` (checked
    by the kernel: float32, that shape, C-contiguous, writeable)."""
    return K.nhwc_to_nchw(y, out=out)


def check_int(value, name: str, lo: int | None = None) -> int:
    """``value`` as an int (anything with ``__index__``), or TypeError naming ``name``;
    ValueError below ``lo`` when given."""
    try:
        i = operator.index(value)
    except TypeError:
        raise TypeError(f"{name}: expected an int, got {type(value).__name__}") from None
    if lo is not None and i < lo:
        raise ValueError(f"{name}: expected an int >= {lo}, got {i}")
    return i


def check_cache(cache, cls, forward: str):
    """``cache`` itself, or TypeError unless it is the ``cls`` NamedTuple that ``forward``
    returned (a backward given something else would index it as garbage)."""
    if not isinstance(cache, cls):
        raise TypeError(f"cache: expected the {cls.__name__} {forward} returned, got "
                        f"{type(cache).__name__}")
    return cache
