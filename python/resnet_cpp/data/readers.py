"""File-format readers: IDX (MNIST, Fashion-MNIST), CIFAR python pickles, .npz.

Every reader validates what it reads and raises a ValueError naming the file and what was
wrong (bad magic, truncated payload, count mismatch, ...) instead of returning garbage.
Readers return raw arrays (uint8 images, int64 labels); ``datasets.py`` wraps them.

Sizes are bounded before anything is read: an IDX header's dimensions, an .npz member's
array header and a pickle's length fields must agree with the data actually there, and no
payload may exceed ``MAX_PAYLOAD_BYTES`` once decompressed. Files are read as streams, so a
small gzip that expands to gigabytes is refused after reading past what it declares, not
after inflating it all.

CIFAR batches are Python pickles. Unpickling can run arbitrary code, so they are read with
``RestrictedUnpickler``, which admits only the globals those files need to rebuild a NumPy
array; anything else (``os.system`` in a crafted ``__reduce__``, ...) is refused before it
can run.
"""
from __future__ import annotations

import codecs
import gzip
import io
import os
import pickle
import pickletools
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "MAX_PAYLOAD_BYTES",
    "UnsafePickleError",
    "RestrictedUnpickler",
    "read_idx",
    "read_idx_pair",
    "read_cifar_batch",
    "read_cifar_meta",
    "read_npz",
    "restricted_load",
]

# The largest payload a reader accepts, decompressed: 40x MNIST's training images (47 MB),
# 13x CIFAR-100's training pickle (155 MB). Larger declared sizes are refused unread.
MAX_PAYLOAD_BYTES = 2 << 30

# IDX magic: two zero bytes, a dtype byte (0x08 = unsigned byte), the number of dimensions.
_IDX_UBYTE = 0x08
_IDX_LABELS_MAGIC = 0x00000801  # 1-D uint8 labels
_IDX_IMAGES_MAGIC = 0x00000803  # 3-D uint8 images (N, H, W)
_GZIP_MAGIC = b"\x1f\x8b"


def _open(path: str | os.PathLike):
    """The file as a binary stream, gunzipped on the fly (detected by magic, not by extension)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    with open(path, "rb") as f:
        gz = f.read(2) == _GZIP_MAGIC
    return gzip.open(path, "rb") if gz else open(path, "rb")


def _read_into(f, out: memoryview, path) -> int:
    """Fill ``out`` from the stream; returns the bytes read (fewer only at the end)."""
    n = 0
    try:
        while n < len(out):
            got = f.readinto(out[n:])
            if not got:
                break
            n += got
    except (EOFError, OSError, zlib.error) as e:
        raise ValueError(f"{path}: corrupt or truncated gzip file ({e})") from e
    return n


def _read_capped(path: str | os.PathLike) -> bytes:
    """The whole (gunzipped) content, refused once it passes MAX_PAYLOAD_BYTES."""
    with _open(path) as f:
        try:
            data = f.read(MAX_PAYLOAD_BYTES + 1)
        except (EOFError, OSError, zlib.error) as e:
            raise ValueError(f"{path}: corrupt or truncated gzip file ({e})") from e
    if len(data) > MAX_PAYLOAD_BYTES:
        raise ValueError(f"{path}: larger than {MAX_PAYLOAD_BYTES} bytes once decompressed "
                         "(MAX_PAYLOAD_BYTES); not a dataset file this reader accepts")
    return data


def read_idx(path: str | os.PathLike, *, expected_magic: int | None = None) -> np.ndarray:
    """Read one IDX file (gzipped or not) into a uint8 array of the shape in its header.

    Only unsigned-byte IDX files are accepted (dtype byte 0x08), which is what MNIST and
    Fashion-MNIST use: magic 0x00000801 for labels (N,) and 0x00000803 for images (N, H, W).
    ``expected_magic`` additionally requires one of those two.
    Raises ValueError naming the file on a bad magic, a bad dimension count, header
    dimensions asking for more than MAX_PAYLOAD_BYTES, or a payload whose size differs from
    the product of the header dimensions (truncated or padded file). The payload is
    streamed into the array: at most the declared size plus one byte is ever read.
    """
    with _open(path) as f:
        head = bytearray(4)
        n = _read_into(f, memoryview(head), path)
        if n < 4:
            raise ValueError(f"{path}: not an IDX file (only {n} bytes, header needs 4)")
        magic = int.from_bytes(head, "big")
        dtype_byte, ndim = head[2], head[3]
        if head[:2] != b"\x00\x00" or dtype_byte != _IDX_UBYTE or ndim < 1:
            raise ValueError(
                f"{path}: bad IDX magic 0x{magic:08x}; expected 0x{_IDX_LABELS_MAGIC:08x} "
                f"(labels) or 0x{_IDX_IMAGES_MAGIC:08x} (images): two zero bytes, dtype byte "
                "0x08 (uint8), number of dimensions")
        if expected_magic is not None and magic != expected_magic:
            raise ValueError(f"{path}: IDX magic 0x{magic:08x}, expected 0x{expected_magic:08x} "
                             f"({'labels' if expected_magic == _IDX_LABELS_MAGIC else 'images'})")
        header = 4 + 4 * ndim
        raw_dims = bytearray(4 * ndim)
        n = _read_into(f, memoryview(raw_dims), path)
        if n < 4 * ndim:
            raise ValueError(f"{path}: truncated IDX header: {4 + n} bytes, "
                             f"{ndim} dimensions need {header}")
        dims = tuple(int.from_bytes(raw_dims[4 * i: 4 * i + 4], "big") for i in range(ndim))
        expected = 1
        for d in dims:
            expected *= d
        if expected > MAX_PAYLOAD_BYTES:
            raise ValueError(f"{path}: IDX header dims {dims} declare {expected} payload bytes, "
                             f"more than the {MAX_PAYLOAD_BYTES} this reader accepts "
                             "(MAX_PAYLOAD_BYTES)")
        out = np.empty(expected, np.uint8)
        payload = _read_into(f, memoryview(out), path)
        extra = payload == expected and _read_into(f, memoryview(bytearray(1)), path)
    if payload != expected or extra:
        what = "truncated" if payload < expected else "has trailing bytes"
        held = f"{payload}" if payload < expected else f"more than {expected}"
        raise ValueError(
            f"{path}: IDX file {what}: header dims {dims} need {expected} payload bytes "
            f"({header + expected} in total), file holds {held}")
    return out.reshape(dims)


def read_idx_pair(images_path: str | os.PathLike,
                  labels_path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read an IDX images/labels pair -> (images uint8 (N,1,H,W), labels int64 (N,))."""
    images = read_idx(images_path, expected_magic=_IDX_IMAGES_MAGIC)
    labels = read_idx(labels_path, expected_magic=_IDX_LABELS_MAGIC)
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"image/label count mismatch: {images_path} holds {images.shape[0]} "
                         f"images but {labels_path} holds {labels.shape[0]} labels")
    return images[:, None, :, :], labels.astype(np.int64)


# ---------------------------------------------------------------------------------------
# CIFAR python pickles


class UnsafePickleError(pickle.UnpicklingError, ValueError):
    """A pickle asked for a global that a CIFAR batch never holds; nothing was executed."""


def _numpy_reconstruct():
    # numpy >= 2 moved numpy.core to numpy._core; importing the old name warns.
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


def _reconstruct_empty(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    """numpy's ``_reconstruct`` as a pickled array calls it: an empty ndarray, which the
    BUILD opcode then fills from bytes present in the file. Any other shape would allocate
    whatever size the file names (a 69-byte pickle can ask for a terabyte), so it is refused.
    """
    if subtype is not np.ndarray or shape != (0,):
        raise UnsafePickleError(f"refused _reconstruct({getattr(subtype, '__name__', subtype)}, "
                                f"{shape!r}): a pickled array starts empty")
    return _numpy_reconstruct()(subtype, shape, dtype)


def _latin1_encode(obj: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles written by Python 3 use it for ``bytes``.

    Only the latin-1 round trip that pickle emits is allowed, not arbitrary codecs.
    """
    if not isinstance(obj, str) or encoding not in ("latin1", "latin-1"):
        raise UnsafePickleError(f"refused _codecs.encode({type(obj).__name__}, {encoding!r})")
    return codecs.encode(obj, "latin1", errors)


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that admits only the globals needed to rebuild NumPy arrays.

    Real CIFAR files hold dicts, lists, bytes, str and int (built by pickle opcodes, no
    globals) plus NumPy arrays, whose reconstruction needs exactly
    ``numpy.core.multiarray._reconstruct`` (``numpy._core`` in numpy 2; only for the empty
    array a pickle starts from), ``numpy.ndarray`` and ``numpy.dtype``. Protocol-2 files
    written by Python 3 also encode bytes through ``_codecs.encode(str, "latin1")``. Every
    other global raises UnsafePickleError before the object it names is ever called.
    """

    def find_class(self, module: str, name: str) -> Any:
        if name == "_reconstruct" and module in ("numpy.core.multiarray",
                                                 "numpy._core.multiarray"):
            return _reconstruct_empty
        if module == "numpy" and name == "ndarray":
            return np.ndarray
        if module == "numpy" and name == "dtype":
            return np.dtype
        if module == "_codecs" and name == "encode":
            return _latin1_encode
        raise UnsafePickleError(
            f"refused to load global {module}.{name}: a CIFAR batch only needs NumPy array "
            "reconstruction, so this file is not a genuine CIFAR pickle (possibly malicious)")


def restricted_load(path: str | os.PathLike, *, data: bytes | None = None) -> Any:
    """Unpickle ``path`` (gzipped or not) with RestrictedUnpickler and ``encoding='bytes'``.

    With ``data`` (e.g. a member read from a tar archive, at most MAX_PAYLOAD_BYTES) that is
    unpickled instead and ``path`` only names it in errors. The opcodes are walked once
    first: every length field (bytes, strings, frames) must fit in the data, so the
    unpickler never allocates a size the file only declares. Errors name the file:
    UnsafePickleError for a forbidden global, ValueError for a corrupt or truncated pickle.
    """
    if data is None:
        data = _read_capped(path)
    try:
        for _ in pickletools.genops(data):
            pass
        return RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except UnsafePickleError as e:
        raise UnsafePickleError(f"{path}: {e}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError,
            IndexError, AttributeError, MemoryError) as e:
        raise ValueError(f"{path}: not a valid CIFAR pickle ({type(e).__name__}: {e})") from e


def _key(d: dict, name: str, path: str | os.PathLike) -> Any:
    """d[name] accepting both bytes keys (the real files) and str keys."""
    for k in (name.encode(), name):
        if k in d:
            return d[k]
    keys = sorted(k.decode() if isinstance(k, bytes) else str(k) for k in d)
    raise ValueError(f"{path}: missing key {name!r}; the file has keys {keys}")


def read_cifar_batch(path: str | os.PathLike, label_key: str = "labels",
                     num_classes: int | None = None, *, data: bytes | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR python batch -> (images uint8 (N,3,32,32), labels int64 (N,)).

    The file is a pickled dict with ``b'data'`` uint8 (N, 3072) (the 1024 red, then green,
    then blue values of each 32x32 image, row-major) and ``label_key`` (``labels`` for
    CIFAR-10, ``fine_labels`` for CIFAR-100) as a list of N ints. ``data``: as in
    ``restricted_load``.
    """
    d = restricted_load(path, data=data)
    if not isinstance(d, dict):
        raise ValueError(f"{path}: expected a pickled dict, got {type(d).__name__}")
    x = _key(d, "data", path)
    labels = _key(d, label_key, path)
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 2 \
            or x.shape[1] != 3 * 32 * 32:
        desc = f"{x.dtype} {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
        raise ValueError(f"{path}: 'data' must be uint8 (N, 3072), got {desc}")
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: {label_key!r} is not a list of ints ({e})") from e
    if labels.ndim != 1 or labels.shape[0] != x.shape[0]:
        raise ValueError(f"image/label count mismatch in {path}: {x.shape[0]} images, "
                         f"{label_key!r} has shape {labels.shape}")
    if labels.size and (labels.min() < 0 or (num_classes is not None
                                              and labels.max() >= num_classes)):
        raise ValueError(f"{path}: labels must lie in [0, {num_classes}), "
                         f"got [{labels.min()}, {labels.max()}]")
    return x.reshape(-1, 3, 32, 32), labels


def read_cifar_meta(path: str | os.PathLike, key: str, *,
                    data: bytes | None = None) -> list[str]:
    """Class names from a CIFAR meta file (``label_names`` or ``fine_label_names``)."""
    d = restricted_load(path, data=data)
    if not isinstance(d, dict):
        raise ValueError(f"{path}: expected a pickled dict, got {type(d).__name__}")
    names = _key(d, key, path)
    if not isinstance(names, (list, tuple)):
        raise ValueError(f"{path}: {key!r} must be a list of names")
    return [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names]


# ---------------------------------------------------------------------------------------
# .npz

NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


def _to_nchw(x: np.ndarray, path: str | os.PathLike, key: str) -> np.ndarray:
    """(N,H,W) -> (N,1,H,W); (N,H,W,C) or (N,C,H,W) with C <= 4 -> (N,C,H,W)."""
    if x.ndim == 3:
        return x[:, None, :, :]
    if x.ndim != 4:
        raise ValueError(f"{path}: {key!r} must be (N,H,W), (N,H,W,C) or (N,C,H,W), "
                         f"got shape {x.shape}")
    c_first, c_last = x.shape[1] <= 4, x.shape[3] <= 4
    if c_last and not c_first:
        return x.transpose(0, 3, 1, 2)
    if c_first and not c_last:
        return x
    raise ValueError(f"{path}: cannot tell the channel axis of {key!r} with shape {x.shape}; "
                     "store it as (N,C,H,W) or (N,H,W,C) with C <= 4 channels and H, W > 4")


def _check_npz_member(path, zf: zipfile.ZipFile, key: str) -> None:
    """An .npz member's array header must not declare more bytes than the member holds
    (np.load allocates the declared array before reading), nor more than MAX_PAYLOAD_BYTES."""
    info = zf.getinfo(key + ".npy" if key + ".npy" in zf.namelist() else key)
    if info.file_size > MAX_PAYLOAD_BYTES:
        raise ValueError(f"{path}: {key!r} is {info.file_size} bytes, more than the "
                         f"{MAX_PAYLOAD_BYTES} this reader accepts (MAX_PAYLOAD_BYTES)")
    with zf.open(info) as f:
        version = np.lib.format.read_magic(f)
        read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                else np.lib.format.read_array_header_2_0)
        shape, _, dtype = read(f)
    declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if declared > info.file_size:
        raise ValueError(f"{path}: {key!r} declares a {shape} {dtype} array ({declared} bytes) "
                         f"but holds {info.file_size} bytes")


def read_npz(path: str | os.PathLike) -> dict[str, Any]:
    """Read an .npz dataset (``allow_pickle=False``).

    Required keys: ``x_train``, ``y_train``, ``x_test``, ``y_test``. Images are (N,H,W),
    (N,H,W,C) or (N,C,H,W), uint8 (0..255) or float ([0,1] scale); labels are 1-D integers.
    Neither split may be empty. Optional ``classes``: a 1-D string array of class names.
    Other keys are ignored. Returns a dict with ``x_train``/``x_test`` as C-contiguous
    (N,C,H,W) arrays (uint8 or float32), ``y_train``/``y_test`` int64, and ``classes``
    (list[str] or None). Any damage (not a zip, a bad member, a size the data does not
    hold) is a ValueError naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such .npz file")
    try:
        npz = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zlib.error, zipfile.BadZipFile) as e:
        raise ValueError(f"{path}: not a readable .npz file ({e})") from e
    if not hasattr(npz, "files"):
        raise ValueError(f"{path}: holds a single array, expected an .npz with keys {NPZ_KEYS}")
    with npz:
        missing = [k for k in NPZ_KEYS if k not in npz.files]
        if missing:
            raise ValueError(f"{path}: missing key(s) {missing}; an npz dataset needs "
                             f"{list(NPZ_KEYS)}, the file has {sorted(npz.files)}")
        keys = [*NPZ_KEYS, *(["classes"] if "classes" in npz.files else [])]
        try:
            for k in keys:
                _check_npz_member(path, npz.zip, k)
            arrays = {k: npz[k] for k in keys}
        except ValueError as e:  # object arrays need pickle, which is refused; bad headers
            raise ValueError(f"{path}: {e}") from e
        except (OSError, EOFError, KeyError, zlib.error, zipfile.BadZipFile) as e:
            raise ValueError(f"{path}: not a readable .npz file ({type(e).__name__}: {e})") from e
    classes = arrays.get("classes")
    out: dict[str, Any] = {}
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.dtype != np.uint8 and not np.issubdtype(x.dtype, np.floating):
            raise ValueError(f"{path}: 'x_{split}' must be uint8 or float, got {x.dtype}")
        x = _to_nchw(x, path, f"x_{split}")
        if x.shape[0] == 0:
            raise ValueError(f"{path}: 'x_{split}' holds no images")
        x = np.ascontiguousarray(x, dtype=np.uint8 if x.dtype == np.uint8 else np.float32)
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
            raise ValueError(f"{path}: 'y_{split}' must be 1-D integers, got {y.dtype} {y.shape}")
        if y.shape[0] != x.shape[0]:
            raise ValueError(f"image/label count mismatch in {path}: 'x_{split}' has "
                             f"{x.shape[0]} images, 'y_{split}' has {y.shape[0]} labels")
        if y.size and y.min() < 0:
            raise ValueError(f"{path}: 'y_{split}' has negative labels")
        out[f"x_{split}"], out[f"y_{split}"] = x, y.astype(np.int64)
    if out["x_train"].shape[1:] != out["x_test"].shape[1:]:
        raise ValueError(f"{path}: train images {out['x_train'].shape[1:]} and test images "
                         f"{out['x_test'].shape[1:]} differ in (C,H,W)")
    if classes is not None:
        if classes.ndim != 1 or classes.dtype.kind not in "US":
            raise ValueError(f"{path}: 'classes' must be a 1-D string array")
        classes = [c.decode() if isinstance(c, bytes) else str(c) for c in classes.tolist()]
    out["classes"] = classes
    return out
