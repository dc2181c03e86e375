"""NCHW <-> NHWC for the functional ops' ``layout="NCHW"`` paths, on either device.

NumPy arrays are transposed with NumPy (any strides and dtype are accepted; the kernel that
follows checks the dtype); DeviceArrays with the layout kernels of ``_cuda``.
"""
from __future__ import annotations

import numpy as np

from .. import _core


def to_nhwc(K, x, name: str):
    """A new C-contiguous (N,H,W,C) copy of the (N,C,H,W) array ``x``."""
    if K is not _core:
        return K.nchw_to_nhwc(x)
    if not isinstance(x, np.ndarray) or x.ndim != 4:
        raise ValueError(f"{name}: expected a 4-d (N, C, H, W) NumPy array, "
                         f"got {getattr(x, 'shape', type(x).__name__)}")
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1))


def to_nchw(K, y, out=None):
    """(N,H,W,C) -> (N,C,H,W): a new array, or written into ``out`` (checked first)."""
    if K is not _core:
        return K.nhwc_to_nchw(y, out=out)
    t = y.transpose(0, 3, 1, 2)
    if out is None:
        return np.ascontiguousarray(t)
    if not isinstance(out, np.ndarray) or out.shape != t.shape or out.dtype != np.float32:
        raise ValueError(f"out: expected a float32 array of shape {t.shape}")
    if not out.flags.writeable:
        raise ValueError("out: expected a writeable array")
    np.copyto(out, t)
    return out
