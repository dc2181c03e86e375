"""CrossEntropyLoss: softmax cross-entropy over logits, mean over the batch."""
from __future__ import annotations

import numpy as np

from .. import functional as F
from .module import Module

__all__ = ["CrossEntropyLoss"]


class CrossEntropyLoss(Module):
    """``loss = criterion(logits (N, K) float32, labels (N,) int64)`` -> float (batch mean).

    ``backward()`` returns dloss/dlogits (already divided by N); pass ``dloss`` to scale it.
    ``label_smoothing`` follows PyTorch: targets (1 - s) one-hot + s / K.
    """

    def __init__(self, label_smoothing: float = 0.0):
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = float(label_smoothing)
        self._cache = None

    def extra_repr(self) -> str:
        return f"label_smoothing={self.label_smoothing}"

    def forward(self, logits: np.ndarray, labels: np.ndarray) -> float:
        loss, self._cache = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
        return float(loss)

    def backward(self, dloss: float = 1.0) -> np.ndarray:
        if self._cache is None:
            raise RuntimeError("CrossEntropyLoss.backward called before forward")
        dlogits = F.cross_entropy_backward(self._cache)
        if dloss != 1.0:
            dlogits = dlogits * np.float32(dloss)
        return dlogits
