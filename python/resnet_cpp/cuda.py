"""User-facing helpers for the optional CUDA backend (the ``resnet_cpp._cuda`` extension).

The extension exists only in builds made with ``RESNET_CPP_CUDA=1 pip install .`` and works
only where a CUDA driver and device are present. Everything here answers *why* when CUDA
cannot be used; nothing here imports torch or any other framework.

    >>> from resnet_cpp import cuda
    >>> if cuda.is_available():
    ...     xd = cuda.to_device(x)            # NumPy -> DeviceArray (one host-to-device copy)
    ...     y = cuda.to_host(xd)              # DeviceArray -> NumPy (waits for the device)

Device arrays interoperate without copies: ``torch.from_dlpack(xd)`` or
``torch.as_tensor(xd, device="cuda")`` (``__cuda_array_interface__``), and
``cuda.DeviceArray(t)`` wraps any object exposing ``__cuda_array_interface__``.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from . import backend

__all__ = [
    "device_summary",
    "empty",
    "is_available",
    "mem_info",
    "pinned_empty",
    "require",
    "set_stream",
    "synchronize",
    "to_device",
    "to_host",
    "why_unavailable",
    "zeros",
]

NOT_BUILT = ("resnet_cpp was built without CUDA: on a machine with an NVIDIA GPU, its driver "
             "and nvcc, reinstall with RESNET_CPP_CUDA=1 pip install .")


def _load():
    """The _cuda module, or None with the import error when it was not built."""
    return backend._cuda_module, backend._cuda_error


def is_available() -> bool:
    """True when _cuda was built and a usable CUDA device is present."""
    mod, _ = _load()
    return mod is not None and bool(mod.available())


def why_unavailable() -> str:
    """Empty string when CUDA is usable, else the reason (not built, no driver, no device)."""
    mod, err = _load()
    if mod is None:
        return f"{NOT_BUILT} ({err})"
    return mod.why_unavailable()


def require():
    """Return the _cuda module, or raise RuntimeError saying why CUDA cannot be used."""
    mod, err = _load()
    if mod is None:
        raise RuntimeError(NOT_BUILT) from err
    if not mod.available():
        raise RuntimeError(f"CUDA is not available: {mod.why_unavailable()} (it needs an NVIDIA "
                           "GPU and its driver; without one, use the CPU: device='cpu')")
    return mod


def device_summary() -> str:
    """One line: the device and compute capability, or why CUDA is unavailable."""
    mod, _ = _load()
    return NOT_BUILT if mod is None else mod.device_summary()


def __getattr__(name: str) -> Any:
    # cuda.DeviceArray resolves lazily so that importing this module never needs _cuda.
    if name == "DeviceArray":
        return require().DeviceArray
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def to_device(array: np.ndarray):
    """Copy a NumPy float32/int32/int64 array to the device (a DeviceArray). Other dtypes
    raise TypeError: convert explicitly (``x.astype(np.float32)``) so no copy is hidden.
    A DeviceArray is returned as is."""
    mod = require()
    if isinstance(array, mod.DeviceArray):
        return array
    if not isinstance(array, np.ndarray):
        raise TypeError(f"to_device: expected a NumPy array, got {type(array).__name__}")
    return mod.DeviceArray.from_numpy(array)


def to_host(array) -> np.ndarray:
    """Copy a DeviceArray (or any object with __cuda_array_interface__) to a new NumPy array,
    after the work queued on it has finished."""
    mod = require()
    if not isinstance(array, mod.DeviceArray):
        if not hasattr(array, "__cuda_array_interface__"):
            raise TypeError(
                f"to_host: expected a DeviceArray or an object with __cuda_array_interface__, "
                f"got {type(array).__name__}")
        array = mod.DeviceArray(array)
    return array.to_numpy()


def empty(shape, dtype=np.float32):
    """Uninitialized device array."""
    return require().DeviceArray.empty(shape, np.dtype(dtype).name)


def zeros(shape, dtype=np.float32):
    """Zero-filled device array."""
    return require().DeviceArray.zeros(shape, np.dtype(dtype).name)


def pinned_empty(shape, dtype=np.float32) -> np.ndarray:
    """An uninitialized NumPy array in pinned (page-locked) host memory: what
    ``DeviceArray.copy_from_numpy(..., non_blocking=True)`` and ``copy_to_numpy`` need."""
    return require().pinned_empty(shape, np.dtype(dtype).name)


def synchronize() -> None:
    """Wait for the queued device work; raises any asynchronous kernel error."""
    require().synchronize()


def mem_info() -> tuple[int, int]:
    """(free bytes, total bytes) of the current device."""
    return require().mem_info()


def set_stream(stream) -> None:
    """Launch every _cuda op on ``stream``: an integer cudaStream_t handle, an object with a
    ``cuda_stream`` attribute (torch.cuda.Stream, cupy streams), or None/0 for the legacy
    default stream. Needed for CUDA graph capture, which cannot use the legacy stream."""
    mod = require()
    if stream is None:
        handle = 0
    elif hasattr(stream, "cuda_stream"):
        handle = int(stream.cuda_stream)
    else:
        handle = int(stream)
    mod.set_stream(handle)
