"""Your own images: ImageFolder-style datasets and image files, decoded with Pillow
(optional extra: ``pip install "resnet_cpp[images]"``).

    train, test = load_image_folder("photos/", Preprocess(size=224))
    rc.train.fit(model, train, test, epochs=5)     # decoding runs in the loader's thread

A folder holds one sub-folder per class (``photos/cat/1.jpg``, ``photos/dog/7.png``);
classes are the sub-folder names in sorted order, as in torchvision's ImageFolder. With
``train/`` and ``val/`` (or ``test/``) sub-folders those are the splits; otherwise a fixed
fraction of each class is held out for testing.

Preprocessing is the standard one. Evaluation and prediction: resize the shorter side to
``resize`` (default ``size / 0.875``, 256 for 224) with bilinear filtering, then take the
central ``size`` x ``size`` crop. Training adds augmentation: a random crop of 8% to 100%
of the area with aspect ratio 3/4 to 4/3, resized to ``size`` x ``size``, and a random
horizontal flip (torchvision's RandomResizedCrop + RandomHorizontalFlip), drawn from the
loader's per-batch seed and the image's place in the batch, so resumed runs and
data-parallel processes (each decoding its part of a batch) see the same images. Pixels are scaled to [0, 1]
and normalized per channel, by default with the ImageNet constants (their channel means
for grayscale), which ImageNet-pretrained models expect.
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .loader import DataLoader

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "IMAGE_EXTENSIONS", "Preprocess", "ImageDataset",
           "ImageLoader", "image_folder", "image_files", "load_image_folder"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm", ".tif", ".tiff",
                    ".webp")
_SPLITS = (("train", "val"), ("train", "test"))


def _pil():
    try:
        from PIL import Image
    except ImportError:
        raise ImportError('reading images needs Pillow: pip install "resnet_cpp[images]"') \
            from None
    return Image


@dataclass(frozen=True)
class Preprocess:
    """How an image file becomes a (channels, size, size) uint8 array (see module doc).

    size: output height and width. resize: the shorter side before the center crop
    (None: round(size / 0.875)). channels: 3 (RGB) or 1 (grayscale). scale: the area range
    of the training crop.
    """

    size: int = 224
    resize: int | None = None
    channels: int = 3
    scale: tuple = (0.08, 1.0)

    def __post_init__(self) -> None:
        if int(self.size) < 1:
            raise ValueError(f"size must be >= 1, got {self.size}")
        if self.resize is not None and int(self.resize) < int(self.size):
            raise ValueError(f"resize must be >= size ({self.size}), got {self.resize}")
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {self.channels}")
        lo, hi = (float(v) for v in self.scale)
        if not 0.0 < lo <= hi <= 1.0:
            raise ValueError(f"scale must be 0 < low <= high <= 1, got {self.scale}")
        object.__setattr__(self, "scale", (lo, hi))

    @property
    def resize_to(self) -> int:
        return int(self.resize) if self.resize is not None else round(self.size / 0.875)

    def to_dict(self) -> dict:
        return {**asdict(self), "scale": list(self.scale)}

    @classmethod
    def from_dict(cls, d: dict) -> Preprocess:
        return cls(**{k: tuple(v) if k == "scale" else v for k, v in d.items()
                      if k in ("size", "resize", "channels", "scale")})

    def default_normalization(self) -> tuple[tuple, tuple]:
        """ImageNet mean/std, or their channel averages for grayscale."""
        if self.channels == 3:
            return IMAGENET_MEAN, IMAGENET_STD
        return (float(np.mean(IMAGENET_MEAN)),), (float(np.mean(IMAGENET_STD)),)

    def open(self, path: str | os.PathLike):
        """The decoded image in RGB or L mode; ValueError naming the file if unreadable."""
        image = _pil()
        try:
            with image.open(path) as im:
                return im.convert("RGB" if self.channels == 3 else "L")
        except (OSError, ValueError, SyntaxError, image.DecompressionBombError) as e:
            raise ValueError(f"{path}: cannot read the image ({e})") from e

    def _array(self, im) -> np.ndarray:
        a = np.asarray(im, dtype=np.uint8)
        return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)

    def eval_array(self, im) -> np.ndarray:
        """Resize the shorter side, center crop -> uint8 (channels, size, size)."""
        bilinear = _pil().Resampling.BILINEAR
        w, h = im.size
        r = self.resize_to / min(w, h)
        nw, nh = max(self.size, round(w * r)), max(self.size, round(h * r))
        im = im.resize((nw, nh), bilinear)
        left, top = int(round((nw - self.size) / 2)), int(round((nh - self.size) / 2))
        return self._array(im.crop((left, top, left + self.size, top + self.size)))

    def train_array(self, im, rng: np.random.Generator, flip: bool = True) -> np.ndarray:
        """Random resized crop and horizontal flip -> uint8 (channels, size, size)."""
        pil = _pil()
        w, h = im.size
        box = (0, 0, w, h)  # fallback after 10 misses: the whole image
        for _ in range(10):
            area = w * h * rng.uniform(*self.scale)
            ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
            cw, ch = round(math.sqrt(area * ratio)), round(math.sqrt(area / ratio))
            if 0 < cw <= w and 0 < ch <= h:
                x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
                box = (x0, y0, x0 + cw, y0 + ch)
                break
        im = im.resize((self.size, self.size), pil.Resampling.BILINEAR, box=box)
        if flip and rng.random() < 0.5:
            im = im.transpose(pil.Transpose.FLIP_LEFT_RIGHT)
        return self._array(im)


class ImageDataset:
    """Image files and their labels, decoded batch by batch (nothing is held in memory).

    Attributes as ``Dataset``'s where they make sense: ``labels`` int64 (N,), ``classes``,
    ``name``, ``shape`` (C, size, size); plus ``paths``, ``preprocess`` and the
    normalization ``mean``/``std`` (``channel_stats()``) the training loop applies.
    """

    def __init__(self, paths: Sequence[str | os.PathLike], labels: Sequence[int],
                 classes: Sequence[str], preprocess: Preprocess | None = None, *,
                 name: str = "images", mean=None, std=None) -> None:
        self.preprocess = preprocess or Preprocess()
        self.paths = [os.fspath(p) for p in paths]
        self.labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        if len(self.labels) != len(self.paths):
            raise ValueError(f"ImageDataset {name!r}: {len(self.paths)} paths but "
                             f"{len(self.labels)} labels")
        self.classes = [str(c) for c in classes]
        if self.labels.size and (self.labels.min() < 0 or (
                self.classes and self.labels.max() >= len(self.classes))):
            raise ValueError(f"ImageDataset {name!r}: labels must lie in "
                             f"[0, {len(self.classes)})")
        default_mean, default_std = self.preprocess.default_normalization()
        self.mean = np.asarray(default_mean if mean is None else mean, np.float32)
        self.std = np.asarray(default_std if std is None else std, np.float32)
        self.name = name

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def shape(self) -> tuple[int, int, int]:
        p = self.preprocess
        return (p.channels, p.size, p.size)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def channel_stats(self) -> tuple[np.ndarray, np.ndarray]:
        """The per-channel normalization for this data (ImageNet constants by default)."""
        return self.mean, self.std

    def decode(self, indices: Sequence[int],
               rngs: Sequence[np.random.Generator] | None = None,
               flip: bool = True) -> np.ndarray:
        """uint8 (B, C, size, size): evaluation preprocessing, or training augmentation
        with image j's drawn from ``rngs[j]``."""
        p = self.preprocess
        if rngs is not None and len(rngs) != len(indices):
            raise ValueError(f"rngs: expected one generator per image ({len(indices)}), "
                             f"got {len(rngs)}")
        out = np.empty((len(indices), *self.shape), np.uint8)
        for j, i in enumerate(indices):
            im = p.open(self.paths[i])
            out[j] = p.eval_array(im) if rngs is None else p.train_array(im, rngs[j], flip)
        return out

    def make_loader(self, batch_size: int, **kwargs) -> ImageLoader:
        """An ImageLoader over this dataset (what ``rc.train`` iterates)."""
        return ImageLoader(self, batch_size, **kwargs)

    def __repr__(self) -> str:
        c, s, _ = self.shape
        return (f"ImageDataset({self.name!r}, n={len(self)}, image=({c},{s},{s}), "
                f"classes={self.num_classes})")


class ImageLoader(DataLoader):
    """DataLoader over an ImageDataset: the background thread decodes, augments and
    normalizes each batch (same arguments and determinism as DataLoader; ``padding`` is
    unused, ``augment`` selects the training preprocessing)."""

    dataset_types = (ImageDataset,)

    def gather_batch(self, perm: np.ndarray, epoch: int, batch: int
                     ) -> tuple[np.ndarray, np.ndarray, None]:
        lo, hi = self.shard_rows(batch)
        idx = perm[lo:hi]
        rngs = None
        if self.augment:  # one generator per image, keyed by its place in the whole batch
            seed, first = self.augment_seed(epoch, batch), lo - batch * self.batch_size
            rngs = [np.random.default_rng([seed, first + j]) for j in range(len(idx))]
        raw = self.dataset.decode(idx, rngs, self.flip)
        x = np.divide(raw, np.float32(255), dtype=np.float32)
        self._normalize(x)
        return x, self.dataset.labels[idx], None


def _image_files(folder: Path) -> list[Path]:
    """Image files under folder (recursively), sorted."""
    return sorted(p for p in folder.rglob("*") if p.is_file()
                  and p.suffix.lower() in IMAGE_EXTENSIONS)


def image_folder(root: str | os.PathLike, preprocess: Preprocess | None = None, *,
                 classes: Sequence[str] | None = None, name: str | None = None,
                 **kwargs: Any) -> ImageDataset:
    """An ImageDataset of ``root/<class>/**/<image>``; ``classes`` fixes the class list
    (e.g. the training split's, for a validation split lacking some classes)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such image folder")
    found = sorted(d.name for d in root.iterdir() if d.is_dir() and _image_files(d))
    if not found:
        raise ValueError(f"{root}: no class sub-folders with images "
                         f"({', '.join(IMAGE_EXTENSIONS)}); expected {root}/<class>/<image>")
    classes = list(classes) if classes is not None else found
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise ValueError(f"{root}: classes {unknown} are not among {classes}")
    paths, labels = [], []
    for c in found:
        files = _image_files(root / c)
        paths += files
        labels += [classes.index(c)] * len(files)
    return ImageDataset(paths, labels, classes, preprocess, name=name or str(root), **kwargs)


def image_files(paths: Sequence[str | os.PathLike], preprocess: Preprocess | None = None,
                **kwargs: Any) -> ImageDataset:
    """An unlabeled ImageDataset of image files and every image under given folders."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += _image_files(p)
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such file or folder")
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {list(map(str, paths))}")
    return ImageDataset(files, np.zeros(len(files), np.int64), [], preprocess, name="images",
                        **kwargs)


def load_image_folder(root: str | os.PathLike, preprocess: Preprocess | None = None, *,
                      test_fraction: float = 0.1, seed: int = 0, **kwargs: Any
                      ) -> tuple[ImageDataset, ImageDataset]:
    """(train, test) from an image folder: its ``train``/``val`` (or ``test``) sub-folders,
    or else a held-out ``test_fraction`` of every class (at least one image of each class
    with two or more), chosen by ``seed``."""
    root = Path(root)
    for train_dir, test_dir in _SPLITS:
        if (root / train_dir).is_dir() and (root / test_dir).is_dir():
            train = image_folder(root / train_dir, preprocess, name=f"{root.name}/train",
                                 **kwargs)
            test = image_folder(root / test_dir, preprocess, classes=train.classes,
                                name=f"{root.name}/{test_dir}", **kwargs)
            return train, test
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    full = image_folder(root, preprocess, name=root.name, **kwargs)
    rng = np.random.default_rng(seed)
    held = np.zeros(len(full), bool)
    for k in range(full.num_classes):
        idx = np.flatnonzero(full.labels == k)
        n = min(len(idx) - 1, max(1, round(test_fraction * len(idx))))
        held[rng.permutation(idx)[:n]] = True

    def part(mask: np.ndarray, split: str) -> ImageDataset:
        return ImageDataset([full.paths[i] for i in np.flatnonzero(mask)], full.labels[mask],
                            full.classes, full.preprocess, name=f"{root.name}/{split}",
                            mean=full.mean, std=full.std)

    return part(~held, "train"), part(held, "test")
