"""CrossEntropyLoss: softmax cross-entropy over logits, mean over the batch."""
from __future__ import annotations

import numpy as np

from .. import functional as F
from ..backend import is_device_array
from .module import Module

__all__ = ["CrossEntropyLoss"]


class CrossEntropyLoss(Module):
    """``loss = criterion(logits (N, K) float32, labels (N,) int64)`` -> the batch mean: a
    float, or for device arrays a 0-d DeviceArray that stays on the GPU (``float(loss)``
    waits for it), so a training step need not wait for the device before its backward.

    ``backward()`` returns dloss/dlogits (already divided by N); pass ``dloss`` to scale it
    (NumPy only).
    ``label_smoothing`` follows PyTorch: targets (1 - s) one-hot + s / K.
    ``check_labels=False`` skips the label range check (on the GPU it waits for the device;
    the training loop checks its batches on the host instead): bad labels then give NaN.
    """

    def __init__(self, label_smoothing: float = 0.0, check_labels: bool = True):
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = float(label_smoothing)
        self.check_labels = bool(check_labels)

    def extra_repr(self) -> str:
        return f"label_smoothing={self.label_smoothing}"

    def forward(self, logits: np.ndarray, labels: np.ndarray):
        loss, cache = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing,
                                      check_labels=self.check_labels)
        self._save(cache)
        return loss if is_device_array(loss) else float(loss)

    def backward(self, dloss: float = 1.0) -> np.ndarray:
        dlogits = F.cross_entropy_backward(self._saved())
        if dloss != 1.0:
            if is_device_array(dlogits):
                raise ValueError("dloss: scaling the gradient is only supported for NumPy logits")
            dlogits = dlogits * np.float32(dloss)
        self._consume()
        return dlogits
