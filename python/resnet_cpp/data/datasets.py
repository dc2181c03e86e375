"""Datasets: the in-memory Dataset type, ``load_dataset`` and ``channel_stats``.

A Dataset keeps its images as stored on disk (uint8 0..255 for every built-in dataset) and
exposes them as float32 (N,C,H,W) in [0,1] through ``.images``; the DataLoader converts
batch by batch from the stored array, so CIFAR-10 costs 150 MiB of RAM, not 600.
"""
from __future__ import annotations

import os
import tarfile
import zlib
from pathlib import Path
from typing import Sequence

import numpy as np

from .readers import MAX_PAYLOAD_BYTES, read_cifar_batch, read_cifar_meta, read_idx_pair, read_npz

__all__ = [
    "BUNDLED_PATH",
    "DATASET_NAMES",
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_DIR",
    "MAX_CLASSES",
    "Dataset",
    "channel_stats",
    "load_dataset",
]

BUNDLED_PATH = Path(__file__).resolve().parent / "bundled" / "fashion_mnist_small.npz"
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
# The most classes an .npz dataset may have (labels 0..MAX_CLASSES-1): ImageNet's 1,000 with
# room. A stray large label would otherwise build a model as wide as its value, and the
# evaluation's confusion matrix is K x K.
MAX_CLASSES = 4096
DATASET_NAMES = ("bundled", "fashion-mnist", "mnist", "cifar10", "cifar100", "npz")

FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
MNIST_CLASSES = [str(i) for i in range(10)]
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck"]


class Dataset:
    """Images and labels of one split held in memory.

    Attributes:
        images: float32 (N,C,H,W) in [0,1] (converted from the stored uint8 on first access
            and cached).
        labels: int64 (N,).
        classes: class names; ``labels`` index into it.
        name: e.g. ``"fashion-mnist/train"``.
    Construct with ``images`` uint8 (N,C,H,W) 0..255 (stored as is, divided by 255 on use)
    or float (N,C,H,W) already in [0,1].
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, classes: Sequence[str],
                 name: str) -> None:
        images = np.asarray(images)
        labels = np.asarray(labels)
        if images.ndim != 4:
            raise ValueError(f"Dataset {name!r}: images must be (N,C,H,W), got {images.shape}")
        if images.dtype != np.uint8 and not np.issubdtype(images.dtype, np.floating):
            raise ValueError(f"Dataset {name!r}: images must be uint8 or float, "
                             f"got {images.dtype}")
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"Dataset {name!r}: labels must be 1-D integers, "
                             f"got {labels.dtype} {labels.shape}")
        if labels.shape[0] != images.shape[0]:
            raise ValueError(f"Dataset {name!r}: {images.shape[0]} images but "
                             f"{labels.shape[0]} labels")
        classes = [str(c) for c in classes]
        if labels.size and (labels.min() < 0 or labels.max() >= len(classes)):
            raise ValueError(f"Dataset {name!r}: labels must lie in [0, {len(classes)}), "
                             f"got [{labels.min()}, {labels.max()}]")
        dtype = np.uint8 if images.dtype == np.uint8 else np.float32
        self._raw = np.ascontiguousarray(images, dtype=dtype)
        self._images: np.ndarray | None = None
        self.labels = np.ascontiguousarray(labels, dtype=np.int64)
        self.classes = classes
        self.name = name

    @property
    def raw(self) -> np.ndarray:
        """Stored images (N,C,H,W): uint8 0..255, or float32 in [0,1]."""
        return self._raw

    @property
    def raw_scale(self) -> float:
        """Factor from ``raw`` to the [0,1] scale: 1/255 for uint8, 1 for float."""
        return 1.0 / 255.0 if self._raw.dtype == np.uint8 else 1.0

    @property
    def images(self) -> np.ndarray:
        """float32 (N,C,H,W) in [0,1]."""
        if self._images is None:
            if self._raw.dtype == np.uint8:
                # x / 255 correctly rounded, as torchvision's ToTensor computes it
                self._images = np.divide(self._raw, np.float32(255), dtype=np.float32)
            else:
                self._images = self._raw
        return self._images

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        return tuple(self._raw.shape[1:])  # type: ignore[return-value]

    def subset(self, indices: Sequence[int] | np.ndarray, name: str | None = None) -> Dataset:
        """A new Dataset holding the given samples (copied), same classes."""
        idx = np.asarray(indices, dtype=np.int64)
        return Dataset(self._raw[idx], self.labels[idx], self.classes,
                       name or f"{self.name}[subset]")

    def __len__(self) -> int:
        return int(self._raw.shape[0])

    def __repr__(self) -> str:
        c, h, w = self.shape
        return (f"Dataset({self.name!r}, n={len(self)}, image=({c},{h},{w}), "
                f"classes={self.num_classes})")


def channel_stats(dataset: Dataset, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and (population) std of ``dataset.images`` -> float32 (C,), (C,).

    Accumulates in float64 over chunks of the stored array, so it never materializes the
    whole float32 dataset.
    """
    raw = dataset.raw
    n, c = raw.shape[0], raw.shape[1]
    if n == 0:
        raise ValueError(f"channel_stats: dataset {dataset.name!r} is empty")
    s = np.zeros(c, np.float64)
    ss = np.zeros(c, np.float64)
    for i in range(0, n, chunk):
        x = raw[i:i + chunk].astype(np.float64)
        s += x.sum(axis=(0, 2, 3))
        ss += np.square(x).sum(axis=(0, 2, 3))
    count = n * raw.shape[2] * raw.shape[3]
    mean = s / count
    var = np.maximum(ss / count - mean * mean, 0.0)
    scale = dataset.raw_scale
    return (mean * scale).astype(np.float32), (np.sqrt(var) * scale).astype(np.float32)


# ---------------------------------------------------------------------------------------
# load_dataset

_IDX_NAMES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _data_root() -> Path:
    """Root for datasets without a system package: $RESNET_CPP_DATA or ~/.cache/resnet_cpp."""
    env = os.environ.get("RESNET_CPP_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "resnet_cpp"


def _how_to_get(name: str, data_dir: Path) -> str:
    if name == "fashion-mnist":
        return ("install the Debian package (`apt-get update && apt-get install -y "
                f"dataset-fashion-mnist`, which puts it in {FASHION_MNIST_DIR}) or pass "
                "data_dir= (CLI: --data-dir) pointing at a directory with "
                "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
                "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz "
                "(from https://github.com/zalandoresearch/fashion-mnist); "
                "or use the bundled subset: load_dataset('bundled')")
    if name == "mnist":
        return ("download the four IDX files (train-images-idx3-ubyte.gz, "
                "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
                f"t10k-labels-idx1-ubyte.gz) into {data_dir}, or pass data_dir= "
                "(CLI: --data-dir) pointing at them")
    archive = _CIFAR[name][0]
    return (f"download {archive} from https://www.cs.toronto.edu/~kriz/cifar.html into "
            f"{data_dir} (extracted or not), or pass data_dir= (CLI: --data-dir) pointing at "
            "the archive or the directory holding it or its extracted files")


def _find(data_dir: Path, stems: Sequence[str], subdirs: Sequence[str]) -> Path | None:
    """First existing file named stem or stem.gz in data_dir or one of its subdirs."""
    for sub in ("", *subdirs):
        for stem in stems:
            for suffix in ("", ".gz"):
                p = data_dir / sub / (stem + suffix)
                if p.is_file():
                    return p
    return None


def _load_idx_dataset(name: str, data_dir: Path, classes: list[str]) -> tuple[Dataset, Dataset]:
    # torchvision keeps the raw files under <root>/{FashionMNIST,MNIST}/raw.
    tv = "FashionMNIST" if name == "fashion-mnist" else "MNIST"
    subdirs = ("raw", f"{tv}/raw")
    splits = []
    for split, (img_stem, lbl_stem) in _IDX_NAMES.items():
        # Some mirrors spell the names with a dot: train-images.idx3-ubyte.
        img = _find(data_dir, (img_stem, img_stem.replace("-idx", ".idx")), subdirs)
        lbl = _find(data_dir, (lbl_stem, lbl_stem.replace("-idx", ".idx")), subdirs)
        if img is None or lbl is None:
            missing = img_stem if img is None else lbl_stem
            raise FileNotFoundError(f"{name}: {missing}(.gz) not found in {data_dir}; "
                                    + _how_to_get(name, data_dir))
        x, y = read_idx_pair(img, lbl)
        splits.append(Dataset(x, y, classes, f"{name}/{split}"))
    return splits[0], splits[1]


_CIFAR = {
    # name: (archive, its top directory, train files, test file, meta file, meta key,
    #        label key, classes)
    "cifar10": ("cifar-10-python.tar.gz", "cifar-10-batches-py",
                [f"data_batch_{i}" for i in range(1, 6)], "test_batch",
                "batches.meta", "label_names", "labels", 10),
    "cifar100": ("cifar-100-python.tar.gz", "cifar-100-python", ["train"], "test",
                 "meta", "fine_label_names", "fine_labels", 100),
}


def _cifar_from_tar(archive: Path, top: str, names: Sequence[str]) -> dict[str, bytes]:
    """Read the named members of ``top/`` from a CIFAR .tar.gz in one pass, in memory."""
    try:
        with tarfile.open(archive, "r:*") as tf:
            out = {}
            for m in tf:
                base = m.name.rsplit("/", 1)[-1]
                if m.isfile() and m.name in (f"{top}/{base}", base) and base in names:
                    if m.size > MAX_PAYLOAD_BYTES:
                        raise ValueError(f"{archive}: member {m.name} is {m.size} bytes, more "
                                         f"than the {MAX_PAYLOAD_BYTES} this reader accepts")
                    out[base] = tf.extractfile(m).read()
            return out
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise ValueError(f"{archive}: not a readable tar archive ({e})") from e


def _load_cifar(name: str, data_dir: Path) -> tuple[Dataset, Dataset]:
    archive, top, train_files, test_file, meta_file, meta_key, label_key, k = _CIFAR[name]
    wanted = [*train_files, test_file]
    # Extracted files in data_dir or data_dir/top; else the archive (data_dir or inside it).
    tar_path: Path | None = data_dir if data_dir.is_file() else None
    root = data_dir
    if tar_path is None:
        if not (root / test_file).is_file() and (root / top / test_file).is_file():
            root = root / top
        if not all((root / f).is_file() for f in wanted) and (data_dir / archive).is_file():
            tar_path = data_dir / archive
    if tar_path is not None:
        blobs = _cifar_from_tar(tar_path, top, [*wanted, meta_file])
        have, where = set(blobs), f"archive {tar_path}"

        def source(f: str) -> tuple[Path | str, bytes | None]:
            return f"{tar_path}:{top}/{f}", blobs[f]
    else:
        have = {f for f in [*wanted, meta_file] if (root / f).is_file()}
        where = f"{data_dir} (nor in {data_dir / top}, nor a {archive} there)"

        def source(f: str) -> tuple[Path | str, bytes | None]:
            return root / f, None
    missing = [f for f in wanted if f not in have]
    if missing:
        raise FileNotFoundError(f"{name}: {', '.join(missing)} not found in {where}; "
                                + _how_to_get(name, data_dir))
    if meta_file in have:
        path, data = source(meta_file)
        classes = read_cifar_meta(path, meta_key, data=data)
        if len(classes) != k:
            raise ValueError(f"{path}: {meta_key!r} has {len(classes)} names, expected {k}")
    else:
        classes = CIFAR10_CLASSES if k == 10 else [str(i) for i in range(k)]
    parts = []
    for f in wanted:
        path, data = source(f)
        parts.append(read_cifar_batch(path, label_key, k, data=data))
    x_train = np.concatenate([p[0] for p in parts[:-1]])
    y_train = np.concatenate([p[1] for p in parts[:-1]])
    x_test, y_test = parts[-1]
    return (Dataset(x_train, y_train, classes, f"{name}/train"),
            Dataset(x_test, y_test, classes, f"{name}/test"))


def _load_npz(path: Path, name: str, default_classes: list[str] | None) -> tuple[Dataset, Dataset]:
    d = read_npz(path)
    classes = d["classes"] or default_classes
    for key in ("y_train", "y_test"):  # before a model as wide as the largest label is built
        y = d[key]
        if y.size and y.max() >= MAX_CLASSES:
            i = int(np.argmax(y))
            raise ValueError(f"{path}: {key}[{i}] = {int(y[i])}; labels must be class indices "
                             f"below {MAX_CLASSES} (MAX_CLASSES)")
    if classes is not None and len(classes) > MAX_CLASSES:
        raise ValueError(f"{path}: {len(classes)} class names, more than {MAX_CLASSES} "
                         "(MAX_CLASSES)")
    k = int(max(d["y_train"].max(initial=-1), d["y_test"].max(initial=-1))) + 1
    if classes is None:
        classes = [str(i) for i in range(k)]
    if k > len(classes):
        raise ValueError(f"{path}: labels go up to {k - 1} but there are only "
                         f"{len(classes)} class names")
    return (Dataset(d["x_train"], d["y_train"], classes, f"{name}/train"),
            Dataset(d["x_test"], d["y_test"], classes, f"{name}/test"))


def _canonical(name: str) -> str:
    if not isinstance(name, str):
        raise TypeError(f"dataset name must be a str, got {type(name).__name__}")
    key = name.strip().lower().replace("_", "").replace("-", "")
    canon = {n.replace("-", ""): n for n in DATASET_NAMES}
    if key not in canon:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(DATASET_NAMES)}")
    return canon[key]


def load_dataset(name: str, data_dir: str | os.PathLike | None = None
                 ) -> tuple[Dataset, Dataset]:
    """Load a dataset's official train and test splits -> (train, test).

    Names (case, ``-`` and ``_`` ignored):
      ``bundled``: a balanced 6000/1000 subset of Fashion-MNIST shipped in the package.
      ``fashion-mnist``: IDX files; default dir /usr/share/datasets/fashion-mnist
          (``apt-get install dataset-fashion-mnist``).
      ``mnist``: IDX files; default dir $RESNET_CPP_DATA/mnist (~/.cache/resnet_cpp/mnist).
      ``cifar10`` / ``cifar100``: the python-pickle batches (data_batch_1..5, test_batch /
          train, test), in data_dir or its cifar-10-batches-py / cifar-100-python subdir,
          or read straight from the downloaded cifar-10-python.tar.gz /
          cifar-100-python.tar.gz (in data_dir, or data_dir is that file);
          default dir $RESNET_CPP_DATA/<name>.
      ``npz``: ``data_dir`` is the path of an .npz with x_train, y_train, x_test, y_test.
    IDX files may be gzipped or not. Missing files raise FileNotFoundError saying how to
    get them; malformed files raise ValueError naming the file.
    """
    name = _canonical(name)
    if name == "bundled":
        path = Path(data_dir) if data_dir is not None else BUNDLED_PATH
        if not path.is_file():
            raise FileNotFoundError(f"bundled dataset {path} is missing; reinstall resnet_cpp "
                                    "or regenerate it with tools/make_bundled_subset.py")
        return _load_npz(path, "bundled", FASHION_MNIST_CLASSES)
    if name == "npz":
        if data_dir is None:
            raise ValueError("load_dataset('npz') needs data_dir= (CLI: --data-dir), the path "
                             "of an .npz file with x_train, y_train, x_test, y_test")
        path = Path(data_dir).expanduser()
        return _load_npz(path, path.stem, None)
    if data_dir is None:
        d = FASHION_MNIST_DIR if name == "fashion-mnist" else _data_root() / name
    else:
        d = Path(data_dir).expanduser()
    if not d.is_dir() and not (name.startswith("cifar") and d.is_file()):
        raise FileNotFoundError(f"{name}: data directory {d} does not exist; "
                                + _how_to_get(name, d))
    if name == "fashion-mnist":
        return _load_idx_dataset(name, d, FASHION_MNIST_CLASSES)
    if name == "mnist":
        return _load_idx_dataset(name, d, MNIST_CLASSES)
    return _load_cifar(name, d)
