"""The compute backends: the CPU (``_core``, always) and CUDA (``_cuda``, when built).

Both kernel modules implement one op surface (``cpp/bindings/ops.h``): the same names,
arguments and checks. Which one runs is decided by the arrays of each call
(:func:`kernels`): NumPy arrays go to ``_core``, ``resnet_cpp.cuda.DeviceArray``s to
``_cuda``, and a call mixing the two raises TypeError naming the arguments and their
devices. Nothing is ever copied between host and device implicitly.

Stored layouts: conv weights live in the kernels' layout, RSCK ``(R, S, C, K)``, on every
device; the host layout (state_dicts, checkpoints, PyTorch) is ``(K, C, R, S)``.
:func:`to_device`, :func:`to_host`, :func:`copy_from_host` and :func:`host_shape` convert
between the two with ``layout="RSCK"``; every other array has one layout everywhere.
"""
from __future__ import annotations

import importlib

import numpy as np

from . import _core

DEVICES = ("cpu", "cuda")

_cuda_module = None
_cuda_error: ImportError | None = None
DeviceArray: type | None = None  # resnet_cpp._cuda.DeviceArray when built


def _load_cuda() -> None:
    global _cuda_module, _cuda_error, DeviceArray
    try:
        _cuda = importlib.import_module(f"{__package__}._cuda")  # built with RESNET_CPP_CUDA=1
    except ImportError as e:
        _cuda_error = e
        return
    _cuda_module, DeviceArray = _cuda, _cuda.DeviceArray


_load_cuda()


def cuda_info() -> dict:
    """``cuda_built``, ``cuda_available`` and ``cuda``: the device, or why it cannot be used."""
    if _cuda_module is None:
        return {"cuda_built": False, "cuda_available": False, "cuda": f"not built ({_cuda_error})"}
    return {"cuda_built": True, "cuda_available": bool(_cuda_module.available()),
            "cuda": _cuda_module.device_summary()}


def devices() -> list[str]:
    """The devices models can use here, named: ``"cpu (<isa>, <n> threads)"`` and, when
    CUDA is usable, ``"cuda:0 <GPU name> (sm_XY, ...)"``."""
    out = [f"cpu ({_core.active_isa()}, {_core.num_threads()} threads)"]
    if _cuda_module is not None and _cuda_module.available():
        out.append(f"cuda:0 {_cuda_module.device_summary()}")
    return out


def parse_device(device) -> str:
    """``"cpu"`` or ``"cuda"`` (``"cuda:0"`` is accepted: one GPU); anything else is a
    ValueError naming the valid devices."""
    name = str(device).lower() if isinstance(device, str) else None
    if name == "cuda:0":
        name = "cuda"
    if name not in DEVICES:
        raise ValueError(f"device: expected 'cpu' or 'cuda', got {device!r}")
    return name


def require_cuda():
    """The ``_cuda`` module, or RuntimeError saying why CUDA cannot be used and how to get it."""
    from . import cuda

    return cuda.require()


def is_device_array(a) -> bool:
    return DeviceArray is not None and type(a) is DeviceArray


def is_array(a) -> bool:
    """A NumPy array or a DeviceArray."""
    return isinstance(a, np.ndarray) or is_device_array(a)


def device_of(a) -> str:
    """``"cuda"`` for a DeviceArray, ``"cpu"`` for anything else (NumPy arrays)."""
    return "cuda" if is_device_array(a) else "cpu"


def _where(a) -> str:
    if is_device_array(a):
        return f"cuda:{a.device}"
    return "the CPU (a NumPy array)" if isinstance(a, np.ndarray) else f"the CPU ({type(a).__name__})"


def kernels(op: str, **arrays):
    """The kernel module for one call of ``op``: ``_cuda`` if its arrays are DeviceArrays,
    ``_core`` otherwise (None entries are ignored). Mixed devices raise TypeError."""
    first = None
    for name, a in arrays.items():
        if a is None:
            continue
        if first is None:
            first = (name, a, is_device_array(a))
        elif is_device_array(a) != first[2]:
            raise TypeError(
                f"{op}: {first[0]} is on {_where(first[1])} but {name} is on {_where(a)}; "
                "all arrays of one call must be on the same device (move them with "
                "resnet_cpp.cuda.to_device / to_host, or a model with .to())")
    return _cuda_module if first is not None and first[2] else _core


# ------------------------------------------------------------------ arrays on a device

_TO_KERNEL = {"RSCK": (2, 3, 1, 0)}    # host (K, C, R, S) -> device (R, S, C, K)
_TO_HOST = {"RSCK": (3, 2, 0, 1)}


def empty(shape, dtype=np.float32, device: str = "cpu"):
    if device == "cuda":
        return require_cuda().DeviceArray.empty(tuple(shape), np.dtype(dtype).name)
    return np.empty(shape, dtype)


def zeros(shape, dtype=np.float32, device: str = "cpu"):
    if device == "cuda":
        return require_cuda().DeviceArray.zeros(tuple(shape), np.dtype(dtype).name)
    return np.zeros(shape, dtype)


def zeros_like(a):
    return zeros(a.shape, a.dtype, device_of(a))


def zero_(a) -> None:
    """Fill an array of either device with zeros, in place."""
    if is_device_array(a):
        a.zero_()
    else:
        a.fill(0)


def host_shape(a, layout: str | None = None) -> tuple:
    """The host shape of ``a`` stored in ``layout``: (K, C, R, S) for an "RSCK" array."""
    if layout is None:
        return tuple(a.shape)
    return tuple(a.shape[i] for i in _TO_HOST[layout])


def stored_shape(shape, layout: str | None = None) -> tuple:
    """The shape an array of host shape ``shape`` has stored in ``layout``."""
    if layout is None:
        return tuple(shape)
    return tuple(shape[i] for i in _TO_KERNEL[layout])


def to_device(a: np.ndarray, device: str, layout: str | None = None):
    """A new array on ``device`` holding host array ``a`` stored in ``layout`` ("RSCK" turns
    a (K, C, R, S) conv weight into (R, S, C, K))."""
    a = np.asarray(a)
    if layout is not None:
        a = a.transpose(_TO_KERNEL[layout])
    if device != "cuda":
        return np.array(a, copy=True, order="C")
    return require_cuda().DeviceArray.from_numpy(np.ascontiguousarray(a))


def to_host(a, layout: str | None = None) -> np.ndarray:
    """A new NumPy array holding ``a`` (either device, stored in ``layout``) in the host
    layout: a DeviceArray is copied back, an "RSCK" array turned into (K, C, R, S)."""
    if is_device_array(a):
        a = a.to_numpy()  # a copy already
        if layout is None:
            return a
    elif layout is None:
        return np.array(a, copy=True)
    return np.array(a.transpose(_TO_HOST[layout]), order="C")


def copy_from_host(dst, src, layout: str | None = None) -> None:
    """Write host array ``src`` (host layout) into ``dst`` (either device, stored in
    ``layout``), in place."""
    src = np.asarray(src, dtype=dst.dtype if is_device_array(dst) else None)
    if layout is not None:
        src = src.transpose(_TO_KERNEL[layout])
    if is_device_array(dst):
        dst.copy_from_numpy(np.ascontiguousarray(src))
    else:
        np.copyto(dst, src, casting="unsafe")
