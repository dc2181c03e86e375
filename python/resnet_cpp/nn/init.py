"""Weight initializers (in place, float32), matching PyTorch's definitions.

Each takes a NumPy array or an ``rc.nn.Parameter``, which is filled in its host layout
((K, C, R, S) for a conv weight, whatever order it is stored in), so a seed gives the same
weights in any stored order.
"""
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


def _fill(w, fill) -> None:
    """Run ``fill(array)`` on w, a NumPy array, or a Parameter in its host layout."""
    if isinstance(w, np.ndarray):
        fill(w)
        return
    host = np.empty(w.shape, np.float32)
    fill(host)
    w.copy_(host)


def kaiming_normal_(w, rng: np.random.Generator, mode: str = "fan_out") -> None:
    """He normal init with ReLU gain: N(0, 2 / fan), torchvision's choice for ResNet convs."""
    fan_in, fan_out = _fans(w.shape)
    fan = fan_out if mode == "fan_out" else fan_in

    def fill(a: np.ndarray) -> None:
        rng.standard_normal(dtype=np.float32, out=a)
        a *= np.float32(math.sqrt(2.0 / fan))
    _fill(w, fill)


def default_uniform_(w, rng: np.random.Generator, fan_in: int) -> None:
    """PyTorch's default Linear/Conv init: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0

    def fill(a: np.ndarray) -> None:
        rng.random(dtype=np.float32, out=a)
        a *= np.float32(2.0 * bound)
        a -= np.float32(bound)
    _fill(w, fill)

