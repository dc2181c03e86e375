"""The training loop's data-parallel hooks (``rc.train.Trainer`` calls these when
``distributed``); see the package docstring for the scheme.

Per step: forward and backward on this rank's part of the batch, with the loss gradient
scaled by the part's share of the batch (n_rank / n_batch), so that summing the ranks'
gradients gives the gradient of the whole batch's mean loss, even when the parts differ in
size by one image. The sum is one ``Allreduce`` over a flat float32 buffer that every
trained parameter's ``.grad`` is a view of, with the step's loss and correct count in two
extra slots. Without synchronized BN the ranks' BN running statistics drift apart; they are
averaged before each evaluation and checkpoint.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import time

import numpy as np

from . import Group, local_threads, sync_batch_norm

__all__ = ["DataParallel"]


class DataParallel:
    """One rank's share of a data-parallel run: ``group``, the flat gradient buffer, and
    the hooks the Trainer calls. ``allreduce_seconds`` accumulates the time spent in the
    gradient Allreduce (waiting for the slowest rank included)."""

    def __init__(self, group: Group, sync_bn: bool = False) -> None:
        self.group, self.sync_bn = group, bool(sync_bn)
        self.rank, self.size = group.rank, group.size
        self.is_main = self.rank == 0
        self.allreduce_seconds = 0.0
        self._flat = self._metrics = None

    # ------------------------------------------------------------------ setup

    def rank_config(self, config):
        """This rank's TrainConfig: unless ``threads`` is set, the cores of this machine
        divided among its ranks; on every rank but 0, no files and no output."""
        changes: dict = {}
        if config.threads is None:
            changes["threads"] = local_threads()
        if not self.is_main:
            changes.update(out_dir=None, resume=False, progress=False, verbose=False)
        return dataclasses.replace(config, **changes)

    def attach(self, optimizer) -> None:
        """Make every trained parameter's ``.grad`` a view of one flat buffer (optimizer
        order), followed by two float32 slots for the step's loss and correct count."""
        params = optimizer.params
        n = sum(p.size for p in params)
        self._flat = np.zeros(n + 2, np.float32)
        off = 0
        for p in params:
            view = self._flat[off:off + p.size].reshape(p.data.shape)
            view[...] = p.grad
            p.grad = view
            off += p.size
        self._metrics = self._flat[n:]

    @property
    def gradient_bytes(self) -> int:
        """Bytes each rank sends into the Allreduce every step."""
        return self._flat.nbytes

    def _broadcast_json(self, obj) -> object:
        data = json.dumps(obj).encode() if self.is_main else None
        return json.loads(self.group.broadcast_bytes(data).decode())

    def _broadcast_arrays(self, arrays: dict, what: str) -> dict:
        """Rank 0's ``arrays`` ({key: ndarray}) on every rank, after checking that every
        rank has the same keys, shapes and dtypes (same model and optimizer)."""
        spec = {k: [a.dtype.str, list(a.shape)] for k, a in arrays.items()}
        root = self._broadcast_json(spec)
        if root != spec:
            raise ValueError(f"rank {self.rank}'s {what} differs from rank 0's (keys, shapes "
                             "or dtypes): every rank must build the same model and optimizer")
        out = {}
        for k, a in arrays.items():
            buf = np.ascontiguousarray(a)
            self.group.broadcast(buf)
            out[k] = buf
        return out

    def broadcast_state(self, trainer) -> None:
        """Give every rank rank 0's parameters, BN statistics, optimizer and schedule state
        and data position (at the start of fit, after rank 0 resumed or not)."""
        model, opt = trainer.model, trainer.optimizer
        model.load_state_dict(self._broadcast_arrays(model.state_dict(), "model"))
        state = opt.state_dict()
        arrays = self._broadcast_arrays(state.pop("arrays"), "optimizer state")
        state = self._broadcast_json(state)
        opt.load_state_dict({**state, "arrays": arrays})
        run = self._broadcast_json({
            "schedule": trainer.schedule.state_dict(),
            "state": trainer.state.state_dict(),
            "history": trainer.metrics.records})
        trainer.schedule.load_state_dict(run["schedule"])
        trainer.state.load_state_dict(run["state"])
        trainer.metrics.load(run["history"])

    def broadcast_normalization(self, mean, std) -> tuple:
        """Rank 0's channel mean and std (or None, None) on every rank: a resumed run's
        come from the checkpoint, which only rank 0 reads."""
        norm = None if mean is None else [np.asarray(mean, np.float32).tolist(),
                                          np.asarray(std, np.float32).tolist()]
        norm = self._broadcast_json(norm)
        return (None, None) if norm is None else (np.asarray(norm[0], np.float32),
                                                  np.asarray(norm[1], np.float32))

    def start(self, trainer):
        """Broadcast rank 0's state, log the batch sizes; returns the context to train in
        (synchronized BN when asked for)."""
        self.broadcast_state(trainer)
        trainer._log(f"data-parallel over {self.size} ranks: batch {trainer.batch_size} per "
                     f"rank, global batch {trainer.batch_size * self.size}"
                     f"{', synchronized BN' if self.sync_bn else ''}")
        if self.sync_bn:
            return sync_batch_norm(trainer.model, self.group)
        return contextlib.nullcontext()

    # ------------------------------------------------------------------ per step

    def backward(self, model, criterion, loss: float, correct: int, n: int,
                 n_batch: int) -> tuple[float, int]:
        """Backward of this rank's ``n`` images of an ``n_batch``-image batch, then the
        Allreduce. Returns the whole batch's mean loss and correct count (NaN on every rank
        if any rank's loss is not finite)."""
        share = n / n_batch
        model.backward(criterion.backward(share), need_dx=False)
        self._metrics[0], self._metrics[1] = loss * share, correct
        t0 = time.perf_counter()
        self.group.allreduce(self._flat)
        self.allreduce_seconds += time.perf_counter() - t0
        return float(self._metrics[0]), int(round(float(self._metrics[1])))

    # ------------------------------------------------------------------ per epoch

    def sync_bn_stats(self, model) -> str | None:
        """Average the BN running statistics over the ranks (not needed with synchronized
        BN, whose statistics are equal everywhere); returns the name of a buffer that is
        not finite (the same on every rank), or None."""
        bufs = [(k, b) for k, b in model.named_buffers() if b.dtype == np.float32]
        if not bufs:
            return None
        if not self.sync_bn:
            flat = np.concatenate([b.ravel() for _, b in bufs]).astype(np.float64)
            self.group.allreduce(flat)
            flat /= self.size
            off = 0
            for _, b in bufs:
                b[...] = flat[off:off + b.size].reshape(b.shape)
                off += b.size
        for k, b in bufs:
            if not np.isfinite(b).all():
                return k
        return None
