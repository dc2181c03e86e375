"""Evaluation: :func:`evaluate` a model on a dataset, giving an :class:`EvalResult`."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import backend
from .. import distributed as dist

__all__ = ["EvalResult", "evaluate", "make_loader"]


@dataclass
class EvalResult:
    """Loss, accuracy, per-class accuracy and confusion matrix (rows: true class)."""

    loss: float
    accuracy: float
    per_class_accuracy: np.ndarray
    confusion: np.ndarray
    n: int
    classes: list = field(default_factory=list)

    def format(self) -> str:
        """Human-readable report: totals, per-class accuracy, confusion matrix."""
        k = self.confusion.shape[0]
        names = [str(c) for c in self.classes] if len(self.classes) == k \
            else [str(i) for i in range(k)]
        lines = [f"test images: {self.n}   loss: {self.loss:.4f}   "
                 f"accuracy: {100 * self.accuracy:.2f}%", "", "per-class accuracy:"]
        width = max(len(s) for s in names)
        for name, acc, count in zip(names, self.per_class_accuracy, self.confusion.sum(1)):
            acc_s = "   n/a" if count == 0 else f"{100 * acc:6.2f}%"
            lines.append(f"  {name:>{width}}: {acc_s}  ({int(count)} images)")
        cw = max(5, len(str(int(self.confusion.max(initial=0)))) + 1)
        lines += ["", "confusion matrix (rows: true class, columns: predicted):",
                  " " * (width + 2) + "".join(f"{i:>{cw}}" for i in range(k))]
        for i, row in enumerate(self.confusion):
            lines.append(f"  {names[i]:>{width}}" + "".join(f"{int(v):>{cw}}" for v in row)
                         + f"   [{i}]")
        return "\n".join(lines)


def make_loader(data, batch_size: int, **kw):
    """A DataLoader over a Dataset (an ImageLoader over an ImageDataset); anything already
    iterable is used as is."""
    if hasattr(data, "make_loader"):
        return data.make_loader(batch_size, **kw)
    if hasattr(data, "images") and hasattr(data, "labels"):
        from ..data import DataLoader

        return DataLoader(data, batch_size, **kw)
    return data


def evaluate(model, data, *, batch_size: int = 256, mean=None, std=None,
             label_smoothing: float = 0.0, num_classes: int | None = None,
             classes: list | None = None, group: dist.Group | None = None) -> EvalResult:
    """Evaluate ``model`` (in eval mode) on a Dataset or an iterable of ``(x, y)`` batches.

    ``mean``/``std`` normalize a Dataset's images (as in training). ``group``
    (``resnet_cpp.distributed``): each rank evaluates its part of every batch of a
    Dataset and the counts are summed, so every rank returns the whole set's result.
    Returns an :class:`EvalResult`; the model's train/eval mode is restored afterwards.
    """
    from .. import nn

    shard = {} if group is None else {"shard": (group.rank, group.size)}
    loader = make_loader(data, batch_size, shuffle=False, augment=False, mean=mean,
                          std=std, drop_last=False, **shard)
    if not hasattr(loader, "shard"):
        group = None  # plain batches: every rank evaluates them all
    if classes is None:
        classes = list(getattr(data, "classes", []) or [])
    k = num_classes or (len(classes) if classes else None)
    conf = None
    if group is not None:  # a rank may see no image, yet all must sum equal-sized counts
        k = k or model.num_classes
        conf = np.zeros((k, k), dtype=np.int64)
    crit = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    was_training = getattr(model, "training", False)
    on_device = getattr(model, "device", "cpu") == "cuda"
    model.eval()
    loss_sum, n = 0.0, 0
    it = iter(loader)
    try:
        for x, y in it:
            if len(y) == 0:  # this rank's part of a batch smaller than the group
                continue
            logits = model(backend.to_device(x, "cuda")) if on_device else model(x)
            if on_device:  # forward on the device; the (N, K) logits come back for the metrics
                logits = backend.to_host(logits)
            if k is None:
                k = logits.shape[1]
            if conf is None:
                conf = np.zeros((k, k), dtype=np.int64)
            y = np.asarray(y, dtype=np.int64)
            loss_sum += float(crit(logits, y)) * len(y)
            pred = np.argmax(logits, axis=1)
            np.add.at(conf, (y, pred), 1)
            n += len(y)
    finally:
        model.train(was_training)
        close = getattr(it, "close", None)  # stop a prefetch thread on early exit
        if close is not None:
            close()
    if group is not None:
        sums = np.concatenate([[loss_sum, n], conf.ravel()]).astype(np.float64)
        group.allreduce(sums)  # float64 counts stay exact below 2**53
        loss_sum, n = float(sums[0]), int(sums[1])
        conf = np.rint(sums[2:]).astype(np.int64).reshape(k, k)
    if n == 0:
        raise ValueError("evaluate() got no data")
    totals = conf.sum(axis=1)
    per_class = np.divide(np.diag(conf), totals, out=np.zeros(k), where=totals > 0)
    return EvalResult(loss=loss_sum / n, accuracy=float(np.trace(conf)) / n,
                      per_class_accuracy=per_class, confusion=conf, n=n, classes=classes)
