"""Weight initializers (in place, float32), matching PyTorch's definitions."""
from __future__ import annotations

import math

import numpy as np

__all__ = ["kaiming_normal_", "default_uniform_", "as_rng"]


def as_rng(seed) -> np.random.Generator:
    """``None`` (fresh entropy), an int seed, or an existing Generator."""
    return np.random.default_rng(seed)


def _fans(shape: tuple) -> tuple[int, int]:
    """(fan_in, fan_out) of a (K, C, R, S) conv or (O, F) linear weight."""
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def kaiming_normal_(w: np.ndarray, rng: np.random.Generator, mode: str = "fan_out") -> None:
    """He normal init with ReLU gain: N(0, 2 / fan), torchvision's choice for ResNet convs."""
    fan_in, fan_out = _fans(w.shape)
    fan = fan_out if mode == "fan_out" else fan_in
    rng.standard_normal(dtype=np.float32, out=w)
    w *= np.float32(math.sqrt(2.0 / fan))


def default_uniform_(w: np.ndarray, rng: np.random.Generator, fan_in: int) -> None:
    """PyTorch's default Linear/Conv init: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    rng.random(dtype=np.float32, out=w)
    w *= np.float32(2.0 * bound)
    w -= np.float32(bound)

