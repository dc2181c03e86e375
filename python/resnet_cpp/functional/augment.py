"""Training-time augmentation: zero-padded random crop and random horizontal flip.

Kernel: cpp/augment.cpp (threads split images). Each image's random choices depend only on
(seed, image index), through a counter-based splitmix64 generator, so a given seed gives
the same batch for any thread count. Use a fresh seed per batch (e.g. hash of epoch, step).
"""
from __future__ import annotations

import numpy as np

from .. import _core
from ._layout import check_int, check_layout

__all__ = ["random_crop_flip"]


def random_crop_flip(x: np.ndarray, *, padding: int = 4, flip: bool = True, seed: int,
                     layout: str = "NCHW", out: np.ndarray | None = None,
                     first_index: int = 0) -> np.ndarray:
    """Randomly crop (and flip) every image of a float32 batch.

    x: (N,C,H,W) (or (N,H,W,C) with layout="NHWC"), C-contiguous float32. For each image:
    zero-pad by `padding` on each side, take an HxW crop at a uniformly random offset, and
    if flip, mirror it left-right with probability 1/2. Returns y with x's shape (written
    into `out` if given; `out` must not overlap x). padding=0 and flip=False copy x.
    seed: any int (taken modulo 2**64). first_index: image i draws the choices of image
    first_index + i, so a part of a batch starting at that offset (one process's share)
    is augmented exactly as within the whole batch.
    """
    check_layout(layout)
    return _core.random_crop_flip(x, check_int(padding, "padding"), bool(flip),
                                  check_int(seed, "seed"), layout == "NHWC", out,
                                  check_int(first_index, "first_index"))
