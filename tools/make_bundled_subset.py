"""Regenerate python/resnet_cpp/data/bundled/fashion_mnist_small.npz.

A class-balanced subset of the official Fashion-MNIST splits: 600 images per class from the
60000-image train split and 100 per class from the 10000-image test split (6000 + 1000),
drawn without replacement by numpy.random.default_rng(SEED), kept in original file order.
The chosen indices are stored in the npz (train_indices, test_indices) for provenance.

    apt-get install -y dataset-fashion-mnist        # source: /usr/share/datasets/fashion-mnist
    PYTHONPATH=python python3 tools/make_bundled_subset.py [--src DIR] [--out FILE]
"""
from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np

from resnet_cpp.data import FASHION_MNIST_CLASSES, FASHION_MNIST_DIR, load_dataset

SEED = 20260401
PER_CLASS = {"train": 600, "test": 100}
OUT = Path(__file__).resolve().parents[1] / "python/resnet_cpp/data/bundled/fashion_mnist_small.npz"


def balanced_indices(labels: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """per_class random indices of each class, sorted (original order)."""
    picks = [rng.choice(np.flatnonzero(labels == k), per_class, replace=False)
             for k in range(int(labels.max()) + 1)]
    return np.sort(np.concatenate(picks))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", default=str(FASHION_MNIST_DIR), help="Fashion-MNIST IDX directory")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    train, test = load_dataset("fashion-mnist", args.src)
    rng = np.random.default_rng(SEED)
    out = {}
    for split, ds in (("train", train), ("test", test)):
        idx = balanced_indices(ds.labels, PER_CLASS[split], rng)
        out[f"x_{split}"] = ds.raw[idx, 0]                     # uint8 (n, 28, 28)
        out[f"y_{split}"] = ds.labels[idx].astype(np.uint8)    # (n,)
        out[f"{split}_indices"] = idx.astype(np.int32)         # rows of the official split
    out["classes"] = np.array(FASHION_MNIST_CLASSES)
    np.savez_compressed(args.out, **out)
    digest = hashlib.sha256(Path(args.out).read_bytes()).hexdigest()
    print(f"wrote {args.out}: {Path(args.out).stat().st_size} bytes, sha256 {digest}")
    for split in ("train", "test"):
        print(split, out[f"x_{split}"].shape, np.bincount(out[f"y_{split}"]).tolist())


if __name__ == "__main__":
    main()
