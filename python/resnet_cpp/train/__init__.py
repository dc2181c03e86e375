"""Training: ``rc.train.fit(model, train, test, epochs=3, lr=0.1)``.

What lives where:

- :mod:`.trainer`: :func:`fit` and :class:`Trainer`, the loop itself (fit -> per epoch ->
  per step: the CPU step, the device step, the data-parallel hooks), checkpoints and
  resume; :class:`TrainingDiverged`.
- :mod:`.config`: :class:`TrainConfig`, every setting once: fit's keywords, the options of
  ``resnet-cpp train``, what a checkpoint stores and a resume checks.
- :mod:`.state`: :class:`RunState`, where a run is (position, the epoch's running sums,
  best accuracy).
- :mod:`.metrics`: :class:`MetricsLog` (per-epoch records and ``metrics.jsonl``) and
  :class:`History`, what fit returns.
- :mod:`.evaluation`: :func:`evaluate` and :class:`EvalResult`.
- :mod:`.progress`: per-step progress (a bar on a terminal, a line a minute at most in a
  pipe or log file).
- :mod:`.interrupts`: SIGINT/SIGTERM deferred to the end of a step.
- :mod:`.device_step`: the step on the GPU (pinned batches, one wait, a CUDA graph).

The data-parallel hooks are :mod:`resnet_cpp.distributed.data_parallel`.
"""
from __future__ import annotations

from .config import TrainConfig
from .evaluation import EvalResult, evaluate
from .metrics import History, MetricsLog
from .state import RunState
from .trainer import Trainer, TrainingDiverged, fit

__all__ = ["EvalResult", "History", "MetricsLog", "RunState", "TrainConfig", "Trainer",
           "TrainingDiverged", "evaluate", "fit"]
