"""resnet_cpp.data: file readers (IDX, CIFAR pickles, npz), load_dataset, DataLoader.

Every reader test writes its own small files in the exact on-disk format of the real
datasets; the bundled Fashion-MNIST subset is checked as shipped.
"""
from __future__ import annotations

import gc
import gzip
import os
import pickle
import threading
import time

import numpy as np
import pytest

from resnet_cpp.data import (
    BUNDLED_PATH,
    DATASET_NAMES,
    DataLoader,
    Dataset,
    UnsafePickleError,
    channel_stats,
    load_dataset,
    read_cifar_batch,
    read_idx,
    read_npz,
    restricted_load,
)


# ---------------------------------------------------------------------------------------
# helpers writing the real on-disk formats

def idx_bytes(arr: np.ndarray) -> bytes:
    """IDX encoding of a uint8 array: 0x00 0x00 0x08 ndim, big-endian dims, payload."""
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(d.to_bytes(4, "big") for d in arr.shape)
    return header + np.ascontiguousarray(arr, np.uint8).tobytes()


def write_file(path, data: bytes, gz: bool) -> str:
    path = str(path) + (".gz" if gz else "")
    with (gzip.open(path, "wb") if gz else open(path, "wb")) as f:
        f.write(data)
    return path


def write_idx_dataset(d, rng, n_train=12, n_test=5, h=7, w=6, gz=True):
    """Write the four standard Fashion-MNIST/MNIST files; return the arrays written."""
    out = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        x = rng.integers(0, 256, (n, h, w), dtype=np.uint8)
        y = rng.integers(0, 10, n, dtype=np.uint8)
        write_file(d / f"{split}-images-idx3-ubyte", idx_bytes(x), gz)
        write_file(d / f"{split}-labels-idx1-ubyte", idx_bytes(y), gz)
        out[split] = (x, y)
    return out


def cifar_dump(path, obj) -> None:
    # The real batches were written by Python 2 cPickle, protocol 2, with bytes keys.
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def cifar_batch(rng, n, label_key=b"labels", k=10):
    return {b"batch_label": b"testing batch 1 of 1",
            label_key: rng.integers(0, k, n).tolist(),
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"filenames": [f"img_{i}.png".encode() for i in range(n)]}


def write_cifar10(d, rng, n=4):
    batches = [cifar_batch(rng, n) for _ in range(6)]
    for i, b in enumerate(batches[:5]):
        cifar_dump(d / f"data_batch_{i + 1}", b)
    cifar_dump(d / "test_batch", batches[5])
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer",
             b"dog", b"frog", b"horse", b"ship", b"truck"]
    cifar_dump(d / "batches.meta", {b"num_cases_per_batch": n, b"label_names": names,
                                    b"num_vis": 3072})
    return batches


# ---------------------------------------------------------------------------------------
# IDX

@pytest.mark.parametrize("gz", [False, True])
def test_idx_round_trip(tmp_path, rng, gz):
    x = rng.integers(0, 256, (3, 5, 4), dtype=np.uint8)
    y = rng.integers(0, 10, 3, dtype=np.uint8)
    px = write_file(tmp_path / "img", idx_bytes(x), gz)
    py = write_file(tmp_path / "lbl", idx_bytes(y), gz)
    np.testing.assert_array_equal(read_idx(px), x)
    np.testing.assert_array_equal(read_idx(py), y)


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("name", ["fashion-mnist", "mnist"])
def test_idx_load_dataset(tmp_path, rng, gz, name):
    arrays = write_idx_dataset(tmp_path, rng, gz=gz)
    train, test = load_dataset(name, tmp_path)
    for ds, (x, y), split in ((train, arrays["train"], "train"), (test, arrays["t10k"], "test")):
        assert ds.name == f"{name}/{split}"
        assert ds.images.dtype == np.float32 and ds.images.shape == (len(y), 1, 7, 6)
        np.testing.assert_array_equal(ds.images[:, 0], x.astype(np.float32) / 255)
        assert ds.labels.dtype == np.int64
        np.testing.assert_array_equal(ds.labels, y)
        assert len(ds) == len(y) and len(ds.classes) == 10
    assert train.classes[9] == ("Ankle boot" if name == "fashion-mnist" else "9")


def test_idx_torchvision_layout_and_dotted_names(tmp_path, rng):
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    arrays = write_idx_dataset(raw, rng, gz=False)
    train, _ = load_dataset("fashion_mnist", tmp_path)
    np.testing.assert_array_equal(train.labels, arrays["train"][1])
    dotted = tmp_path / "dotted"
    dotted.mkdir()
    for f in raw.iterdir():
        f.rename(dotted / f.name.replace("-idx", ".idx"))
    _, test = load_dataset("FashionMNIST", dotted)
    np.testing.assert_array_equal(test.labels, arrays["t10k"][1])


@pytest.mark.parametrize("gz", [False, True])
def test_idx_truncated(tmp_path, rng, gz):
    x = rng.integers(0, 256, (4, 5, 5), dtype=np.uint8)
    p = write_file(tmp_path / "img", idx_bytes(x)[:-7], gz)
    with pytest.raises(ValueError, match=r"(?s)img.*truncated.*100 payload bytes.*93"):
        read_idx(p)


def test_idx_trailing_bytes(tmp_path):
    p = write_file(tmp_path / "lbl", idx_bytes(np.arange(4, dtype=np.uint8)) + b"\0", False)
    with pytest.raises(ValueError, match="trailing bytes"):
        read_idx(p)


@pytest.mark.parametrize("header", [
    bytes([0, 0, 0x09, 3]),  # dtype byte 0x09 (signed byte) is not what MNIST uses
    bytes([1, 0, 0x08, 3]),  # first two bytes must be zero
    bytes([0, 0, 0x08, 0]),  # zero dimensions
    b"\x89PNG",
])
def test_idx_bad_magic(tmp_path, header):
    p = write_file(tmp_path / "bad", header + b"\0" * 64, False)
    with pytest.raises(ValueError, match=r"bad.*bad IDX magic"):
        read_idx(p)


def test_idx_short_files(tmp_path):
    p = write_file(tmp_path / "empty", b"", False)
    with pytest.raises(ValueError, match="empty.*not an IDX file"):
        read_idx(p)
    p = write_file(tmp_path / "hdr", bytes([0, 0, 8, 3, 0, 0]), False)
    with pytest.raises(ValueError, match="truncated IDX header"):
        read_idx(p)


def test_idx_corrupt_gzip(tmp_path, rng):
    x = rng.integers(0, 256, (40, 9, 9), dtype=np.uint8)
    p = write_file(tmp_path / "img", idx_bytes(x), True)
    data = open(p, "rb").read()
    open(p, "wb").write(data[: len(data) // 2])  # cut the gzip stream itself
    with pytest.raises(ValueError, match="img.gz.*corrupt or truncated gzip"):
        read_idx(p)


def test_idx_count_mismatch(tmp_path, rng):
    write_idx_dataset(tmp_path, rng, gz=True)
    write_file(tmp_path / "train-labels-idx1-ubyte",
               idx_bytes(np.zeros(11, np.uint8)), True)  # 12 images, 11 labels
    with pytest.raises(ValueError, match=r"count mismatch.*12 images.*11 labels"):
        load_dataset("fashion-mnist", tmp_path)


def test_idx_swapped_files(tmp_path, rng):
    arrays = write_idx_dataset(tmp_path, rng, gz=False)
    # a labels file where the images file belongs
    write_file(tmp_path / "t10k-images-idx3-ubyte", idx_bytes(arrays["t10k"][1]), False)
    with pytest.raises(ValueError, match="magic 0x00000801, expected 0x00000803"):
        load_dataset("mnist", tmp_path)


def test_missing_files_say_how_to_get_them(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"(?s)does not exist.*apt-get install -y "
                                                r"dataset-fashion-mnist.*--data-dir"):
        load_dataset("fashion-mnist", tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"train-images-idx3-ubyte.*not found.*apt-get"):
        load_dataset("fashion-mnist", tmp_path)
    with pytest.raises(FileNotFoundError, match=r"(?s)mnist.*--data-dir"):
        load_dataset("mnist", tmp_path)
    with pytest.raises(FileNotFoundError, match=r"(?s)data_batch_1.*cifar-10-python.tar.gz"
                                                r".*https://www.cs.toronto.edu/~kriz/cifar"):
        load_dataset("cifar10", tmp_path)
    with pytest.raises(FileNotFoundError, match=r"(?s)train, test.*cifar-100-python.tar.gz"):
        load_dataset("cifar100", tmp_path)
    with pytest.raises(FileNotFoundError, match="no such"):
        read_idx(tmp_path / "absent")


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'; valid names: " +
                       ", ".join(DATASET_NAMES)):
        load_dataset("imagenet")
    with pytest.raises(TypeError):
        load_dataset(10)


# ---------------------------------------------------------------------------------------
# CIFAR pickles

@pytest.mark.parametrize("subdir", ["", "cifar-10-batches-py"])
def test_cifar10(tmp_path, rng, subdir):
    d = tmp_path / subdir
    d.mkdir(exist_ok=True)
    batches = write_cifar10(d, rng)
    train, test = load_dataset("cifar10", tmp_path)
    assert train.images.shape == (20, 3, 32, 32) and test.images.shape == (4, 3, 32, 32)
    x = np.concatenate([b[b"data"] for b in batches[:5]]).reshape(20, 3, 32, 32)
    np.testing.assert_array_equal(train.raw, x)
    # channel-major rows: the first 1024 values of a row are the red plane
    np.testing.assert_array_equal(test.raw[2, 0].reshape(-1), batches[5][b"data"][2, :1024])
    np.testing.assert_array_equal(train.labels, sum((b[b"labels"] for b in batches[:5]), []))
    np.testing.assert_array_equal(test.labels, batches[5][b"labels"])
    assert train.classes[1] == "automobile" and test.name == "cifar10/test"


def test_cifar10_from_tar(tmp_path, rng):
    import tarfile
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    batches = write_cifar10(d, rng)
    archive = tmp_path / "dl" / "cifar-10-python.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(d, arcname="cifar-10-batches-py")
    for where in (archive.parent, archive):  # the directory holding it, or the file
        train, test = load_dataset("cifar10", where)
        np.testing.assert_array_equal(test.raw.reshape(4, -1), batches[5][b"data"])
        assert len(train) == 20 and train.classes[9] == "truck"
    # a malicious member inside the archive is refused the same way
    cifar_dump(d / "test_batch", {b"x": _Evil(tmp_path / "pwned")})
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(d, arcname="cifar-10-batches-py")
    with pytest.raises(UnsafePickleError, match=r"cifar-10-python.tar.gz:cifar-10-batches-py/"
                                                r"test_batch: refused"):
        load_dataset("cifar10", archive)
    assert not (tmp_path / "pwned").exists()
    archive.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not a readable tar archive"):
        load_dataset("cifar10", archive)


def test_cifar100(tmp_path, rng):
    d = tmp_path / "cifar-100-python"
    d.mkdir()
    tr = cifar_batch(rng, 7, b"fine_labels", 100)
    tr[b"coarse_labels"] = rng.integers(0, 20, 7).tolist()
    te = cifar_batch(rng, 3, b"fine_labels", 100)
    cifar_dump(d / "train", tr)
    cifar_dump(d / "test", te)
    names = [f"class{i}".encode() for i in range(100)]
    cifar_dump(d / "meta", {b"fine_label_names": names,
                            b"coarse_label_names": [b"c"] * 20})
    train, test = load_dataset("cifar-100", tmp_path)
    np.testing.assert_array_equal(train.labels, tr[b"fine_labels"])
    np.testing.assert_array_equal(test.raw.reshape(3, -1), te[b"data"])
    assert len(train.classes) == 100 and train.classes[42] == "class42"


def test_cifar_str_keys_and_bad_batches(tmp_path, rng):
    p = tmp_path / "b"
    cifar_dump(p, {"data": np.zeros((2, 3072), np.uint8), "labels": [0, 9]})
    x, y = read_cifar_batch(p)
    assert x.shape == (2, 3, 32, 32) and y.tolist() == [0, 9]
    cifar_dump(p, {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]})
    with pytest.raises(ValueError, match="count mismatch"):
        read_cifar_batch(p)
    cifar_dump(p, {b"data": np.zeros((2, 1024), np.uint8), b"labels": [0, 1]})
    with pytest.raises(ValueError, match=r"uint8 \(N, 3072\)"):
        read_cifar_batch(p)
    cifar_dump(p, {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]})
    with pytest.raises(ValueError, match=r"\[0, 10\)"):
        read_cifar_batch(p, num_classes=10)
    cifar_dump(p, {b"data": np.zeros((2, 3072), np.uint8)})
    with pytest.raises(ValueError, match="missing key 'labels'.*'data'"):
        read_cifar_batch(p)
    cifar_dump(p, [1, 2])
    with pytest.raises(ValueError, match="expected a pickled dict"):
        read_cifar_batch(p)
    data = pickle.dumps(cifar_batch(rng, 2), protocol=2)
    p.write_bytes(data[:-40])
    with pytest.raises(ValueError, match="b: not a valid CIFAR pickle"):
        read_cifar_batch(p)


class _Evil:
    """Unpickling this would run a shell command that creates a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_malicious_pickle_is_refused(tmp_path, protocol):
    marker = tmp_path / "pwned"
    d = tmp_path / "cifar"
    d.mkdir()
    write_cifar10(d, np.random.default_rng(0))
    # a genuine-looking batch with the payload hidden in one value (first, so that protocol
    # 5 reaches it before numpy's _frombuffer, which is refused too)
    batch = {b"x": _Evil(marker), b"data": np.zeros((1, 3072), np.uint8), b"labels": [0]}
    with open(d / "data_batch_3", "wb") as f:
        pickle.dump(batch, f, protocol=protocol)
    with pytest.raises(UnsafePickleError, match=r"data_batch_3: refused to load global "
                                                r"(posix|os|nt)\.system"):
        load_dataset("cifar10", d)
    with pytest.raises(ValueError):  # UnsafePickleError is also a ValueError
        restricted_load(d / "data_batch_3")
    assert not marker.exists()
    # and the plain builtins route
    (d / "test_batch").write_bytes(pickle.dumps({b"data": eval}, protocol=protocol))
    with pytest.raises(UnsafePickleError, match=r"(__builtin__|builtins)\.eval"):
        restricted_load(d / "test_batch")


def test_restricted_unpickler_limits_codecs(tmp_path):
    import codecs
    p = tmp_path / "c"

    class Rot:
        def __reduce__(self):
            return codecs.encode, ("abc", "rot13")

    p.write_bytes(pickle.dumps(Rot(), protocol=2))
    with pytest.raises(UnsafePickleError, match="rot13"):
        restricted_load(p)


# ---------------------------------------------------------------------------------------
# npz

@pytest.mark.parametrize("layout", ["NHW", "NHWC", "NCHW"])
def test_npz(tmp_path, rng, layout):
    c = 1 if layout == "NHW" else 3
    x = rng.integers(0, 256, (6, c, 8, 9), dtype=np.uint8)
    xt = rng.random((2, c, 8, 9)).astype(np.float64)  # float test images in [0,1]
    store = {"NHW": lambda a: a[:, 0], "NHWC": lambda a: a.transpose(0, 2, 3, 1),
             "NCHW": lambda a: a}[layout]
    p = tmp_path / "mine.npz"
    np.savez(p, x_train=store(x), y_train=np.arange(6) % 3, x_test=store(xt),
             y_test=np.array([2, 0], np.int32), classes=np.array(["a", "b", "c"]))
    train, test = load_dataset("npz", p)
    np.testing.assert_array_equal(train.raw, x)
    np.testing.assert_allclose(test.images, xt.astype(np.float32))
    assert test.images.dtype == np.float32 and test.labels.tolist() == [2, 0]
    assert train.classes == ["a", "b", "c"] and train.name == "mine/train"


def test_npz_bad_input(tmp_path):
    x = np.zeros((2, 8, 8), np.uint8)
    good = dict(x_train=x, y_train=np.zeros(2, int), x_test=x, y_test=np.zeros(2, int))
    p = tmp_path / "d.npz"
    np.savez(p, **{k: v for k, v in good.items() if k != "y_test"})
    with pytest.raises(ValueError, match=r"missing key\(s\) \['y_test'\]"):
        read_npz(p)
    np.savez(p, **{**good, "y_train": np.zeros(3, int)})
    with pytest.raises(ValueError, match="count mismatch.*2 images.*3 labels"):
        read_npz(p)
    np.savez(p, **{**good, "x_test": np.zeros((2, 3, 8, 3), np.uint8)})
    with pytest.raises(ValueError, match="cannot tell the channel axis"):
        read_npz(p)
    np.savez(p, **{**good, "x_train": np.zeros((2, 8, 8), np.int16)})
    with pytest.raises(ValueError, match="uint8 or float"):
        read_npz(p)
    np.savez(p, **{**good, "classes": np.array([object()], dtype=object)})
    with pytest.raises(ValueError, match="d.npz.*allow_pickle"):
        read_npz(p)
    p.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a readable .npz"):
        read_npz(p)
    with pytest.raises(FileNotFoundError):
        load_dataset("npz", tmp_path / "none.npz")
    with pytest.raises(ValueError, match="needs data_dir"):
        load_dataset("npz")


# ---------------------------------------------------------------------------------------
# bundled subset

def test_bundled_subset():
    assert BUNDLED_PATH.is_file() and BUNDLED_PATH.stat().st_size < 4 * 2 ** 20
    train, test = load_dataset("bundled")
    assert train.images.shape == (6000, 1, 28, 28) and test.images.shape == (1000, 1, 28, 28)
    assert train.images.dtype == np.float32 and 0 <= train.images.min() < train.images.max() <= 1
    assert np.bincount(train.labels).tolist() == [600] * 10
    assert np.bincount(test.labels).tolist() == [100] * 10
    assert train.classes[0] == "T-shirt/top" and train.classes[9] == "Ankle boot"
    mean, std = channel_stats(train)
    # Fashion-MNIST's full-train statistics are 0.2860 / 0.3530
    assert abs(mean[0] - 0.286) < 0.01 and abs(std[0] - 0.353) < 0.01
    with np.load(BUNDLED_PATH) as d:  # provenance: rows of the official splits
        assert len(np.unique(d["train_indices"])) == 6000 and d["train_indices"].max() < 60000
        assert len(np.unique(d["test_indices"])) == 1000 and d["test_indices"].max() < 10000


# ---------------------------------------------------------------------------------------
# Dataset, channel_stats

def test_channel_stats_and_dataset(rng):
    x = rng.integers(0, 256, (9, 3, 5, 4), dtype=np.uint8)
    ds = Dataset(x, rng.integers(0, 2, 9), ["a", "b"], "t")
    mean, std = channel_stats(ds, chunk=4)
    ref = x.astype(np.float64) / 255
    np.testing.assert_allclose(mean, ref.mean(axis=(0, 2, 3)), rtol=1e-6)
    np.testing.assert_allclose(std, ref.std(axis=(0, 2, 3)), rtol=1e-5)
    assert mean.dtype == np.float32 and mean.shape == (3,)
    sub = ds.subset([4, 1])
    np.testing.assert_array_equal(sub.raw, x[[4, 1]])
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\)"):
        Dataset(x, np.full(9, 2), ["a", "b"], "t")
    with pytest.raises(ValueError, match="9 images but 8 labels"):
        Dataset(x, np.zeros(8, int), ["a"], "t")
    with pytest.raises(ValueError, match="N,C,H,W"):
        Dataset(x[0], np.zeros(3, int), ["a"], "t")


# ---------------------------------------------------------------------------------------
# DataLoader

@pytest.fixture
def small():
    rng = np.random.default_rng(7)
    x = rng.integers(0, 256, (23, 2, 6, 6), dtype=np.uint8)
    return Dataset(x, np.arange(23) % 5, [str(i) for i in range(5)], "small")


def batches(it):
    return [(x.copy(), y.copy()) for x, y in it]


def assert_same(a, b):
    assert len(a) == len(b)
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)


def test_loader_epoch_covers_dataset(small):
    loader = DataLoader(small, 5, seed=3)
    assert len(loader) == 5 and len(DataLoader(small, 5, drop_last=True)) == 4
    out = batches(loader)
    assert [len(y) for _, y in out] == [5, 5, 5, 5, 3]
    x = np.concatenate([b[0] for b in out])
    assert x.dtype == np.float32 and x.shape == (23, 2, 6, 6)
    order = loader.permutation()
    np.testing.assert_array_equal(x, small.images[order])
    np.testing.assert_array_equal(np.concatenate([b[1] for b in out]), small.labels[order])
    assert sorted(order.tolist()) == list(range(23)) and order.tolist() != list(range(23))
    out = batches(DataLoader(small, 10, shuffle=False, drop_last=True))
    assert len(out) == 2
    np.testing.assert_array_equal(out[1][0], small.images[10:20])


def test_loader_determinism_and_resume(small):
    a, b = DataLoader(small, 4, seed=11), DataLoader(small, 4, seed=11, prefetch=0)
    for epoch in (0, 3):
        a.set_epoch(epoch)
        b.set_epoch(epoch)
        full = batches(a)
        assert_same(full, batches(b))
        for k in (0, 2, 5, 6):
            assert_same(batches(a.iter_from(k)), full[k:])
    a.set_epoch(1)
    e1 = batches(a)
    a.set_epoch(0)
    assert not np.array_equal(batches(a)[0][1], e1[0][1]) or \
        not np.array_equal(a.permutation(0), a.permutation(1))
    assert not np.array_equal(DataLoader(small, 4, seed=12).permutation(0), a.permutation(0))
    with pytest.raises(ValueError, match="past the end"):
        a.iter_from(len(a) + 1)


def test_loader_normalization(small):
    mean, std = channel_stats(small)
    x = np.concatenate([b[0] for b in DataLoader(small, 8, mean=mean, std=std, shuffle=False)])
    ref = (small.images - mean.reshape(1, -1, 1, 1)) / std.reshape(1, -1, 1, 1)
    np.testing.assert_allclose(x, ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(x.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(x.std(axis=(0, 2, 3)), 1, atol=1e-4)
    # float-stored datasets are used as is, and normalizing never writes into the dataset
    flt = Dataset(small.images.copy(), small.labels, small.classes, "float")
    x2 = np.concatenate([b[0] for b in DataLoader(flt, 8, mean=mean, std=std, shuffle=False)])
    np.testing.assert_array_equal(x2, x)
    np.testing.assert_array_equal(flt.images, small.images)


def test_loader_bad_args(small):
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        DataLoader(small, 0)
    with pytest.raises(TypeError, match="batch_size must be an int"):
        DataLoader(small, 2.0)
    with pytest.raises(ValueError, match="both mean and std"):
        DataLoader(small, 2, mean=[0.5, 0.5])
    with pytest.raises(ValueError, match=r"one value per channel \(2\)"):
        DataLoader(small, 2, mean=[0.5] * 3, std=[1] * 3)
    with pytest.raises(ValueError, match="std must be > 0"):
        DataLoader(small, 2, mean=0.5, std=0)
    with pytest.raises(ValueError, match="leaves no batch"):
        DataLoader(small, 24, drop_last=True)
    with pytest.raises(ValueError, match="seed must be >= 0"):
        DataLoader(small, 2, seed=-1)
    with pytest.raises(ValueError, match="prefetch must be >= 0"):
        DataLoader(small, 2, prefetch=-1)
    with pytest.raises(TypeError, match="Dataset"):
        DataLoader(np.zeros((2, 1, 2, 2)), 2)
    with pytest.raises(ValueError, match="epoch must be >= 0"):
        DataLoader(small, 2).set_epoch(-1)


def _wait_dead(thread: threading.Thread) -> bool:
    thread.join(timeout=5)
    return not thread.is_alive()


def test_prefetch_thread_shuts_down(small):
    loader = DataLoader(small, 1, prefetch=2)  # 23 batches, queue of 2
    it = iter(loader)
    next(it)
    thread = it._thread
    time.sleep(0.05)
    assert thread.is_alive()  # blocked on the full queue
    del it  # abandoned mid-epoch
    gc.collect()
    assert _wait_dead(thread)
    with iter(loader) as it:  # explicit close via context manager
        next(it)
        thread = it._thread
    assert _wait_dead(thread)
    it = iter(loader)
    assert len(list(it)) == 23  # exhausted
    assert _wait_dead(it._thread)
    with pytest.raises(StopIteration):
        next(it)


def test_prefetch_reraises_worker_errors(small):
    loader = DataLoader(small, 4)
    real = loader.gather_batch

    def failing(perm, epoch, b):
        if b == 2:
            raise KeyError("boom in batch 2")
        return real(perm, epoch, b)

    loader.gather_batch = failing
    it = iter(loader)
    next(it)
    next(it)
    with pytest.raises(KeyError, match="boom in batch 2"):
        next(it)
    assert _wait_dead(it._thread)
    with pytest.raises(StopIteration):
        next(it)


def _is_crop_flip(aug: np.ndarray, img: np.ndarray, pad: int) -> bool:
    """aug (C,H,W) equals some crop of img zero-padded by pad, maybe mirrored."""
    c, h, w = img.shape
    padded = np.pad(img, ((0, 0), (pad, pad), (pad, pad)))
    for dy in range(2 * pad + 1):
        for dx in range(2 * pad + 1):
            crop = padded[:, dy:dy + h, dx:dx + w]
            if np.array_equal(aug, crop) or np.array_equal(aug, crop[:, :, ::-1]):
                return True
    return False


def test_loader_augment_deterministic(small):
    def make(**kw):
        loader = DataLoader(small, 6, augment=True, padding=2, seed=5, **kw)
        loader.set_epoch(4)
        return loader

    loader = make()
    full = batches(loader)
    assert_same(batches(make()), full)
    assert_same(batches(make(prefetch=0)), full)
    assert_same(batches(make().iter_from(2)), full[2:])
    order = loader.permutation(4)
    x = np.concatenate([b[0] for b in full])
    assert all(_is_crop_flip(x[i], small.images[order[i]], 2) for i in range(len(x)))
    assert not np.array_equal(x, small.images[order])  # something moved
    # another epoch draws other crops: compare image by image in dataset order
    other = make()
    other.set_epoch(5)
    x5 = np.concatenate([b[0] for b in batches(other)])
    assert not np.array_equal(x5[np.argsort(other.permutation(5))], x[np.argsort(order)])
    # normalization comes after augmentation: padded pixels are black (0) on the [0,1] scale
    xn = np.concatenate([b[0] for b in batches(make(mean=[0.5, 0.5], std=[0.25, 0.25]))])
    np.testing.assert_allclose(xn, (x - 0.5) / 0.25, rtol=1e-6, atol=1e-6)
