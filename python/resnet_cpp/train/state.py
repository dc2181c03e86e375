"""Where a training run is, kept apart from its settings: :class:`RunState`.

A checkpoint stores it (:meth:`RunState.state_dict`: the ``position``, ``epoch_sums`` and
``best_accuracy`` entries of its metadata), and a resumed or data-parallel run restores it
(:meth:`RunState.load_state_dict`). Nothing else is needed to continue bit for bit: the
data order and augmentation are a function of (seed, epoch, batch) (``rc.data.DataLoader``),
and the seed is a setting.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

__all__ = ["EpochSums", "RunState"]


@dataclass
class EpochSums:
    """Running sums over the steps of the current epoch so far."""

    loss: float = 0.0  # sum of the per-image losses (a batch adds mean loss x images)
    correct: int = 0  # images classified right
    seen: int = 0  # images
    time: float = 0.0  # seconds spent in steps


@dataclass
class RunState:
    """The next step to run is batch ``batch`` (0-based) of epoch ``epoch``, after
    ``global_step`` steps in all; ``sums`` are the current epoch's so far, and
    ``best_accuracy`` is the best test accuracy of a finished epoch (-1: none yet)."""

    epoch: int = 0
    batch: int = 0
    global_step: int = 0
    sums: EpochSums = field(default_factory=EpochSums)
    best_accuracy: float = -1.0

    def add_step(self, loss: float, correct: int, images: int, seconds: float) -> None:
        """Count one finished step: its mean loss, correct predictions and images."""
        s = self.sums
        s.loss += loss * images
        s.correct += correct
        s.seen += images
        s.time += seconds
        self.batch += 1
        self.global_step += 1

    def next_epoch(self) -> None:
        self.epoch += 1
        self.batch = 0
        self.sums = EpochSums()

    def summary(self) -> dict:
        """The epoch so far: mean loss, accuracy, throughput and time in steps."""
        s = self.sums
        return {"train_loss": s.loss / max(s.seen, 1), "train_acc": s.correct / max(s.seen, 1),
                "images_per_s": s.seen / max(s.time, 1e-9), "epoch_time_s": s.time}

    def state_dict(self) -> dict:
        return {"position": {"epoch": self.epoch, "batch": self.batch,
                             "global_step": self.global_step},
                "epoch_sums": dataclasses.asdict(self.sums),
                "best_accuracy": self.best_accuracy}

    def load_state_dict(self, state: dict) -> None:
        """Restore from :meth:`state_dict` (extra keys are ignored); KeyError, TypeError or
        ValueError if an entry is missing or malformed, leaving this state unchanged."""
        pos, sums = state["position"], state["epoch_sums"]
        new = RunState(int(pos["epoch"]), int(pos["batch"]), int(pos["global_step"]),
                       EpochSums(float(sums["loss"]), int(sums["correct"]), int(sums["seen"]),
                                 float(sums["time"])),
                       float(state.get("best_accuracy", -1.0)))
        if min(new.epoch, new.batch, new.global_step, new.sums.seen) < 0:
            raise ValueError(f"negative position or count: {pos}, {sums}")
        for f in dataclasses.fields(self):
            setattr(self, f.name, getattr(new, f.name))
