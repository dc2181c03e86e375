"""Every setting of a training run, defined once: :class:`TrainConfig`.

Each field is declared with :func:`setting`: its default, a one-line help, whether a
resumed run must keep it, and its command-line option. From these come ``fit``'s keywords
(:meth:`TrainConfig.from_kwargs`), the options of ``resnet-cpp train``
(:func:`add_options`) and the settings a checkpoint stores and a resume checks
(:meth:`TrainConfig.kept`). The command line's own settings (dataset, model) are declared
the same way in :mod:`resnet_cpp.cli`.
"""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import optim
from .._precision import PRECISIONS
from ..backend import DEVICES, parse_device

__all__ = [
    "TrainConfig",
    "add_options",
    "given",
    "nonneg_float",
    "nonneg_int",
    "positive_int",
    "setting",
    "thread_count",
]

FINE_TUNING = "fine-tuning and image folders"  # the options' group in --help

# ----------------------------------------------------------------- option value types
# argparse prints their ArgumentTypeError as a usage error (exit code 2).


def _int_at_least(s: str, low: int, expected: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {s!r}") from None
    if v < low:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {v}")
    return v


def positive_int(s: str) -> int:
    return _int_at_least(s, 1, "a positive integer")


def nonneg_int(s: str) -> int:
    return _int_at_least(s, 0, "an integer >= 0")


def nonneg_float(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {s!r}") from None
    if not math.isfinite(v) or v < 0:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {s}")
    return v


def thread_count(s: str) -> int:
    """1 .. the bound set_num_threads accepts (libgomp aborts past what it can start)."""
    from .. import _core

    v = positive_int(s)
    if v > _core.max_num_threads():
        raise argparse.ArgumentTypeError(f"expected at most {_core.max_num_threads()} threads "
                                         f"(4 per logical CPU), got {v}")
    return v


# ----------------------------------------------------------------- declaring settings


def setting(default: Any, help: str, *, keep: bool = False, flag: str | None = "",
            group: str | None = None, **option: Any) -> Any:
    """A dataclass field declaring one setting.

    ``keep``: a resumed run must keep it (the checkpoint stores it and a resume checks it).
    ``flag``: its command-line option; "" derives it from the name (batch_size:
    --batch-size), None means none. ``option``: argparse keywords (type, choices, metavar,
    ...); a setting annotated ``bool`` without them becomes --name/--no-name. ``group``:
    the --help section it is listed in.
    """
    return dataclasses.field(default=default, metadata={
        "help": help, "keep": keep, "flag": flag, "group": group, "option": option})


def option_flag(f: dataclasses.Field) -> str | None:
    """The command-line option of a setting, or None."""
    flag = f.metadata["flag"]
    return None if flag is None else flag or "--" + f.name.replace("_", "-")


def _default_note(default: Any) -> str:
    if default is None:  # the help says what unset means
        return ""
    if isinstance(default, bool):
        return f" (default: {'on' if default else 'off'})"
    return f" (default: {default})"


def add_options(parser: argparse.ArgumentParser, *classes: type) -> None:
    """One option per setting of ``classes`` that has one; its dest is the field's name
    and its default None, so that a resumed run can tell what was given."""
    groups: dict = {}
    for cls in classes:
        for f in dataclasses.fields(cls):
            flag = option_flag(f)
            if flag is None:
                continue
            meta = f.metadata
            where = parser if meta["group"] is None else groups.setdefault(
                meta["group"], parser.add_argument_group(meta["group"]))
            kw = dict(meta["option"])
            if f.type == "bool" and not kw:
                kw["action"] = argparse.BooleanOptionalAction
            where.add_argument(flag, dest=f.name, default=None,
                               help=meta["help"] + _default_note(f.default), **kw)


def given(args: argparse.Namespace, cls: type) -> dict:
    """The settings of ``cls`` given on the command line ({name: value})."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
            if option_flag(f) is not None and getattr(args, f.name) is not None}


# ----------------------------------------------------------------- validation


def _check_int(name: str, v: Any, low: int, optional: bool = False) -> None:
    if v is None and optional:
        return
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {type(v).__name__}")
    if v < low:
        raise ValueError(f"{name} must be >= {low}, got {v}")


def _check_number(name: str, v: Any, optional: bool = False) -> None:
    """A finite number >= 0."""
    if v is None and optional:
        return
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {type(v).__name__}")
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {v}")


def _check_choice(name: str, v: Any, valid: Iterable[str], instance_of: type | None = None,
                  optional: bool = True) -> None:
    if (v is None and optional) or (instance_of is not None and isinstance(v, instance_of)):
        return
    if not isinstance(v, str) or v.lower() not in valid:
        raise ValueError(f"unknown {name} {v!r}; valid: {', '.join(valid)}")


def _plain(v: Any) -> Any:
    """A setting as JSON stores it: a file (or io.Weights) as its path, an Optimizer or
    Schedule as its name."""
    if isinstance(v, os.PathLike):
        return os.fspath(v)
    if isinstance(v, (optim.Optimizer, optim.Schedule)):
        return v.name
    from ..io import Weights

    return v.path if isinstance(v, Weights) else v


# ----------------------------------------------------------------- the settings


@dataclass
class TrainConfig:
    """The settings of a training run (``fit``'s keywords, ``resnet-cpp train``'s options).

    Those with ``keep`` are stored in checkpoints, and a resumed run must have the same
    (``fit`` raises CheckpointError, the CLI takes them from the checkpoint); only
    ``init_from`` and ``new_head`` may be left unset, the weights being the checkpoint's.
    Values are checked when the config is made: ValueError or TypeError naming the setting.
    """

    epochs: int = setting(6, "passes over the training data", keep=True, type=positive_int)
    # 6: the no-argument `resnet-cpp train`, ~1 min on 2 Zen 4 cores (47 steps of 128 each)
    batch_size: int | None = setting(
        None, "images per step (default: the recipe's); per rank under mpirun (the global "
        "batch is N times larger)", keep=True, type=positive_int)
    recipe: str | None = setting(
        None, "the optimizer, lr, batch size and schedule unset settings come from "
        "(default he2015)", keep=True, choices=tuple(optim.RECIPES))
    optimizer: str | optim.Optimizer | None = setting(
        None, "default: the recipe's (fit also takes an Optimizer)", keep=True,
        choices=tuple(optim.OPTIMIZERS))
    lr: float | None = setting(None, "peak learning rate (default: the recipe's)", keep=True,
                               type=nonneg_float)
    momentum: float | None = setting(None, "SGD momentum (default: the recipe's)", keep=True,
                                     type=nonneg_float)
    nesterov: bool = setting(False, "SGD with Nesterov momentum", keep=True)
    weight_decay: float | None = setting(None, "default: the recipe's", keep=True,
                                         type=nonneg_float)
    schedule: str | optim.Schedule | None = setting(
        None, "learning-rate schedule (default: the recipe's; fit also takes a Schedule of "
        "its Optimizer)", keep=True, choices=optim.SCHEDULES)
    warmup_epochs: float = setting(0.0, "linear lr warmup over this many epochs", keep=True,
                                   type=nonneg_float)
    label_smoothing: float = setting(0.0, "label smoothing of the cross-entropy, in [0, 1)",
                                     keep=True, type=nonneg_float)
    augment: bool = setting(True, "random crop (pad 4) + horizontal flip", keep=True)
    normalize: bool = setting(
        True, "normalize the images by a channel mean and std: the --init-from model's, "
        "an image folder's, else the training data's", keep=True)
    seed: int = setting(0, "seed for shuffling and augmentation (and the CLI's model init)",
                        keep=True, type=nonneg_int)
    precision: str | None = setting(
        None, "convolution operands, fp32 or bf16 (needs AVX512-BF16); default: the "
        "process setting, fp32 unless RESNET_CPP_PRECISION", keep=True, choices=PRECISIONS)
    sync_bn: bool = setting(False, "under mpirun: BN batch statistics over all ranks' images",
                            keep=True)

    init_from: Any = setting(
        None, "start from these weights: a PyTorch .pth/.pt, .safetensors or resnet_cpp "
        ".npz (the CLI takes the model from the file unless --model)", keep=True,
        group=FINE_TUNING, metavar="FILE")
    new_head: bool = setting(
        False, "replace the file's classifier by a new one for the data's N classes",
        keep=True, group=FINE_TUNING, metavar="N", nargs="?", const=0, type=positive_int)
    freeze_trunk: bool = setting(False, "train only the head; the trunk stays bit for bit as "
                                 "loaded", keep=True, group=FINE_TUNING)
    trunk_lr: float | None = setting(None, "learning rate of the trunk (the head trains at "
                                     "--lr)", keep=True, group=FINE_TUNING, type=nonneg_float)
    freeze_bn: bool = setting(False, "BN layers keep (and use) their running statistics",
                              keep=True, group=FINE_TUNING)

    # How the run is carried out: a resumed run may change these.
    threads: int | None = setting(
        None, "OpenMP threads (default: all; under mpirun the cores divided among the ranks "
        "on each machine)", type=thread_count)
    device: str = setting("cpu", "train on the CPU or the GPU (a build with CUDA)",
                          choices=DEVICES)
    cuda_graph: bool = setting(True, "with --device cuda: replay each step's CUDA graph "
                               "(off: launch every kernel of a step)")
    distributed: bool | None = setting(
        None, "data-parallel over MPI ranks (None: when launched by mpirun with several "
        "ranks)", flag=None)  # no option: mpirun decides
    max_steps: int | None = setting(None, "stop after this many optimizer steps in all "
                                    "(smoke tests)", type=positive_int)
    eval_batch_size: int = setting(256, "images per evaluation batch", type=positive_int)
    out_dir: str | None = setting(
        None, "run directory: checkpoints last.npz and best.npz, metrics.jsonl (the CLI's "
        "default: runs/<dataset>-<model>-<time>)", flag="--out", metavar="DIR")
    resume: bool | str = setting(
        False, "continue the run saved in this directory or checkpoint (fit: True for "
        "out_dir's)", flag="--resume", metavar="DIR")
    save_best: bool = setting(True, "also save best.npz when the test accuracy improves")
    progress: bool = setting(True, "per-step progress: a bar on a terminal, else a line a "
                             "minute at most")
    verbose: bool = setting(True, "a line per epoch, and notes on resuming")

    def __post_init__(self) -> None:
        _check_int("epochs", self.epochs, 1)
        _check_int("batch_size", self.batch_size, 1, optional=True)
        _check_int("max_steps", self.max_steps, 1, optional=True)
        _check_int("eval_batch_size", self.eval_batch_size, 1)
        _check_int("seed", self.seed, 0)
        for name in ("lr", "momentum", "weight_decay", "trunk_lr"):
            _check_number(name, getattr(self, name), optional=True)
        _check_number("warmup_epochs", self.warmup_epochs)
        _check_number("label_smoothing", self.label_smoothing)
        if self.label_smoothing >= 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        _check_choice("recipe", self.recipe, tuple(optim.RECIPES))
        _check_choice("optimizer", self.optimizer, tuple(optim.OPTIMIZERS), optim.Optimizer)
        _check_choice("schedule", self.schedule, optim.SCHEDULES, optim.Schedule)
        if self.precision is not None and self.precision not in PRECISIONS:
            raise ValueError(f"precision must be 'fp32' or 'bf16', got {self.precision!r}")
        if self.threads is not None:
            from .. import _core

            _check_int("threads", self.threads, 1)
            if self.threads > _core.max_num_threads():
                raise ValueError(f"threads must be in [1, {_core.max_num_threads()}] (4 per "
                                 f"logical CPU), got {self.threads}")
        self.device = parse_device(self.device)
        if not isinstance(self.resume, (bool, str, os.PathLike)):
            raise TypeError(f"resume must be True, False or a path, got {self.resume!r}")
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.type == "bool" and not isinstance(v, (bool, np.bool_)):
                raise TypeError(f"{f.name} must be True or False, got {v!r}")

    @classmethod
    def from_kwargs(cls, settings: dict, base: TrainConfig | None = None, *,
                    also: Iterable[str] = ()) -> TrainConfig:
        """``base`` (default: the defaults) with the keyword ``settings`` replacing its
        fields. An unknown keyword is a TypeError naming it and the closest valid names
        (``also``: the caller's other keywords, suggested too)."""
        if base is not None and not isinstance(base, cls):
            raise TypeError(f"config must be a {cls.__name__}, got {type(base).__name__}")
        names = [f.name for f in dataclasses.fields(cls)]
        for key in settings:
            if key not in names:
                close = difflib.get_close_matches(key, [*names, *also], n=3)
                hint = f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""
                raise TypeError(f"unexpected keyword argument {key!r}: not a setting of "
                                f"{cls.__name__}{hint}")
        return cls(**settings) if base is None else dataclasses.replace(base, **settings)

    @classmethod
    def names_kept(cls) -> tuple[str, ...]:
        """The settings a resumed run must keep."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.metadata["keep"])

    def kept(self) -> dict:
        """The settings a resumed run must keep, as JSON stores them."""
        return {name: _plain(getattr(self, name)) for name in self.names_kept()}
