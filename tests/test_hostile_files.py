"""Hostile dataset files: every reader refuses them with a ValueError naming the file, before
reading or allocating what they only declare (a few MiB at most while refusing)."""
from __future__ import annotations

import gzip
import io
import pickle
import tarfile
import tracemalloc
import zipfile

import numpy as np
import pytest

from resnet_cpp.data import load_dataset, read_idx, read_npz, restricted_load
from resnet_cpp.data import readers
from test_data import idx_bytes, write_cifar10, write_file

try:
    from numpy._core.multiarray import _reconstruct
except ImportError:  # numpy 1.x
    from numpy.core.multiarray import _reconstruct

PEAK_LIMIT = 8 << 20  # bytes Python and NumPy may hold while refusing a file


class _HugeArray:
    """Pickles as numpy's _reconstruct asked for a 1 TiB array: about 100 bytes."""

    def __reduce__(self):
        return _reconstruct, (np.ndarray, (1 << 40,), b"b")


def _npy_header_only(shape, dtype="|u1") -> bytes:
    """An .npy member: a header declaring `shape`, then 16 bytes of data."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False,
                                               "shape": shape})
    return buf.getvalue() + bytes(16)


def _npz(path, **arrays):
    good = dict(x_train=np.zeros((2, 8, 8), np.uint8), y_train=np.zeros(2, int),
                x_test=np.zeros((2, 8, 8), np.uint8), y_test=np.zeros(2, int))
    np.savez(path, **{**good, **arrays})
    return path


def idx_gzip_bomb(d):
    # A valid header for 10 images of 28x28, then 32 MiB of zeros: 32 KiB gzipped.
    header = idx_bytes(np.zeros((10, 28, 28), np.uint8))
    return read_idx, write_file(d / "img", header + bytes(32 << 20), gz=True), "trailing bytes"


def idx_huge_dims(d):
    header = bytes([0, 0, 8, 3]) + b"".join(v.to_bytes(4, "big") for v in (60000, 65535, 65535))
    return read_idx, write_file(d / "img", header + bytes(64), gz=True), "more than the"


def pickle_huge_array(d):
    p = d / "data_batch_1"
    p.write_bytes(pickle.dumps(_HugeArray(), protocol=2))
    return restricted_load, p, r"refused _reconstruct\(ndarray, \(1099511627776,\)\)"


def pickle_huge_length(d):
    # BINBYTES8 declaring 1 TiB of bytes, followed by 3.
    p = d / "test_batch"
    p.write_bytes(b"\x80\x04\x8e" + (1 << 40).to_bytes(8, "little") + b"abc.")
    return restricted_load, p, "not a valid CIFAR pickle"


def pickle_gzip_bomb(d):  # past the cap once decompressed (the cap is lowered below)
    p = d / "test_batch"
    p.write_bytes(gzip.compress(pickle.dumps(bytes(4 << 20), protocol=4)))
    return restricted_load, p, "larger than 1048576 bytes once decompressed"


def tar_member_over_cap(d):
    p = d / "cifar-10-python.tar.gz"
    with tarfile.open(p, "w:gz") as tf:
        info = tarfile.TarInfo("cifar-10-batches-py/test_batch")
        info.size = 4 << 20
        tf.addfile(info, io.BytesIO(bytes(info.size)))
    return (lambda path: load_dataset("cifar10", path)), p, "test_batch is 4194304 bytes"


def npz_truncated(d):
    p = _npz(d / "d.npz")
    p.write_bytes(p.read_bytes()[:-30])
    return read_npz, p, "not a readable .npz"


def npz_corrupt_member(d):
    p = d / "d.npz"
    np.savez_compressed(p, x_train=np.arange(4096, dtype=np.uint8).reshape(64, 8, 8),
                        y_train=np.zeros(64, int), x_test=np.zeros((2, 8, 8), np.uint8),
                        y_test=np.zeros(2, int))
    data = bytearray(p.read_bytes())
    data[200:260] = bytes(60)  # inside x_train's deflate stream
    p.write_bytes(bytes(data))
    return read_npz, p, "not a readable .npz|Bad CRC|x_train"


def npz_member_declares_more(d):
    p = d / "d.npz"
    with zipfile.ZipFile(p, "w") as z:
        for key in ("x_train", "y_train", "y_test"):
            z.writestr(f"{key}.npy", _npy_header_only((2,)))
        z.writestr("x_test.npy", _npy_header_only((1 << 20, 1 << 20)))
    return read_npz, p, r"'x_test' declares a \(1048576, 1048576\) uint8 array"


def npz_empty_test_split(d):
    return read_npz, _npz(d / "d.npz", x_test=np.zeros((0, 8, 8), np.uint8),
                          y_test=np.zeros(0, int)), "'x_test' holds no images"


def npz_huge_label(d):
    return ((lambda path: load_dataset("npz", path)),
            _npz(d / "d.npz", y_train=np.array([0, 10**6])), r"y_train\[1\] = 1000000")


HOSTILE = [idx_gzip_bomb, idx_huge_dims, pickle_huge_array, pickle_huge_length,
           pickle_gzip_bomb, tar_member_over_cap, npz_truncated, npz_corrupt_member,
           npz_member_declares_more, npz_empty_test_split, npz_huge_label]


@pytest.mark.parametrize("make", HOSTILE, ids=lambda f: f.__name__)
def test_hostile_file_is_a_value_error_naming_it(make, tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "MAX_PAYLOAD_BYTES", 1 << 20)
    monkeypatch.setattr("resnet_cpp.data.datasets.MAX_PAYLOAD_BYTES", 1 << 20)
    read, path, what = make(tmp_path)
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=what) as e:
            read(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(path) in str(e.value)
    assert peak < PEAK_LIMIT, f"{peak} bytes allocated while refusing {path}"


def test_genuine_files_still_load(tmp_path, rng):
    """The checks above leave real files alone (CIFAR batches hold arrays; npz, IDX)."""
    batches = write_cifar10(tmp_path, rng)
    train, test = load_dataset("cifar10", tmp_path)
    np.testing.assert_array_equal(test.raw.reshape(-1, 3072), batches[5][b"data"])
    x = rng.integers(0, 256, (3, 5, 4), dtype=np.uint8)
    np.testing.assert_array_equal(read_idx(write_file(tmp_path / "i", idx_bytes(x), True)), x)
    assert read_npz(_npz(tmp_path / "ok.npz"))["x_train"].shape == (2, 1, 8, 8)
