"""The training loop: :func:`fit` and :class:`Trainer` (fit -> per epoch -> per step).

One training step is ``logits = model(x)``, ``loss = CrossEntropyLoss(logits, y)``,
``model.zero_grad()``, ``model.backward(loss.backward())``, ``optimizer.step()``,
``schedule.step()`` (per-iteration schedules, see :mod:`resnet_cpp.optim`).

Determinism and resume: shuffling and augmentation are a function of (seed, epoch,
batch) (``rc.data.DataLoader``), the model is built by the caller with a seeded init,
and a checkpoint (``out_dir/last.npz``, written after every epoch) holds the weights, BN
statistics, optimizer buffers, schedule step, the settings a resumed run must keep
(:class:`TrainConfig`) and the :class:`RunState` (position, the partial epoch's running
sums). Resuming from it replays exactly the same float operations as an uninterrupted
run, so with the same seed and thread count the final weights are identical bit for bit.

Interrupts (:mod:`.interrupts`): Ctrl-C (SIGINT) or SIGTERM (what schedulers and
``docker stop`` send) during a step is deferred to the end of that step; then a
checkpoint of the mid-epoch position is saved and ``fit`` returns with
``history.interrupted = True`` and ``history.signal`` set. A KeyboardInterrupt raised
elsewhere (data loading, evaluation, a callback) is handled the same way. A second signal
ends the process at once (killed by that signal): the previous checkpoint is intact, and
the next start removes the temporary file of the save it cut short.

Divergence: a NaN or infinite loss (or non-finite weights at save time) raises
:class:`TrainingDiverged` before anything is saved, so the last good checkpoint stays.

Data-parallel (``distributed=True``, or automatically under ``mpirun -n N``): the hooks
live in :mod:`resnet_cpp.distributed.data_parallel`. ``batch_size`` is per rank; each
step's global batch of ``batch_size * N`` images is the one a single process with that
batch size would draw, the gradients are summed over ranks before the update, rank 0's
state is broadcast at the start (fresh or resumed), and only rank 0 writes files and
prints. Checkpoints record the global batch, so a run resumes on any number of ranks that
divides it.

Devices: ``device="cuda"`` moves the model (and a given optimizer) to the GPU and runs each
step there (:mod:`resnet_cpp.train.device_step`: pinned host batches, asynchronous copies, one
host wait per step, the step captured in a CUDA graph unless ``cuda_graph=False``). The
weights are then checked for NaN/inf at each checkpoint rather than after every step (that
would wait for the device). Checkpoints are the same on both devices: a run saved on the
GPU resumes on the CPU and the reverse (equal up to float32 rounding, not bit for bit).
"""
from __future__ import annotations

import contextlib
import math
import os
import signal
import time
from typing import Any, Callable

import numpy as np

from .. import _precision, backend, optim
from .. import checkpoint as ckpt
from .. import distributed as dist
from .config import TrainConfig
from .evaluation import evaluate, make_loader
from .interrupts import InterruptGuard
from .metrics import History, MetricsLog
from .progress import Progress
from .state import RunState

__all__ = ["Trainer", "TrainingDiverged", "fit"]

# fit's keywords that are not settings (TrainConfig's fields) but what the run is given.
_INPUTS = ("config", "mean", "std", "model_config", "extra_config", "on_step", "on_epoch")

# Settings that matter only to a fresh run (a resumed one takes its weights from the
# checkpoint): a resume may leave them unset.
_FRESH_RUN_ONLY = ("init_from", "new_head")


class TrainingDiverged(RuntimeError):
    """The loss (or a weight) became NaN or infinite; the last good checkpoint is kept."""


def _data_parallel_group(distributed: bool | None) -> dist.Group | None:
    """The group of ranks to train over: ``distributed`` True, or None and launched by
    mpirun with several ranks; else None (a single process never imports mpi4py)."""
    if distributed is None:
        distributed = dist.launched_by_mpi()
    return dist.init() if distributed else None


def _threads_now() -> int:
    import resnet_cpp

    return int(resnet_cpp.num_threads())


@contextlib.contextmanager
def _process_settings(threads: int | None, precision: str | None):
    """OpenMP threads and convolution precision for the block (None: as they are),
    restored afterwards."""
    import resnet_cpp

    old_threads, old_precision = resnet_cpp.num_threads(), resnet_cpp.precision()
    try:
        if threads is not None:
            resnet_cpp.set_num_threads(int(threads))
        if precision is not None:
            resnet_cpp.set_precision(precision)
        yield
    finally:
        resnet_cpp.set_num_threads(old_threads)
        _precision._set(old_precision)


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
    """Train ``model`` on ``train_data`` (an ``rc.data.Dataset``); see :func:`fit`.

    ``config`` is the :class:`TrainConfig` in effect; ``state`` the :class:`RunState`;
    ``model``, ``optimizer``, ``schedule``, ``history`` and ``global_step`` are there for
    the ``on_step(trainer)`` and ``on_epoch(trainer, record)`` hooks.
    """

    def __init__(self, model, train_data, test_data=None, *, config: TrainConfig | None = None,
                 mean=None, std=None, model_config: dict | None = None,
                 extra_config: dict | None = None,
                 on_step: Callable[[Trainer], None] | None = None,
                 on_epoch: Callable[[Trainer, dict], None] | None = None,
                 **settings: Any) -> None:
        cfg = TrainConfig.from_kwargs(settings, config, also=_INPUTS)
        self.model, self.train_data, self.test_data = model, train_data, test_data
        self.on_step, self.on_epoch = on_step, on_epoch
        self.model_config = model_config or getattr(model, "config", None)
        self.extra_config = dict(extra_config or {})
        self.device = cfg.device
        if self.device == "cuda":
            backend.require_cuda()
        if getattr(model, "device", "cpu") != self.device:
            model.to(self.device)
        self.dp = self._data_parallel(cfg)
        self.world_size = 1 if self.dp is None else self.dp.size
        if self.dp is not None:
            cfg = self.dp.rank_config(cfg)
        self.config = cfg
        with self._ranks_together():  # a rank failing here must stop the others too
            path = self._resume_path()  # on rank 0: the others get its state at the start
            self._resume_from = None if path is None else (path, ckpt.load(path))
            init = self._prepare_finetune()
            self.init_path = None if init is None else init.path
            self.mean, self.std = self._normalization(mean, std, init)
            self.recipe = optim.get_recipe(cfg.recipe or "he2015")
            self.batch_size = cfg.batch_size or self.recipe.batch_size  # per rank
            self.loader = self._train_loader()
            self.steps_per_epoch = len(self.loader)
            self.total_steps = cfg.epochs * self.steps_per_epoch
            self.optimizer, self.schedule = self._optimizer_and_schedule()
            if self.dp is not None:
                self.dp.attach(self.optimizer)
        from .. import nn

        # On the device the labels are checked on the host (_check_labels) instead of by
        # the loss, which would wait for the device.
        self.criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing,
                                             check_labels=self.device == "cpu")
        self.state = RunState()
        self.metrics = MetricsLog(self._path("metrics.jsonl"))
        self.history = History(records=self.metrics.records)
        self._param_names = {id(p): n for n, p in getattr(model, "named_parameters",
                                                           list)()}
        self._cuda_step = None  # the CudaTrainStep while fit() runs on the device

    @property
    def global_step(self) -> int:
        """Optimizer steps run so far (the hooks' clock)."""
        return self.state.global_step

    # ----------------------------------------------------------------- setup

    def _data_parallel(self, cfg: TrainConfig):
        """This rank's DataParallel hooks, or None when training in one process."""
        group = _data_parallel_group(cfg.distributed)
        if group is None:
            return None
        from ..distributed.data_parallel import DataParallel

        if self.device != "cpu":
            raise ValueError("distributed: data-parallel training runs on the CPU only "
                             f"(device={self.device!r})")
        return DataParallel(group, cfg.sync_bn)

    def _ranks_together(self):
        """Data-parallel: a rank raising in the block stops every rank (a diverged run
        stops them all at the same step); else a no-op context."""
        if self.dp is None:
            return contextlib.nullcontext()
        return self.dp.group.fail_together(collective=(TrainingDiverged,))

    def _prepare_finetune(self):
        """Load ``init_from`` and freeze what is asked (:mod:`resnet_cpp.finetune`);
        returns the io.Weights read, or None."""
        from .. import finetune

        c = self.config
        return finetune.prepare(self.model, init_from=c.init_from, new_head=c.new_head,
                                freeze_trunk=c.freeze_trunk, trunk_lr=c.trunk_lr,
                                freeze_bn=c.freeze_bn)

    def _normalization(self, mean, std, init) -> tuple:
        """The (C,) float32 channel mean and std the images are normalized with: as given,
        else a resumed run's, else (``normalize``) the pretrained model's, an ImageDataset's
        own or the training data's statistics; (None, None) without normalization.
        Data-parallel: rank 0's."""
        data = self.train_data
        if mean is None and self._resume_from is not None:
            mean, std = self._resume_from[1].normalization()
        if mean is None and self.config.normalize:
            if init is not None and init.meta.get("normalization"):  # the pretrained model's
                mean, std = init.meta["normalization"]["mean"], init.meta["normalization"]["std"]
            elif hasattr(data, "channel_stats"):  # an ImageDataset's own
                mean, std = data.channel_stats()
            elif hasattr(data, "images"):
                from ..data import channel_stats

                mean, std = channel_stats(data)
        if self.dp is not None:
            mean, std = self.dp.broadcast_normalization(mean, std)
        return (None if mean is None else np.asarray(mean, np.float32),
                None if std is None else np.asarray(std, np.float32))

    def _train_loader(self):
        """The shuffled, augmented loader of global batches (this rank's part of each)."""
        c = self.config
        shard = {} if self.dp is None else {"shard": (self.dp.rank, self.dp.size)}
        loader = make_loader(self.train_data, self.batch_size * self.world_size, shuffle=True,
                             augment=c.augment, mean=self.mean, std=self.std, seed=c.seed,
                             drop_last=False, **shard)
        if len(loader) < 1:
            raise ValueError("the training data gives no batch")
        if self.dp is not None:
            if not hasattr(loader, "shard"):
                raise TypeError("distributed training needs a resnet_cpp Dataset (each rank "
                                "draws its part of every batch), not an iterable of batches")
            last = loader.batch_len(len(loader) - 1)
            if last < self.world_size:
                raise ValueError(f"the last batch of an epoch has {last} images, fewer than "
                                 f"the {self.world_size} ranks: change batch_size")
        return loader

    def _optimizer_and_schedule(self) -> tuple[optim.Optimizer, optim.Schedule]:
        """A given Optimizer (and Schedule), or the recipe's with the settings' overrides."""
        from .. import finetune

        c = self.config
        warmup_steps = int(round(c.warmup_epochs * self.steps_per_epoch))
        optimizer, schedule = c.optimizer, c.schedule
        if isinstance(optimizer, optim.Optimizer):
            optimizer = optimizer.to(self.device)
            if c.lr is not None:
                optimizer.lr = float(c.lr)
            if not isinstance(schedule, optim.Schedule):
                schedule = optim.create_schedule(schedule or self.recipe.schedule, optimizer,
                                                 self.total_steps, warmup_steps=warmup_steps)
        else:
            if isinstance(schedule, optim.Schedule):
                raise ValueError("a Schedule instance needs its Optimizer passed as optimizer=")
            kw = {k: v for k, v in (("momentum", c.momentum),
                                    ("weight_decay", c.weight_decay)) if v is not None}
            if c.nesterov:
                kw["nesterov"] = True
            optimizer, schedule = self.recipe.build(
                finetune.param_groups(self.model, c.trunk_lr), self.total_steps, lr=c.lr,
                optimizer=optimizer, schedule=schedule, warmup_steps=warmup_steps, **kw)
        if schedule.optimizer is not optimizer:
            raise ValueError("the schedule drives a different optimizer than optimizer=")
        return optimizer, schedule

    # ----------------------------------------------------------------- the loop

    def fit(self) -> History:
        """Run (or continue) training; returns the :class:`History`."""
        with self._ranks_together(), \
                _process_settings(self.config.threads, self.config.precision):
            self._start()
            started = contextlib.nullcontext() if self.dp is None else self.dp.start(self)
            with started, InterruptGuard() as guard, self._device_session():
                self._run(guard)
        return self.history

    def _start(self) -> None:
        """Prepare out_dir, and restore the run to continue if there is one."""
        out = self.config.out_dir
        if out is not None:
            os.makedirs(out, exist_ok=True)
            for p in ckpt.remove_stale_temps(out):
                self._log(f"removed {p}, left by a save that was cut short")
        if self._resume_from is not None:
            path, c = self._resume_from
            self._resume_from = None  # the arrays are copied: let them go
            self._restore(c, path)
            self.metrics.rewrite()
            self._log(f"resumed from {path} at epoch {self.state.epoch + 1}, batch "
                      f"{self.state.batch} (step {self.state.global_step})")
        elif out is not None:  # a fresh run, or a fit() again after the first stopped
            if self.config.resume and self.state.global_step == 0:
                self._log(f"no checkpoint in {out}; starting from scratch")
            self.metrics.rewrite()

    def _run(self, guard: InterruptGuard) -> None:
        """Epoch after epoch until the last, max_steps or a signal."""
        while self.state.epoch < self.config.epochs:
            try:
                finished = self._train_epoch(guard)
                self.history.stopped_at_max_steps = not finished
                self._end_epoch(guard, partial=not finished)
                if not finished:
                    return
            except KeyboardInterrupt:
                if self.dp is not None:
                    raise  # other ranks may be mid-step: stop them all (fail_together)
                self._stop_on_signal(guard.signum or signal.SIGINT)
                return

    def _train_epoch(self, guard: InterruptGuard) -> bool:
        """The rest of the current epoch, step by step; False if max_steps stopped it."""
        self.model.train()
        if hasattr(self.loader, "set_epoch"):
            self.loader.set_epoch(self.state.epoch)
        if self.state.batch >= self.steps_per_epoch:
            return True
        batches = self._batches()
        bar = Progress(self.steps_per_epoch,
                       f"epoch {self.state.epoch + 1}/{self.config.epochs}",
                       enabled=self.config.progress, initial=self.state.batch)
        try:
            t0 = time.perf_counter()
            for item in batches:
                with guard.critical():  # a signal waits for the step to finish
                    lr = self.optimizer.lr
                    loss, correct, n = self._step(item, batches)
                    self.schedule.step()
                    t1 = time.perf_counter()
                    self.state.add_step(loss, correct, n, t1 - t0)
                    t0 = t1
                bar.update(self._postfix(lr))
                if self.on_step is not None:
                    self.on_step(self)
                max_steps = self.config.max_steps
                if max_steps is not None and self.state.global_step >= max_steps:
                    return False
        finally:
            bar.close()
            close = getattr(batches, "close", None)  # stop a prefetch thread
            if close is not None:
                close()
        return True

    def _batches(self):
        """The current epoch's remaining batches; on the device, staged in pinned memory
        as ``(slot, x, y)``."""
        b = self.state.batch
        batches = self.loader.iter_from(b) if b else iter(self.loader)
        if self._cuda_step is None:
            return batches
        from .device_step import PinnedBatches

        return PinnedBatches(batches, check_labels=self._check_labels)

    def _step(self, item, batches) -> tuple[float, int, int]:
        """One optimizer step on a batch: (loss, correct, images) of the whole batch."""
        if self._cuda_step is None:
            x, y = item
            return self._cpu_step(x, y)
        slot, x, y = item
        result = self._device_step(x, y)
        batches.release(slot)  # the step has copied x and read y
        return result

    def _cpu_step(self, x, y) -> tuple[float, int, int]:
        """One step on the CPU (data-parallel: this rank's part, then the Allreduce)."""
        model, crit = self.model, self.criterion
        model.zero_grad()  # backward adds into .grad
        logits = model(x)
        loss = float(crit(logits, y))
        n = len(y)
        correct = int(np.count_nonzero(np.argmax(logits, axis=1) == y))
        if self.dp is not None:  # the whole batch's, over all ranks
            n_batch = self.loader.batch_len(self.state.batch)
            loss, correct = self.dp.backward(model, crit, loss, correct, n, n_batch)
            n = n_batch
        if not math.isfinite(loss):
            raise self._diverged(f"loss is {loss}", self.state.global_step + 1)
        if self.dp is None:
            model.backward(crit.backward(), need_dx=False)
        self.optimizer.step()
        self._check_finite_weights(self.state.global_step + 1)
        return loss, correct, n

    def _device_step(self, x, y) -> tuple[float, int, int]:
        """One step on the GPU (:class:`resnet_cpp.train.device_step.CudaTrainStep`)."""
        loss, logits = self._cuda_step.step(x, y)
        if not math.isfinite(loss):
            raise self._diverged(f"loss is {loss}", self.state.global_step + 1)
        return loss, int(np.count_nonzero(np.argmax(logits, axis=1) == y)), len(y)

    def _postfix(self, lr: float) -> dict:
        """The progress bar's running numbers."""
        s = self.state.sums
        return {"loss": f"{s.loss / s.seen:.4f}", "acc": f"{s.correct / s.seen:.3f}",
                "lr": f"{lr:.3g}", "img/s": f"{s.seen / max(s.time, 1e-9):.0f}"}

    def _end_epoch(self, guard: InterruptGuard, partial: bool) -> None:
        """Evaluate, then record the epoch, advance the position and save, together."""
        st = self.state
        record = {"epoch": st.epoch + 1, "step": st.global_step, **st.summary(),
                  "lr": self.schedule.lr_at(max(st.global_step - 1, 0))}  # the last step's
        line = (f"epoch {st.epoch + 1}/{self.config.epochs}: train loss "
                f"{record['train_loss']:.4f} acc {100 * record['train_acc']:.2f}%")
        if partial:
            record["partial"] = True
            line = f"stopped at max_steps={self.config.max_steps}: " + line
        if self.dp is not None:  # equal BN statistics on every rank before eval and save
            bad = self.dp.sync_bn_stats(self.model)
            if bad is not None:
                raise self._diverged(f"{bad} became NaN/inf", st.global_step)
        if self.test_data is not None:
            res = evaluate(self.model, self.test_data, batch_size=self.config.eval_batch_size,
                           mean=self.mean, std=self.std,
                           group=None if self.dp is None else self.dp.group)
            self.history.test = res
            record["test_loss"], record["test_acc"] = res.loss, res.accuracy
            line += f" | test loss {res.loss:.4f} acc {100 * res.accuracy:.2f}%"
        line += f" | {record['images_per_s']:.0f} img/s"
        with guard.critical():  # a signal waits: the record, the position and the save agree
            self.metrics.add(record)
            if not partial:
                st.next_epoch()
            if self.config.out_dir is not None:
                self._save_epoch(record, partial)
                self.metrics.flush()
        self._log(line)
        if self.on_epoch is not None:
            self.on_epoch(self, record)

    def _save_epoch(self, record: dict, partial: bool) -> None:
        """last.npz, and best.npz when a whole epoch's test accuracy improved."""
        improved = not partial and record.get("test_acc", -1.0) > self.state.best_accuracy
        if improved:
            self.state.best_accuracy = record["test_acc"]
        self.history.last_checkpoint = self.save(self._path("last.npz"))
        if improved and self.config.save_best:
            self.history.best_checkpoint = self.save(self._path("best.npz"))

    def _stop_on_signal(self, signum: int) -> None:
        """After a SIGINT/SIGTERM: save the position reached and say how to continue."""
        self.history.interrupted = True
        self.history.signal = signum
        msg = "\ninterrupted" if signum == signal.SIGINT else "\nterminated"
        if self.config.out_dir is not None:
            path = self.save(self._path("last.npz"))
            self.history.last_checkpoint = path
            st = self.state
            msg += (f": saved {path} at epoch {st.epoch + 1}, batch {st.batch} "
                    f"(step {st.global_step}); continue with "
                    f"`resnet-cpp train --resume {self.config.out_dir}`")
        self._log(msg)

    def _device_session(self):
        """For device="cuda", the CudaTrainStep that runs every step of this fit (its CUDA
        graphs are captured once and replayed across epochs); else a no-op context."""
        if self.device != "cuda":
            return contextlib.nullcontext()
        from .device_step import CudaTrainStep

        self._cuda_step = CudaTrainStep(self.model, self.criterion, self.optimizer,
                                        self.config.cuda_graph)
        return self._cuda_step

    def _check_labels(self, y: np.ndarray) -> None:
        k = getattr(self.model, "num_classes", None)
        if k is not None and len(y) and (y.min() < 0 or y.max() >= k):
            bad = int(np.flatnonzero((y < 0) | (y >= k))[0])
            raise ValueError(f"labels: labels[{bad}] = {int(y[bad])} is outside [0, K) = [0, {k})")

    # ----------------------------------------------------------------- divergence

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

    # ----------------------------------------------------------------- checkpoints

    def _log(self, msg: str) -> None:
        if self.config.verbose:
            print(msg, flush=True)

    def _path(self, name: str) -> str | None:
        out = self.config.out_dir
        return None if out is None else os.path.join(out, name)

    def _resume_path(self) -> str | None:
        resume = self.config.resume
        if not resume:
            return None
        if isinstance(resume, (str, os.PathLike)):
            p = os.fspath(resume)
            p = os.path.join(p, "last.npz") if os.path.isdir(p) else p
            if not os.path.isfile(p):
                raise ckpt.CheckpointError(f"no checkpoint to resume from at {p!r}")
            return p
        p = self._path("last.npz")
        return p if p is not None and os.path.isfile(p) else None

    def checkpoint_config(self) -> dict:
        """The run's settings as checkpoints store them (``meta["config"]``) and a resume
        checks them: the must-keep settings of TrainConfig as given, except those a recipe
        fills in (recipe, optimizer, schedule, batch_size: the ones used); threads, device,
        steps per epoch and ranks for the record; then ``extra_config``."""
        c = self.config
        return _json_safe({
            **c.kept(), "init_from": self.init_path, "recipe": self.recipe.name,
            "optimizer": self.optimizer.name, "schedule": self.schedule.state_dict()["name"],
            "batch_size": self.batch_size, "threads": c.threads, "device": self.device,
            "steps_per_epoch": self.steps_per_epoch, "world_size": self.world_size,
            **self.extra_config})

    def _meta(self) -> dict:
        from .. import __version__

        data = self.train_data
        opt_state = self.optimizer.state_dict()
        opt_state.pop("arrays")
        run = self.state.state_dict()
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
            "position": {**run["position"], "seed": self.config.seed,
                         "steps_per_epoch": self.steps_per_epoch,
                         "batch_size": self.batch_size * self.world_size,  # global
                         "world_size": self.world_size, "threads": _threads_now()},
            "epoch_sums": run["epoch_sums"],
            "best_accuracy": run["best_accuracy"],
            "history": self.metrics.complete(),
            "metrics": self.metrics.records[-1] if self.metrics.records else None,
            "config": self.checkpoint_config(),
        })

    def save(self, path: str) -> str:
        """Write a checkpoint of the current state (refuses non-finite weights)."""
        # The weights saved are those after the last step run (global_step).
        self._check_finite_weights(self.state.global_step)
        state = self.model.state_dict()
        for k, a in state.items():
            if a.dtype.kind == "f" and not np.isfinite(a).all():
                raise self._diverged(f"{k} became NaN/inf", self.state.global_step)
        groups = {"model": state, "optimizer": self.optimizer.state_dict()["arrays"]}
        return ckpt.save(path, groups, self._meta())

    def _check_same_run(self, c, path: str) -> None:
        """CheckpointError unless checkpoint ``c`` is of a run with this one's data, global
        batch, seed and must-keep settings."""
        pos = c.meta.get("position", {})
        for key, own in (("batch_size", self.batch_size * self.world_size),
                         ("seed", self.config.seed), ("steps_per_epoch", self.steps_per_epoch)):
            if key in pos and pos[key] != own:
                raise ckpt.CheckpointError(
                    f"{path}: checkpoint has {key}={pos[key]}, this run has {own}; "
                    "resume with the same data, global batch size (batch size x ranks) "
                    "and seed")
        for key in ("position", "schedule", "epoch_sums"):
            if key not in c.meta:
                raise ckpt.CheckpointError(f"{path}: not a training checkpoint (no {key})")
        saved, own = c.meta.get("config", {}), self.checkpoint_config()
        for name in TrainConfig.names_kept():
            if name == "batch_size":  # per rank: the global batch was checked above
                continue
            if name in _FRESH_RUN_ONLY and not own[name]:
                continue
            if name in saved and saved[name] != own[name]:
                raise ckpt.CheckpointError(
                    f"{path}: the checkpoint's run has {name}={saved[name]!r}, this run "
                    f"{name}={own[name]!r}; a resumed run keeps its settings")
        mean, std = c.normalization()
        if mean is not None and self.mean is not None and (
                not np.array_equal(mean, self.mean) or not np.array_equal(std, self.std)):
            raise ckpt.CheckpointError(f"{path}: the checkpoint normalized with other "
                                       "mean/std; resume with the same training data")

    def load(self, path: str) -> None:
        """Restore the full training state from a checkpoint written by :meth:`save`;
        everything is checked before anything changes."""
        self._restore(ckpt.load(path), path)

    def _restore(self, c: ckpt.Checkpoint, path: str) -> None:
        self._check_same_run(c, path)
        state = RunState()
        try:
            state.load_state_dict(c.meta)
        except (KeyError, TypeError, ValueError) as e:
            raise ckpt.CheckpointError(f"{path}: damaged run state: {e!r}") from e
        opt_state = c.optimizer_state()
        if opt_state is None:
            raise ckpt.CheckpointError(f"{path}: checkpoint has no optimizer state")
        if c.meta["schedule"].get("name") != self.schedule.state_dict()["name"]:
            raise ckpt.CheckpointError(
                f"{path}: checkpoint used schedule {c.meta['schedule'].get('name')!r}, "
                f"this run {self.schedule.state_dict()['name']!r}")
        ckpt.check_model_state(self.model, c.model_state, where=path)
        try:
            self.optimizer.check_state_dict(opt_state)
        except (KeyError, ValueError) as e:
            raise ckpt.CheckpointError(f"{path}: optimizer state does not fit: {e}") from e
        # Everything below only copies already-verified arrays.
        self.model.load_state_dict(dict(c.model_state))
        self.optimizer.load_state_dict(opt_state)
        self.schedule.load_state_dict(c.meta["schedule"])
        self.state = state
        self.metrics.load(c.meta.get("history", []))
        threads = c.meta["position"].get("threads")
        if threads != _threads_now():
            self._log(f"note: the checkpoint ran with {threads} threads, this run with "
                      f"{_threads_now()}: a resumed run equals an uninterrupted one bit for "
                      "bit only with the same thread count")


def fit(model, train_data, test_data=None, **kwargs: Any) -> History:
    """Train ``model`` on ``train_data`` (evaluating on ``test_data`` after each epoch) and
    return its :class:`History`.

    The settings are :class:`TrainConfig`'s fields, as keywords
    (``fit(model, data, test, epochs=3, lr=0.1)``) or as ``config=TrainConfig(...)``
    (keywords then override its fields); an unknown keyword is a TypeError naming it. See
    TrainConfig for each setting (``help(rc.train.TrainConfig)``; ``resnet-cpp train
    --help`` lists the same). The other keywords are what the run is given:

    - ``mean``, ``std``: the (C,) channel normalization (default: see ``normalize``).
    - ``model_config``: ``{"name", "version", "kwargs"}`` stored to rebuild the model
      (default: ``model.config``).
    - ``extra_config``: a JSON-able dict stored with the settings in checkpoints.
    - ``on_step(trainer)``, ``on_epoch(trainer, record)``: hooks after every step and
      epoch (a KeyboardInterrupt raised there stops the run like Ctrl-C).

    Fine-tuning (init_from, new_head, freeze_trunk, trunk_lr, freeze_bn):
    :mod:`resnet_cpp.finetune`. Data-parallel (distributed, sync_bn; batch_size is then per
    rank): :mod:`resnet_cpp.distributed`. device="cuda": :mod:`resnet_cpp.train.device_step`.
    """
    return Trainer(model, train_data, test_data, **kwargs).fit()
