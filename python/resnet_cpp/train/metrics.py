"""What a run records per epoch: :class:`MetricsLog` (the records and ``metrics.jsonl``)
and :class:`History` (what ``fit`` returns)."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from .evaluation import EvalResult

__all__ = ["History", "MetricsLog"]


class MetricsLog:
    """The run's per-epoch records (dicts) and their file, one JSON object per line.

    A record is kept in memory first (:meth:`add`: the checkpoint saved next stores the
    complete ones) and appended to the file by :meth:`flush` once that checkpoint is
    written, so the file never runs ahead of the checkpoint. A resumed run takes the
    checkpoint's records (:meth:`load`), and :meth:`rewrite` replaces the file by them
    (dropping the lines of epochs the checkpoint has not seen). A record with
    ``"partial": True`` (an epoch cut by max_steps) is written but not kept across a resume.
    ``path`` None: memory only.
    """

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.records: list[dict] = []  # History.records is this list
        self._written = 0  # records[:_written] are in the file

    def load(self, records: list) -> None:
        self.records[:] = [dict(r) for r in records]
        self._written = len(self.records)

    def add(self, record: dict) -> None:
        self.records.append(record)

    def complete(self) -> list[dict]:
        """The records of whole epochs."""
        return [r for r in self.records if not r.get("partial")]

    def rewrite(self) -> None:
        """Replace the file by the complete records (through a temporary file)."""
        if self.path is not None:
            tmp = self.path + ".tmp"
            with open(tmp, "w") as f:
                f.writelines(json.dumps(r) + "\n" for r in self.complete())
            os.replace(tmp, self.path)
        self._written = len(self.records)

    def flush(self) -> None:
        """Append the records added since the last write."""
        if self.path is not None and self._written < len(self.records):
            with open(self.path, "a") as f:
                f.writelines(json.dumps(r) + "\n" for r in self.records[self._written:])
        self._written = len(self.records)


@dataclass
class History:
    """What ``fit`` returns: one record (dict) per epoch, and how the run ended."""

    records: list = field(default_factory=list)
    interrupted: bool = False
    signal: int | None = None  # SIGINT or SIGTERM when a signal interrupted the run
    stopped_at_max_steps: bool = False
    last_checkpoint: str | None = None
    best_checkpoint: str | None = None
    test: EvalResult | None = None  # the last evaluation

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i):
        return self.records[i]

    def __iter__(self):
        return iter(self.records)
