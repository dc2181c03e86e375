"""The training loop: ``fit`` / ``Trainer``, and ``evaluate``.

One training step is ``logits = model(x)``, ``loss = CrossEntropyLoss(logits, y)``,
``model.zero_grad()``, ``model.backward(loss.backward())``, ``optimizer.step()``,
``schedule.step()``
(per-iteration schedules, see :mod:`resnet_cpp.optim`).

Determinism and resume: shuffling and augmentation are a function of (seed, epoch,
batch) (``rc.data.DataLoader``), the model is built by the caller with a seeded init,
and a checkpoint (``out_dir/last.npz``, written after every epoch) holds the weights, BN
statistics, optimizer buffers, schedule step, data position and the partial epoch's
running sums. Resuming from it replays exactly the same float operations as an
uninterrupted run, so with the same seed and thread count the final weights are
identical bit for bit.

Interrupts: Ctrl-C (SIGINT) or SIGTERM (what schedulers and ``docker stop`` send) during
a step is deferred to the end of that step (a half-applied optimizer update or a BN
statistic updated for a batch that will be replayed would break exact resume); then a
checkpoint of the mid-epoch position is saved and ``fit`` returns with
``history.interrupted = True`` and ``history.signal`` set. A KeyboardInterrupt raised
elsewhere (data loading, evaluation, a callback) is handled the same way. A second signal
ends the process at once (killed by that signal): the previous checkpoint is intact, and
the next start removes the temporary file of the save it cut short.

Divergence: a NaN or infinite loss (or non-finite weights at save time) raises
:class:`TrainingDiverged` before anything is saved, so the last good checkpoint stays.

Data-parallel (``distributed=True``, or automatically under ``mpirun -n N``): the hooks
live in :mod:`resnet_cpp.distributed`. ``batch_size`` is per rank; each step's global batch
of ``batch_size * N`` images is the one a single process with that batch size would draw,
the gradients are summed over ranks before the update, rank 0's state is broadcast at the
start (fresh or resumed), and only rank 0 writes files and prints. Checkpoints record the
global batch, so a run resumes on any number of ranks that divides it.

Devices: ``device="cuda"`` moves the model (and a given optimizer) to the GPU and runs each
step there (:mod:`resnet_cpp.train_cuda`: pinned host batches, asynchronous copies, one
host wait per step, the step captured in a CUDA graph unless ``cuda_graph=False``). The
weights are then checked for NaN/inf at each checkpoint rather than after every step (that
would wait for the device). Checkpoints are the same on both devices: a run saved on the
GPU resumes on the CPU and the reverse (equal up to float32 rounding, not bit for bit).
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from . import _precision
from . import backend
from . import checkpoint as ckpt
from . import distributed as dist
from . import optim

__all__ = ["TrainingDiverged", "EvalResult", "History", "Trainer", "fit", "evaluate"]


class TrainingDiverged(RuntimeError):
    """The loss (or a weight) became NaN or infinite; the last good checkpoint is kept."""


# --------------------------------------------------------------------------- progress


class _Bar:
    """tqdm when installed (a dependency of the package), else a plain line every 10 s."""

    def __init__(self, total: int, initial: int, desc: str, enabled: bool) -> None:
        self._tqdm = None
        self._desc, self._total, self._done = desc, total, initial
        self._last = time.perf_counter()
        self.enabled = enabled
        if not enabled:
            return
        try:
            from tqdm.auto import tqdm
        except ImportError:
            return
        self._tqdm = tqdm(total=total, initial=initial, desc=desc, unit="batch",
                          dynamic_ncols=True, leave=True)

    def update(self, postfix: dict) -> None:
        if self._tqdm is not None:
            self._tqdm.set_postfix(postfix, refresh=False)
            self._tqdm.update(1)
            return
        self._done += 1
        now = time.perf_counter()
        if self.enabled and now - self._last >= 10.0:  # no tqdm: a line every 10 s
            self._last = now
            items = ", ".join(f"{k}={v}" for k, v in postfix.items())
            print(f"{self._desc}: {self._done}/{self._total} batches, {items}", flush=True)

    def write(self, msg: str) -> None:
        if self._tqdm is not None:
            self._tqdm.write(msg)
        else:
            print(msg, flush=True)

    def close(self) -> None:
        if self._tqdm is not None:
            self._tqdm.close()
            self._tqdm = None


class _InterruptGuard:
    """Turns SIGINT and SIGTERM into a KeyboardInterrupt at a safe point (main thread only).

    The first signal is deferred while a step runs (``critical``) and raised when it ends;
    ``signum`` records it. A second one, while the first is pending or being handled (the
    checkpoint save included), kills the process at once with that signal.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.in_step = False
        self.pending = False
        self.signum: int | None = None
        self._old: dict = {}

    def _handler(self, signum, frame) -> None:
        if self.signum is not None:  # the second signal: no more waiting
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.signum = signum
        if self.in_step:
            self.pending = True
        else:
            raise KeyboardInterrupt

    def __enter__(self) -> "_InterruptGuard":
        if threading.current_thread() is threading.main_thread():
            self._old = {s: signal.signal(s, self._handler) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for s, old in self._old.items():
            signal.signal(s, old)
        self._old = {}

    @contextlib.contextmanager
    def critical(self):
        """A signal arriving inside the block is raised when the block has finished."""
        self.in_step = True
        try:
            yield
        finally:
            self.in_step = False
        if self.pending:
            self.pending = False
            raise KeyboardInterrupt


# --------------------------------------------------------------------------- evaluation


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


def _make_loader(data, batch_size: int, **kw):
    """A DataLoader over a Dataset (an ImageLoader over an ImageDataset); anything already
    iterable is used as is."""
    if hasattr(data, "make_loader"):
        return data.make_loader(batch_size, **kw)
    if hasattr(data, "images") and hasattr(data, "labels"):
        from .data import DataLoader

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
    from . import nn

    shard = {} if group is None else {"shard": (group.rank, group.size)}
    loader = _make_loader(data, batch_size, shuffle=False, augment=False, mean=mean,
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


# --------------------------------------------------------------------------- training


def _data_parallel_group(distributed: bool | None) -> dist.Group | None:
    """The group of ranks to train over: ``distributed`` True, or None and launched by
    mpirun with several ranks; else None (a single process never imports mpi4py)."""
    if distributed is None:
        distributed = dist.launched_by_mpi()
    return dist.init() if distributed else None


def _threads_now() -> int:
    import resnet_cpp

    return int(resnet_cpp.num_threads())


@dataclass
class History:
    """What ``fit`` returns: one record (dict) per epoch, and how the run ended."""

    records: list = field(default_factory=list)
    interrupted: bool = False
    signal: int | None = None  # SIGINT or SIGTERM when a signal interrupted the run
    stopped_at_max_steps: bool = False
    last_checkpoint: str | None = None
    best_checkpoint: str | None = None
    test: EvalResult | None = None

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i):
        return self.records[i]

    def __iter__(self):
        return iter(self.records)


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


class Trainer:
    """Train ``model`` on ``train_data`` (an ``rc.data.Dataset``); see :func:`fit`."""

    def __init__(self, model, train_data, test_data=None, *, epochs: int,
                 batch_size: int | None = None, recipe: str | None = None,
                 optimizer: str | optim.Optimizer | None = None, lr: float | None = None,
                 momentum: float | None = None, weight_decay: float | None = None,
                 nesterov: bool | None = None,
                 schedule: str | optim.Schedule | None = None, warmup_epochs: float = 0,
                 seed: int = 0, threads: int | None = None, precision: str | None = None,
                 out_dir: str | None = None,
                 resume: bool | str = False, augment: bool = True,
                 label_smoothing: float = 0.0, progress: bool = True, verbose: bool = True,
                 max_steps: int | None = None, normalize: bool = True, mean=None, std=None,
                 model_config: dict | None = None, eval_batch_size: int = 256,
                 save_best: bool = True, config: dict | None = None,
                 init_from=None, new_head: bool = False, freeze_trunk: bool = False,
                 trunk_lr: float | None = None, freeze_bn: bool = False,
                 distributed: bool | None = None, sync_bn: bool = False,
                 device: str = "cpu", cuda_graph: bool = True,
                 on_step: Callable[["Trainer"], None] | None = None,
                 on_epoch: Callable[["Trainer", dict], None] | None = None) -> None:
        if epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {epochs}")
        if max_steps is not None and max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        if warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be >= 0, got {warmup_epochs}")
        if threads is not None:
            from . import _core

            if not 1 <= threads <= _core.max_num_threads():
                raise ValueError(f"threads must be in [1, {_core.max_num_threads()}] (4 per "
                                 f"logical CPU), got {threads}")
        if precision is not None and precision not in _precision.PRECISIONS:
            raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
        self.device = backend.parse_device(device)
        self.cuda_graph = bool(cuda_graph)
        if self.device == "cuda":
            backend.require_cuda()
        if getattr(model, "device", "cpu") != self.device:
            model.to(self.device)
        self.recipe = optim.get_recipe(recipe or "he2015")
        self.batch_size = int(batch_size or self.recipe.batch_size)
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        self.model, self.train_data, self.test_data = model, train_data, test_data
        self.epochs, self.seed, self.threads = int(epochs), int(seed), threads
        self.precision = precision
        self.augment, self.label_smoothing = bool(augment), float(label_smoothing)
        self.progress, self.verbose, self.max_steps = progress, verbose, max_steps
        self.out_dir, self.resume = out_dir, resume
        self.eval_batch_size, self.save_best = eval_batch_size, save_best
        self.on_step, self.on_epoch = on_step, on_epoch
        self.model_config = model_config or getattr(model, "config", None)
        self.extra_config = dict(config or {})
        group = _data_parallel_group(distributed)
        self.dp = None
        self.world_size = 1 if group is None else group.size
        if group is not None:
            from .distributed.data_parallel import DataParallel

            if self.device != "cpu":
                raise ValueError("distributed: data-parallel training runs on the CPU only "
                                 f"(device={self.device!r})")
            self.dp = DataParallel(group, sync_bn)
            if threads is None:
                self.threads = dist.local_threads()
            if not self.dp.is_main:  # rank 0 alone writes files and prints
                self.out_dir, self.resume, self.progress, self.verbose = None, False, False, False

        from . import finetune

        init = finetune.prepare(model, init_from=init_from, new_head=new_head,
                                freeze_trunk=freeze_trunk, trunk_lr=trunk_lr,
                                freeze_bn=freeze_bn)
        self.finetune_config = {k: v for k, v in (
            ("init_from", init and init.path), ("new_head", new_head),
            ("freeze_trunk", freeze_trunk), ("trunk_lr", trunk_lr), ("freeze_bn", freeze_bn))
            if v}
        if mean is None and normalize:
            if init is not None and init.meta.get("normalization"):  # the pretrained model's
                mean, std = init.meta["normalization"]["mean"], init.meta["normalization"]["std"]
            elif hasattr(train_data, "channel_stats"):  # an ImageDataset's own
                mean, std = train_data.channel_stats()
            elif hasattr(train_data, "images"):
                from .data import channel_stats

                mean, std = channel_stats(train_data)
        self.mean = None if mean is None else np.asarray(mean, np.float32)
        self.std = None if std is None else np.asarray(std, np.float32)

        shard = {} if self.dp is None else {"shard": (self.dp.rank, self.dp.size)}
        self.loader = _make_loader(train_data, self.batch_size * self.world_size, shuffle=True,
                                   augment=self.augment, mean=self.mean, std=self.std,
                                   seed=self.seed, drop_last=False, **shard)
        self.steps_per_epoch = len(self.loader)
        if self.steps_per_epoch < 1:
            raise ValueError("the training data gives no batch")
        if self.dp is not None:
            if not hasattr(self.loader, "shard"):
                raise TypeError("distributed training needs a resnet_cpp Dataset (each rank "
                                "draws its part of every batch), not an iterable of batches")
            last = self.loader.batch_len(self.steps_per_epoch - 1)
            if last < self.world_size:
                raise ValueError(f"the last batch of an epoch has {last} images, fewer than "
                                 f"the {self.world_size} ranks: change batch_size")
        self.total_steps = self.epochs * self.steps_per_epoch

        warmup_steps = int(round(warmup_epochs * self.steps_per_epoch))
        if isinstance(optimizer, optim.Optimizer):
            self.optimizer = optimizer.to(self.device)
            if lr is not None:
                optimizer.lr = float(lr)
            if not isinstance(schedule, optim.Schedule):
                schedule = optim.create_schedule(schedule or self.recipe.schedule, optimizer,
                                                 self.total_steps, warmup_steps=warmup_steps)
        else:
            kw = {k: v for k, v in (("momentum", momentum), ("weight_decay", weight_decay),
                                    ("nesterov", nesterov)) if v is not None}
            if isinstance(schedule, optim.Schedule):
                raise ValueError("a Schedule instance needs its Optimizer passed as optimizer=")
            self.optimizer, schedule = self.recipe.build(
                finetune.param_groups(model, trunk_lr), self.total_steps, lr=lr,
                optimizer=optimizer,
                schedule=schedule, warmup_steps=warmup_steps, **kw)
        if schedule.optimizer is not self.optimizer:
            raise ValueError("the schedule drives a different optimizer than optimizer=")
        self.schedule = schedule
        if self.dp is not None:
            self.dp.attach(self.optimizer)
        from . import nn

        # On the device the labels are checked on the host (_check_labels) instead of by
        # the loss, which would wait for the device.
        self.criterion = nn.CrossEntropyLoss(label_smoothing=self.label_smoothing,
                                             check_labels=self.device == "cpu")

        # Position: the next step to run is batch `batch` of epoch `epoch`.
        self.epoch = 0
        self.batch = 0
        self.global_step = 0
        self._sums = {"loss": 0.0, "correct": 0, "seen": 0, "time": 0.0}
        self.history = History()
        self.best_accuracy = -1.0
        self._param_names = {id(p): n for n, p in getattr(model, "named_parameters",
                                                           lambda: [])()}
        self._device_step = None  # the CudaTrainStep while fit() runs on the device

    # ----------------------------------------------------------------- bookkeeping

    def _log(self, msg: str, bar: _Bar | None = None) -> None:
        if not self.verbose:
            return
        if bar is not None:
            bar.write(msg)
        else:
            print(msg, flush=True)

    def _path(self, name: str) -> str | None:
        return None if self.out_dir is None else os.path.join(self.out_dir, name)

    def config(self) -> dict:
        """The run's settings as stored in checkpoints."""
        return _json_safe({
            "epochs": self.epochs, "batch_size": self.batch_size,
            "recipe": self.recipe.name, "optimizer": self.optimizer.name,
            "schedule": self.schedule.state_dict()["name"], "seed": self.seed,
            "threads": self.threads, "precision": self.precision, "augment": self.augment,
            "device": self.device,
            "label_smoothing": self.label_smoothing, "steps_per_epoch": self.steps_per_epoch,
            "world_size": self.world_size, "sync_bn": self.dp is not None and self.dp.sync_bn,
            **self.finetune_config, **self.extra_config})

    def _meta(self) -> dict:
        from . import __version__

        data = self.train_data
        opt_state = self.optimizer.state_dict()
        opt_state.pop("arrays")
        return _json_safe({
            "library_version": __version__,
            "model": self.model_config,
            "normalization": None if self.mean is None else
            {"mean": self.mean.tolist(), "std": self.std.tolist()},
            "data": {"name": getattr(data, "name", None),
                     "classes": list(getattr(data, "classes", []) or []),
                     "image_shape": [int(v) for v in data.shape]
                     if hasattr(data, "shape") else None,
                     "preprocess": data.preprocess.to_dict()
                     if hasattr(data, "preprocess") else None},
            "optimizer": opt_state,
            "schedule": self.schedule.state_dict(),
            "position": {"epoch": self.epoch, "batch": self.batch,
                         "global_step": self.global_step, "seed": self.seed,
                         "steps_per_epoch": self.steps_per_epoch,
                         "batch_size": self.batch_size * self.world_size,  # global
                         "world_size": self.world_size, "threads": _threads_now()},
            "epoch_sums": self._sums,
            "history": [r for r in self.history.records if not r.get("partial")],
            "best_accuracy": self.best_accuracy,
            "metrics": self.history.records[-1] if self.history.records else None,
            "config": self.config(),
        })

    def _diverged(self, what: str, step: int) -> TrainingDiverged:
        """The error for a NaN/inf found in optimizer step ``step`` (1-based, global)."""
        last = self._path("last.npz")
        kept = ""
        if last is not None:
            kept = (f"the last good checkpoint {last} was kept. " if os.path.isfile(last)
                    else "no checkpoint was written. ")
        epoch, batch = divmod(step - 1, self.steps_per_epoch)
        return TrainingDiverged(
            f"training diverged: {what} at epoch {epoch + 1}, batch {batch + 1} "
            f"(step {step}); {kept}Try a lower learning rate (--lr).")

    def _check_finite_weights(self, step: int) -> None:
        """Raise TrainingDiverged if a parameter is NaN/inf after step ``step`` (a fused
        ReLU can hide NaNs from the loss, so the weights are checked after every update)."""
        for p in self.optimizer.params:
            data = backend.to_host(p.data) if backend.is_device_array(p.data) else p.data
            if not np.isfinite(data).all():
                name = self._param_names.get(id(p), "a parameter")
                raise self._diverged(f"{name} became NaN/inf", step)

    def save(self, path: str) -> str:
        """Write a checkpoint of the current state (refuses non-finite weights)."""
        # The weights saved are those after the last step run (global_step).
        self._check_finite_weights(self.global_step)
        state = self.model.state_dict()
        for k, a in state.items():
            if a.dtype.kind == "f" and not np.isfinite(a).all():
                raise self._diverged(f"{k} became NaN/inf", self.global_step)
        groups = {"model": state, "optimizer": self.optimizer.state_dict()["arrays"]}
        return ckpt.save(path, groups, self._meta())

    def load(self, path: str) -> None:
        """Restore the full training state from a checkpoint written by :meth:`save`."""
        c = ckpt.load(path)
        pos = c.meta.get("position", {})
        for key, own in (("batch_size", self.batch_size * self.world_size), ("seed", self.seed),
                         ("steps_per_epoch", self.steps_per_epoch)):
            if key in pos and pos[key] != own:
                raise ckpt.CheckpointError(
                    f"{path}: checkpoint has {key}={pos[key]}, this run has {own}; "
                    "resume with the same data, global batch size (batch size x ranks) "
                    "and seed")
        opt_state = c.optimizer_state()
        for key in ("position", "schedule", "epoch_sums"):
            if key not in c.meta:
                raise ckpt.CheckpointError(f"{path}: not a training checkpoint (no {key})")
        if opt_state is None:
            raise ckpt.CheckpointError(f"{path}: checkpoint has no optimizer state")
        if c.meta["schedule"].get("name") != self.schedule.state_dict()["name"]:
            raise ckpt.CheckpointError(
                f"{path}: checkpoint used schedule {c.meta['schedule'].get('name')!r}, "
                f"this run {self.schedule.state_dict()['name']!r}")
        mean, std = c.normalization()
        if mean is not None and self.mean is not None and (
                not np.array_equal(mean, self.mean) or not np.array_equal(std, self.std)):
            raise ckpt.CheckpointError(f"{path}: the checkpoint normalized with other "
                                       "mean/std; resume with the same training data")
        ckpt.check_model_state(self.model, c.model_state, where=path)
        try:
            self.optimizer.check_state_dict(opt_state)
        except (KeyError, ValueError) as e:
            raise ckpt.CheckpointError(f"{path}: optimizer state does not fit: {e}") from e
        # Everything below only copies already-verified arrays.
        self.model.load_state_dict(dict(c.model_state))
        self.optimizer.load_state_dict(opt_state)
        self.schedule.load_state_dict(c.meta["schedule"])
        self.epoch, self.batch = int(pos["epoch"]), int(pos["batch"])
        self.global_step = int(pos["global_step"])
        self._sums = dict(c.meta["epoch_sums"])
        self.history.records = list(c.meta.get("history", []))
        self.best_accuracy = float(c.meta.get("best_accuracy", -1.0))
        if pos.get("threads") != _threads_now() and self.verbose:
            print(f"note: the checkpoint ran with {pos.get('threads')} threads, this run "
                  f"with {_threads_now()}: a resumed run equals an uninterrupted one bit for "
                  "bit only with the same thread count", flush=True)

    def _write_metrics_file(self) -> None:
        path = self._path("metrics.jsonl")
        if path is None:
            return
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            for r in self.history.records:
                if not r.get("partial"):
                    f.write(json.dumps(r) + "\n")
        os.replace(tmp, path)

    def _append_metrics(self, record: dict) -> None:
        path = self._path("metrics.jsonl")
        if path is not None:
            with open(path, "a") as f:
                f.write(json.dumps(record) + "\n")

    # ----------------------------------------------------------------- the loop

    def _resume_path(self) -> str | None:
        if not self.resume:
            return None
        if isinstance(self.resume, (str, os.PathLike)):
            p = os.fspath(self.resume)
            p = os.path.join(p, "last.npz") if os.path.isdir(p) else p
            if not os.path.isfile(p):
                raise ckpt.CheckpointError(f"no checkpoint to resume from at {p!r}")
            return p
        p = self._path("last.npz")
        return p if p is not None and os.path.isfile(p) else None

    def fit(self) -> History:
        """Run (or continue) training; returns the :class:`History`."""
        if self.dp is None:
            return self._fit()
        with self.dp.group.fail_together(collective=(TrainingDiverged,)):
            return self._fit()

    def _fit(self) -> History:
        import resnet_cpp

        old_threads, old_precision = resnet_cpp.num_threads(), resnet_cpp.precision()
        if self.threads is not None:
            resnet_cpp.set_num_threads(int(self.threads))
        if self.precision is not None:
            resnet_cpp.set_precision(self.precision)
        try:
            if self.out_dir is not None:
                os.makedirs(self.out_dir, exist_ok=True)
                for p in ckpt.remove_stale_temps(self.out_dir):
                    self._log(f"removed {p}, left by a save that was cut short")
            path = self._resume_path()
            if path is not None:
                self.load(path)
                self._write_metrics_file()
                self._log(f"resumed from {path} at epoch {self.epoch + 1}, batch "
                          f"{self.batch} (step {self.global_step})")
            elif self.out_dir is not None:
                if self.resume:
                    self._log(f"no checkpoint in {self.out_dir}; starting from scratch")
                self._write_metrics_file()
            training = contextlib.nullcontext()
            if self.dp is not None:
                training = self.dp.start(self)  # every rank gets rank 0's state
            with training, _InterruptGuard() as guard, self._device_session():
                self._run(guard)
        finally:
            resnet_cpp.set_num_threads(old_threads)
            _precision._set(old_precision)
        return self.history

    def _run(self, guard: _InterruptGuard) -> None:
        while self.epoch < self.epochs:
            try:
                stop = self._train_epoch(guard)
                if stop:
                    self.history.stopped_at_max_steps = True
                    self._end_epoch(guard, partial=True)
                    return
                self._end_epoch(guard, partial=False)
            except KeyboardInterrupt:
                if self.dp is not None:
                    raise  # other ranks may be mid-step: stop them all (fail_together)
                self.history.interrupted = True
                self.history.signal = guard.signum or signal.SIGINT
                msg = "\ninterrupted" if self.history.signal == signal.SIGINT else "\nterminated"
                if self.out_dir is not None:
                    path = self.save(self._path("last.npz"))
                    self.history.last_checkpoint = path
                    msg += (f": saved {path} at epoch {self.epoch + 1}, batch {self.batch} "
                            f"(step {self.global_step}); continue with "
                            f"`resnet-cpp train --resume {self.out_dir}`")
                self._log(msg)
                return

    def _cpu_step(self, x, y) -> tuple[float, int, int]:
        """One step on the CPU: (loss, correct, images) of the whole batch (over all ranks
        when data-parallel)."""
        model, crit = self.model, self.criterion
        model.zero_grad()  # backward adds into .grad
        logits = model(x)
        loss = float(crit(logits, y))
        n = len(y)
        correct = int(np.count_nonzero(np.argmax(logits, axis=1) == y))
        if self.dp is not None:  # the whole batch's, over all ranks
            n_batch = self.loader.batch_len(self.batch)
            loss, correct = self.dp.backward(model, crit, loss, correct, n, n_batch)
            n = n_batch
        if not math.isfinite(loss):
            raise self._diverged(f"loss is {loss}", self.global_step + 1)
        if self.dp is None:
            model.backward(crit.backward(), need_dx=False)
        self.optimizer.step()
        self._check_finite_weights(self.global_step + 1)
        return loss, correct, n

    def _check_labels(self, y: np.ndarray) -> None:
        k = getattr(self.model, "num_classes", None)
        if k is not None and len(y) and (y.min() < 0 or y.max() >= k):
            bad = int(np.flatnonzero((y < 0) | (y >= k))[0])
            raise ValueError(f"labels: labels[{bad}] = {int(y[bad])} is outside [0, K) = [0, {k})")

    def _device_session(self):
        """For device="cuda", the CudaTrainStep that runs every step of this fit (its CUDA
        graphs are captured once and replayed across epochs); else a no-op context."""
        if self.device != "cuda":
            return contextlib.nullcontext()
        from .train_cuda import CudaTrainStep

        self._device_step = CudaTrainStep(self.model, self.criterion, self.optimizer,
                                          self.cuda_graph)
        return self._device_step

    def _train_epoch(self, guard: _InterruptGuard) -> bool:
        """Run the rest of the current epoch; True if max_steps was reached."""
        model, opt, sched = self.model, self.optimizer, self.schedule
        device_step = self._device_step
        model.train()
        if hasattr(self.loader, "set_epoch"):
            self.loader.set_epoch(self.epoch)
        if self.batch >= self.steps_per_epoch:
            return False
        it = self.loader.iter_from(self.batch) if self.batch else iter(self.loader)
        if device_step is not None:
            from .train_cuda import PinnedBatches

            it = PinnedBatches(it, check_labels=self._check_labels)
        bar = _Bar(self.steps_per_epoch, self.batch, f"epoch {self.epoch + 1}/{self.epochs}",
                   self.progress)
        s = self._sums
        try:
            t0 = time.perf_counter()
            for item in it:
                with guard.critical():
                    lr = opt.lr
                    if device_step is None:
                        x, y = item
                        loss, correct, n = self._cpu_step(x, y)
                    else:
                        slot, x, y = item
                        loss, logits = device_step.step(x, y)
                        if not math.isfinite(loss):
                            raise self._diverged(f"loss is {loss}", self.global_step + 1)
                        n = len(y)
                        correct = int(np.count_nonzero(np.argmax(logits, axis=1) == y))
                    sched.step()
                    s["loss"] += loss * n
                    s["correct"] += correct
                    s["seen"] += n
                    if device_step is not None:
                        it.release(slot)  # y was read from it
                    self.batch += 1
                    self.global_step += 1
                    t1 = time.perf_counter()
                    s["time"] += t1 - t0
                    t0 = t1
                bar.update({"loss": f"{s['loss'] / s['seen']:.4f}",
                            "acc": f"{s['correct'] / s['seen']:.3f}", "lr": f"{lr:.3g}",
                            "img/s": f"{s['seen'] / max(s['time'], 1e-9):.0f}"})
                if self.on_step is not None:
                    self.on_step(self)
                if self.max_steps is not None and self.global_step >= self.max_steps:
                    return True
        finally:
            bar.close()
            close = getattr(it, "close", None)
            if close is not None:
                close()
        return False

    def _end_epoch(self, guard: _InterruptGuard, partial: bool) -> None:
        s = self._sums
        record = {"epoch": self.epoch + 1, "step": self.global_step,
                  "train_loss": s["loss"] / max(s["seen"], 1),
                  "train_acc": s["correct"] / max(s["seen"], 1),
                  "lr": self.schedule.lr_at(max(self.global_step - 1, 0)),  # last step's
                  "images_per_s": s["seen"] / max(s["time"], 1e-9),
                  "epoch_time_s": s["time"]}
        line = (f"epoch {self.epoch + 1}/{self.epochs}: train loss {record['train_loss']:.4f} "
                f"acc {100 * record['train_acc']:.2f}%")
        if partial:
            record["partial"] = True
            line = f"stopped at max_steps={self.max_steps}: " + line
        if self.dp is not None:  # equal BN statistics on every rank before eval and save
            bad = self.dp.sync_bn_stats(self.model)
            if bad is not None:
                raise self._diverged(f"{bad} became NaN/inf", self.global_step)
        if self.test_data is not None:
            res = evaluate(self.model, self.test_data, batch_size=self.eval_batch_size,
                           mean=self.mean, std=self.std,
                           group=None if self.dp is None else self.dp.group)
            self.history.test = res
            record["test_loss"], record["test_acc"] = res.loss, res.accuracy
            line += f" | test loss {res.loss:.4f} acc {100 * res.accuracy:.2f}%"
        line += f" | {record['images_per_s']:.0f} img/s"
        # Recording the epoch, advancing the position and saving go together (Ctrl-C waits).
        with guard.critical():
            self.history.records.append(record)
            if not partial:
                self.epoch += 1
                self.batch = 0
                self._sums = {"loss": 0.0, "correct": 0, "seen": 0, "time": 0.0}
            if self.out_dir is not None:
                improved = (not partial and "test_acc" in record
                            and record["test_acc"] > self.best_accuracy)
                if improved:
                    self.best_accuracy = record["test_acc"]
                self.history.last_checkpoint = self.save(self._path("last.npz"))
                if improved and self.save_best:
                    self.history.best_checkpoint = self.save(self._path("best.npz"))
                self._append_metrics(record)
        self._log(line)
        if self.on_epoch is not None:
            self.on_epoch(self, record)


def fit(model, train_data, test_data=None, **kwargs) -> History:
    """Train ``model`` and return its :class:`History`. Keyword arguments:

    epochs (required), batch_size, recipe ("he2015" default, or "keras"), optimizer
    ("sgd"|"adam"|"adamw" or an Optimizer), lr, momentum, weight_decay, nesterov,
    schedule ("multistep"|"cosine"|"onecycle"|"constant"|"keras" or a Schedule),
    warmup_epochs, seed, threads, out_dir (checkpoints last.npz/best.npz and
    metrics.jsonl), resume (True: continue from out_dir/last.npz; or a path), augment,
    label_smoothing, progress, verbose, max_steps, normalize/mean/std (default: the
    init_from checkpoint's, an ImageDataset's own, else the training data's statistics),
    model_config ({"name", "version", "kwargs"} stored for rebuilding), on_step, on_epoch.
    Fine-tuning (:mod:`resnet_cpp.finetune`): init_from (weights file), new_head,
    freeze_trunk, trunk_lr, freeze_bn. Data-parallel (:mod:`resnet_cpp.distributed`):
    distributed (None: when launched by mpirun with several ranks), sync_bn; batch_size is
    then per rank.

    precision: "fp32" or "bf16" convolutions for this run (restored afterwards); None
    keeps the process setting (see resnet_cpp.set_precision). device: "cpu" (default) or
    "cuda" (:mod:`resnet_cpp.train_cuda`); cuda_graph: capture the device step in a CUDA graph.
    """
    group = _data_parallel_group(kwargs.get("distributed"))
    # A rank failing while building the Trainer must stop the others too.
    with contextlib.nullcontext() if group is None else \
            group.fail_together(collective=(TrainingDiverged,)):
        return Trainer(model, train_data, test_data, **kwargs).fit()
