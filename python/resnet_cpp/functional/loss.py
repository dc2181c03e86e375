"""Softmax cross-entropy loss with optional label smoothing (PyTorch's CrossEntropyLoss,
reduction="mean").

Kernels: cpp/loss.cpp and cpp/cuda/loss.cu compute the loss and its gradient in one call;
the forward keeps the gradient in the cache, so the backward costs nothing.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..backend import kernels
from ._layout import check_cache

__all__ = ["CrossEntropyCache", "cross_entropy", "cross_entropy_backward"]


class CrossEntropyCache(NamedTuple):
    """What cross_entropy keeps: the gradient of the mean loss, computed with the loss."""

    dlogits: np.ndarray  # float32 (N, K)


def cross_entropy(logits: np.ndarray, labels: np.ndarray, *, label_smoothing: float = 0.0,
                  check_labels: bool = True, dlogits_out=None, loss_out=None):
    """Mean softmax cross-entropy over the batch.

    logits: float32 (N,K); labels: int32 or int64 (N,) with values in [0,K);
    label_smoothing in [0,1) mixes the one-hot target with the uniform distribution:
    q = (1 - label_smoothing) * onehot + label_smoothing / K.
    check_labels=False skips the label check (on the GPU it waits for the device): a row
    with a label outside [0,K) then gives NaN. dlogits_out/loss_out receive the results.
    Returns (loss, cache): loss is a float for NumPy logits and a 0-d float32 DeviceArray
    (still on the device; ``float(loss)`` reads it) for device logits.
    cross_entropy_backward(cache) gives dlogits.
    """
    try:
        ls = float(label_smoothing)
    except (TypeError, ValueError):
        raise TypeError(f"label_smoothing: expected a number, got {label_smoothing!r}") from None
    K = kernels("cross_entropy", logits=logits, labels=labels, dlogits_out=dlogits_out,
                loss_out=loss_out)
    loss, dlogits = K.softmax_cross_entropy(logits, labels, ls, dlogits_out, loss_out,
                                            bool(check_labels))
    return loss, CrossEntropyCache(dlogits)


def cross_entropy_backward(cache: CrossEntropyCache):
    """Gradient of the mean loss w.r.t. logits: (softmax - q) / N, float32 (N,K), on the
    logits' device."""
    return check_cache(cache, CrossEntropyCache, "cross_entropy").dlogits
