"""Read PyTorch ``.pth`` / ``.pt`` files without torch.

Two container formats exist. The zip format (``torch.save`` since PyTorch 1.6) holds
``<name>/data.pkl``, one record ``<name>/data/<key>`` of raw bytes per storage and an
optional ``<name>/byteorder``. The legacy format (``_use_new_zipfile_serialization=False``,
and every file written before 1.6) is a stream of pickles: a magic number, a protocol
version, a sys-info dict, the object, the list of storage keys, then per key an int64
element count and the bytes. In both, the object's pickle names each storage by a
persistent id ``("storage", <torch.FloatStorage etc.>, key, location, numel[, view])``
and builds tensors with ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride,
...)``.

``TorchUnpickler`` resolves exactly those names to inert stand-ins of ours (a storage
type that only names a dtype; rebuild functions that only record where a tensor lies) plus
``collections.OrderedDict``. Any other global (``os.system``, ``builtins.eval``, a class
of the training script, ``argparse.Namespace``, ...) raises ``UnsafePickleError`` when
the pickle names it, before anything is called, so a crafted file cannot run code.
Tensors become NumPy arrays after the whole pickle has been read (the legacy format
stores the bytes after the pickle), checked against their storage's bounds.
"""
from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import zipfile
from typing import Any

import numpy as np

from ..data.readers import UnsafePickleError

__all__ = ["read_torch", "TorchUnpickler", "UnsafePickleError"]

# The first pickle of a legacy file (torch.serialization.MAGIC_NUMBER) and its protocol.
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
_BFLOAT16 = "bfloat16"  # no NumPy dtype: read as uint16, widened to float32

_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "BFloat16Storage": _BFLOAT16, "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class _Inert:
    """Base of the stand-ins: a pickle's BUILD opcode cannot set their attributes."""

    __slots__ = ()

    def __setstate__(self, state):
        raise UnsafePickleError(f"refused to set the state of a {type(self).__name__}")


class _StorageType(_Inert):
    """Stands for ``torch.FloatStorage`` etc.: only names the element type."""

    __slots__ = ("name", "dtype", "bfloat16")

    def __init__(self, name: str):
        self.name = name
        dtype = _STORAGE_DTYPES[name]
        self.dtype = np.dtype(np.uint16 if dtype is _BFLOAT16 else dtype)
        self.bfloat16 = dtype is _BFLOAT16


class _Storage(_Inert):
    """One storage named by a persistent id; ``array`` (1-D) is filled once its bytes are read."""

    __slots__ = ("kind", "key", "numel", "array")

    def __init__(self, kind: _StorageType, key: str, numel: int):
        self.kind, self.key, self.numel = kind, key, numel
        self.array: np.ndarray | None = None


class _TensorRef(_Inert):
    """Where a tensor lies in a storage; becomes an ndarray in ``_materialize``."""

    __slots__ = ("storage", "offset", "size", "stride")

    def __init__(self, storage, offset, size, stride):
        if not isinstance(storage, _Storage):
            raise UnsafePickleError(f"a tensor rebuild got {type(storage).__name__}, "
                                    "not a storage")
        ints = (isinstance(offset, int) and isinstance(size, tuple)
                and isinstance(stride, tuple) and len(size) == len(stride)
                and all(isinstance(v, int) for v in size + stride))
        if not ints or offset < 0 or min(size + stride, default=0) < 0:
            raise ValueError(f"malformed tensor: offset {offset!r}, size {size!r}, "
                             f"stride {stride!r}")
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    def to_numpy(self) -> np.ndarray:
        st = self.storage
        if st.array is None:
            raise ValueError(f"storage {st.key!r} has no data in the file")
        if 0 in self.size:
            out = np.zeros(self.size, st.array.dtype)
        else:
            last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride))
            if last >= st.array.size:
                raise ValueError(f"tensor of size {self.size} at offset {self.offset} runs "
                                 f"past its storage {st.key!r} ({st.array.size} elements)")
            item = st.array.itemsize
            out = np.lib.stride_tricks.as_strided(
                st.array[self.offset:], self.size, tuple(s * item for s in self.stride),
                writeable=False).copy()
        if st.kind.bfloat16:  # bfloat16 is the top half of a float32
            out = (out.astype(np.uint32) << 16).view(np.float32)
        return out


def _rebuild_tensor(storage, storage_offset, size, stride, *rest):
    """torch._utils._rebuild_tensor / _v2 (rest: requires_grad, hooks, metadata)."""
    return _TensorRef(storage, storage_offset, tuple(size), tuple(stride))


def _rebuild_parameter(data, requires_grad, backward_hooks, *state):
    """torch._utils._rebuild_parameter(_with_state): a Parameter is its tensor here."""
    if not isinstance(data, _TensorRef):
        raise UnsafePickleError(f"a parameter rebuild got {type(data).__name__}, not a tensor")
    return data


_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    **{("torch", name): _StorageType(name) for name in _STORAGE_DTYPES},
}


class TorchUnpickler(pickle.Unpickler):
    """Unpickles a torch file's object, admitting only tensor and storage rebuilders.

    ``storages`` maps each persistent-id key to its ``_Storage`` (data filled by the
    caller); the result holds ``_TensorRef`` placeholders until ``_materialize``.
    """

    def __init__(self, file, legacy: bool):
        super().__init__(file, encoding="utf-8")
        self.legacy = legacy
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str) -> Any:
        obj = _GLOBALS.get((module, name))
        if obj is None:
            raise UnsafePickleError(
                f"refused to load global {module}.{name}: only tensors, storages and dicts "
                "are admitted from a PyTorch file, so nothing in it can run code. If you "
                "trust the file, re-save just its state_dict with torch: "
                "torch.save(torch.load(path, weights_only=False)['state_dict'], 'weights.pth')")
        return obj

    def persistent_load(self, pid: Any) -> _Storage:
        n = 6 if self.legacy else 5
        if not (isinstance(pid, tuple) and len(pid) == n and pid[0] == "storage"
                and isinstance(pid[1], _StorageType) and isinstance(pid[2], str)
                and isinstance(pid[4], int) and pid[4] >= 0):
            raise UnsafePickleError(f"unexpected persistent id {pid!r}")
        if self.legacy and pid[5] is not None:
            raise ValueError("storage views (PyTorch < 0.4 files) are not supported")
        kind, key, numel = pid[1], pid[2], pid[4]
        st = self.storages.get(key)
        if st is None:
            st = self.storages[key] = _Storage(kind, key, numel)
        elif st.kind is not kind:
            raise ValueError(f"storage {key!r} is named with two element types")
        return st


def _materialize(obj: Any) -> Any:
    """Replace every _TensorRef inside dicts, lists and tuples by its ndarray."""
    if isinstance(obj, _TensorRef):
        return obj.to_numpy()
    if isinstance(obj, dict):  # dict or OrderedDict: nothing else gets through find_class
        out = collections.OrderedDict() if isinstance(obj, collections.OrderedDict) else {}
        for k, v in obj.items():
            out[k] = _materialize(v)
        return out
    if isinstance(obj, (list, tuple)):
        return type(obj)(_materialize(v) for v in obj)
    return obj


def _byteswapped(a: np.ndarray) -> np.ndarray:
    return a.byteswap().view(a.dtype)


def _read_zip(zf: zipfile.ZipFile, path: str) -> Any:
    names = zf.namelist()
    if any(n.endswith("/constants.pkl") for n in names):
        raise ValueError(f"{path}: a TorchScript archive (torch.jit.save), not a "
                         "state_dict; save model.state_dict() with torch.save instead")
    pkls = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(pkls) != 1:
        raise ValueError(f"{path}: a zip file without one <name>/data.pkl: not a PyTorch file")
    prefix = pkls[0][: -len("data.pkl")]
    big = False
    if prefix + "byteorder" in names:
        order = zf.read(prefix + "byteorder").decode(errors="replace").strip()
        if order not in ("little", "big"):
            raise ValueError(f"{path}: unknown byteorder {order!r}")
        big = order == "big"
    up = TorchUnpickler(io.BytesIO(zf.read(pkls[0])), legacy=False)
    obj = up.load()
    for key, st in up.storages.items():
        record = f"{prefix}data/{key}"
        if record not in names:
            raise ValueError(f"{path}: storage record {record!r} is missing")
        raw = zf.read(record)
        need = st.numel * st.kind.dtype.itemsize
        if len(raw) < need:
            raise ValueError(f"{path}: storage {key!r} holds {len(raw)} bytes, its "
                             f"{st.numel} elements need {need}")
        a = np.frombuffer(raw, st.kind.dtype, count=st.numel)
        st.array = _byteswapped(a) if big else a
    return obj


def _read_legacy(f, path: str) -> Any:
    def small() -> Any:  # one of the plain-data pickles around the object
        return TorchUnpickler(f, legacy=True).load()

    if small() != _LEGACY_MAGIC:
        raise ValueError(f"{path}: not a PyTorch file (no zip archive, wrong magic number)")
    if small() != _LEGACY_PROTOCOL:
        raise ValueError(f"{path}: unknown legacy protocol version")
    info = small()
    little = not isinstance(info, dict) or info.get("little_endian", True)
    up = TorchUnpickler(f, legacy=True)
    obj = up.load()
    keys = small()
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise ValueError(f"{path}: malformed storage key list")
    for key in keys:
        st = up.storages.get(key)
        if st is None:
            raise ValueError(f"{path}: data for storage {key!r}, which no tensor uses")
        head = f.read(8)
        if len(head) != 8:
            raise ValueError(f"{path}: truncated at storage {key!r}")
        numel = struct.unpack("<q" if little else ">q", head)[0]
        if numel != st.numel:
            raise ValueError(f"{path}: storage {key!r} has {numel} elements, its id says "
                             f"{st.numel}")
        raw = f.read(numel * st.kind.dtype.itemsize)
        if len(raw) != numel * st.kind.dtype.itemsize:
            raise ValueError(f"{path}: truncated at storage {key!r}")
        a = np.frombuffer(raw, st.kind.dtype)
        st.array = a if little else _byteswapped(a)
    return obj


def read_torch(path: str | os.PathLike) -> Any:
    """Unpickle a PyTorch file safely; tensors come back as NumPy arrays.

    Returns the saved object (a state_dict, or a dict wrapping one, ...). Raises
    FileNotFoundError, UnsafePickleError (a global other than tensor/storage rebuilders
    and OrderedDict: nothing was called) or ValueError (not a PyTorch file, truncated,
    inconsistent), each naming the file. bfloat16 tensors are widened to float32, other
    dtypes are kept (float16 stays float16).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file")
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                obj = _read_zip(zf, path)
        else:
            with open(path, "rb") as f:
                if _is_tar(f):
                    raise ValueError(f"{path}: the tar format of PyTorch < 0.4 is not "
                                     "supported; re-save it with a recent torch")
                obj = _read_legacy(f, path)
        return _materialize(obj)
    except UnsafePickleError as e:
        raise UnsafePickleError(f"{path}: {e}") from None
    except (pickle.UnpicklingError, EOFError, TypeError, KeyError, IndexError,
            AttributeError, zipfile.BadZipFile, struct.error) as e:
        raise ValueError(f"{path}: not a readable PyTorch file ({type(e).__name__}: {e})") \
            from e


def _is_tar(f) -> bool:
    """True for a POSIX tar stream ('ustar' at byte 257); rewinds f."""
    f.seek(257)
    magic = f.read(5)
    f.seek(0)
    return magic == b"ustar"
