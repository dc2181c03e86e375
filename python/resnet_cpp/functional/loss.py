"""Softmax cross-entropy loss with optional label smoothing (PyTorch's CrossEntropyLoss,
reduction="mean").

Kernel: cpp/loss.cpp computes the loss and its gradient in one call; the forward keeps the
gradient in the cache, so the backward costs nothing.
"""
from __future__ import annotations

import numpy as np

from .. import _core

__all__ = ["cross_entropy", "cross_entropy_backward"]


def cross_entropy(logits: np.ndarray, labels: np.ndarray, *, label_smoothing: float = 0.0):
    """Mean softmax cross-entropy over the batch.

    logits: float32 (N,K); labels: int32 or int64 (N,) with values in [0,K);
    label_smoothing in [0,1) mixes the one-hot target with the uniform distribution:
    q = (1 - label_smoothing) * onehot + label_smoothing / K.
    Returns (loss: float, cache); cross_entropy_backward(cache) gives dlogits.
    """
    try:
        ls = float(label_smoothing)
    except (TypeError, ValueError):
        raise TypeError(f"label_smoothing: expected a number, got {label_smoothing!r}") from None
    loss, dlogits = _core.softmax_cross_entropy(logits, labels, ls)
    return loss, dlogits


def cross_entropy_backward(cache) -> np.ndarray:
    """Gradient of the mean loss w.r.t. logits: (softmax - q) / N, float32 (N,K)."""
    if not (isinstance(cache, np.ndarray) and cache.dtype == np.float32 and cache.ndim == 2):
        raise TypeError("cache: expected the float32 (N,K) gradient cross_entropy returned, got "
                        f"{getattr(cache, 'dtype', type(cache).__name__)} "
                        f"{getattr(cache, 'shape', '')}".rstrip())
    return cache
