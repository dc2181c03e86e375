"""Optimizers, learning-rate schedules and named training recipes.

Optimizers update ``Parameter.data`` in place through the fused C++ kernels
``functional.sgd_step`` / ``functional.adam_step``; their state (momentum buffers, Adam
moments) lives on the parameters' device, and ``state_dict()`` returns it as NumPy in the
host layout, so checkpoints can store it and do not depend on the device. On the device a
step is ``prepare_step()`` (count it, stage lr and the step count into one-element device
arrays) then ``apply_step()`` (the kernels only, which read those arrays when they run, so
a captured CUDA graph of ``apply_step`` follows the schedule).

Schedules are **per iteration**: a schedule is built for a known number of optimizer
steps (``total_steps = epochs * batches_per_epoch``), sets ``optimizer.lr`` for step 0
when it is created, and ``schedule.step()`` is called once after every
``optimizer.step()`` to set the rate for the next step. ``schedule.lr_at(step)`` is a
pure function of the step index, so a resumed run gets the same rates as an
uninterrupted one. Milestones given in epochs are converted with ``steps_per_epoch``.

Recipes (``get_recipe(name)``) bundle an optimizer, its hyper-parameters, a batch size
and a schedule as published:

- ``"he2015"``: He et al., "Deep Residual Learning" (CIFAR-10): SGD lr 0.1, momentum
  0.9, weight decay 1e-4, batch 128, lr divided by 10 at 50% and 75% of training
  (the paper's 32k and 48k of 64k iterations).
- ``"keras"``: the Keras ``cifar10_resnet`` example: Adam lr 1e-3, batch 32, lr scaled
  by 1e-1, 1e-2, 1e-3, 0.5e-3 after epochs 80, 120, 160, 180 of 200. The boundaries are
  scaled proportionally to the requested epochs (40%, 60%, 80%, 90% of training). Its
  ``l2(1e-4)`` kernel regularizer adds ``2e-4 * w`` to the gradient, so the recipe uses
  coupled weight decay 2e-4 on conv/linear weights only (``decay_bn_bias=False``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from . import backend
from . import functional as F

__all__ = [
    "Optimizer",
    "SGD",
    "Adam",
    "AdamW",
    "create_optimizer",
    "Schedule",
    "Constant",
    "Piecewise",
    "MultiStep",
    "Cosine",
    "LinearWarmup",
    "OneCycle",
    "create_schedule",
    "Recipe",
    "RECIPES",
    "get_recipe",
    "OPTIMIZERS",
    "SCHEDULES",
]


# --------------------------------------------------------------------------- optimizers


def _layout(p) -> str | None:
    """A parameter's device layout (rc.nn.Parameter.layout; None for plain .data/.grad objects)."""
    return getattr(p, "layout", None)


class Optimizer:
    """Base class: holds the parameters (in groups), the current ``lr`` and the step count.

    ``params`` is an iterable of parameters, objects with ``.data`` and ``.grad`` float32
    C-contiguous arrays and a ``.decay`` flag (``rc.nn.Parameter``), or, as in PyTorch, a
    list of parameter groups ``[{"params": [...], "lr": ..., "weight_decay": ...}, ...]``
    where a group's ``lr`` and ``weight_decay`` default to the optimizer's. ``param_groups``
    holds the groups, ``params`` every parameter in group order. ``decay_bn_bias=False``
    applies no weight decay to parameters whose ``.decay`` is False (biases, BN gamma/beta).

    Schedules set ``optimizer.lr``; each group keeps the ratio of its lr to ``lr`` given at
    construction, so a group created with ``lr=0.01`` beside ``lr=0.1`` always runs at a
    tenth of the scheduled rate (what PyTorch's proportional schedules do per group).
    """

    name = "optimizer"
    GROUP_KEYS = ("params", "lr", "weight_decay")

    def __init__(self, params: Iterable, lr: float, weight_decay: float,
                 decay_bn_bias: bool) -> None:
        if lr < 0:
            raise ValueError(f"lr must be >= 0, got {lr}")
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        self.weight_decay = float(weight_decay)
        self.decay_bn_bias = bool(decay_bn_bias)
        self.param_groups: list[dict] = []
        self._lr_scales: list[float] = []
        self.params = []
        seen: set[int] = set()
        for gi, group in enumerate(_as_groups(params)):
            unknown = sorted(set(group) - set(self.GROUP_KEYS))
            if unknown:
                raise ValueError(f"param_groups[{gi}]: unknown key(s) {unknown}; a group "
                                 "may set 'lr' and 'weight_decay'")
            members = list(group["params"])
            if not members:
                raise ValueError(f"param_groups[{gi}] has an empty parameter list")
            glr = float(group.get("lr", lr))
            gwd = float(group.get("weight_decay", weight_decay))
            if glr < 0 or gwd < 0:
                raise ValueError(f"param_groups[{gi}]: lr and weight_decay must be >= 0, "
                                 f"got {glr} and {gwd}")
            if glr != lr and lr == 0:
                raise ValueError(f"param_groups[{gi}] sets lr={glr}: group rates are kept "
                                 "as multiples of the optimizer's lr, which must be > 0")
            for p in members:
                i = len(self.params)
                if id(p) in seen:
                    raise ValueError(f"params[{i}] appears in more than one param group")
                seen.add(id(p))
                for attr in ("data", "grad"):
                    a = getattr(p, attr, None)
                    ok = backend.is_device_array(a) or (
                        isinstance(a, np.ndarray) and a.flags.c_contiguous)
                    if not ok or a.dtype != np.float32:
                        raise TypeError(f"params[{i}].{attr} must be a float32 C-contiguous "
                                        "ndarray or DeviceArray (an rc.nn.Parameter)")
                self.params.append(p)
            self.param_groups.append({"params": members, "lr": glr, "weight_decay": gwd})
            self._lr_scales.append(glr / lr if lr else 1.0)
        if not self.params:
            raise ValueError("optimizer got an empty parameter list")
        self._lr = float(lr)
        self.step_count = 0
        self._scalars: dict = {}  # on the device: one-element arrays the kernels read

    @property
    def device(self) -> str:
        return backend.device_of(self.params[0].data)

    @property
    def lr(self) -> float:
        """The scheduled learning rate; setting it rescales every group's lr."""
        return self._lr

    @lr.setter
    def lr(self, value: float) -> None:
        self._lr = float(value)
        for group, scale in zip(self.param_groups, self._lr_scales):
            group["lr"] = self._lr * scale

    def _each(self):
        """(flat index, parameter, its group's index) for every parameter, in ``params`` order."""
        i = 0
        for gi, group in enumerate(self.param_groups):
            for p in group["params"]:
                yield i, p, gi
                i += 1

    def _wd(self, p, gi: int) -> float:
        """Weight decay for one parameter (0 for no-decay params unless decay_bn_bias)."""
        if self.decay_bn_bias or getattr(p, "decay", True):
            return self.param_groups[gi]["weight_decay"]
        return 0.0

    def zero_grad(self) -> None:
        """Set every parameter's gradient to 0: call it before each step's backward passes,
        which add into ``.grad`` (PyTorch semantics; several passes accumulate)."""
        for p in self.params:
            zero = getattr(p, "zero_grad", None)  # rc.nn.Parameter; plain objects: fill
            if zero is not None:
                zero()
            else:
                backend.zero_(p.grad)

    def step(self) -> None:
        """One update of every parameter: ``prepare_step()`` then ``apply_step()``."""
        self.prepare_step()
        self.apply_step()

    def prepare_step(self) -> None:
        """Count the step and, on the device, write lr and the step count into the
        one-element arrays ``apply_step`` reads (small kernels on the stream: no host wait)."""
        self.step_count += 1
        if self.device == "cuda":
            staged = [(("lr", gi), np.float32, g["lr"]) for gi, g in enumerate(self.param_groups)]
            for key, dtype, value in staged + [("step", np.int64, self.step_count)]:
                if key not in self._scalars:
                    self._scalars[key] = backend.empty((1,), dtype, "cuda")
                self._scalars[key].fill_(value)

    def apply_step(self) -> None:
        """The parameter updates of the step ``prepare_step`` staged (kernels only)."""
        raise NotImplementedError

    def _lr_arg(self, gi: int):
        """Group gi's lr as the update kernels take it: a number, or on the device its staged
        array."""
        return self._scalars["lr", gi] if self.device == "cuda" else self.param_groups[gi]["lr"]

    def to(self, device: str) -> Optimizer:
        """Move the state buffers to ``device``, where the parameters must already be
        (``model.to(device)`` first)."""
        device = backend.parse_device(device)
        if device != self.device:
            raise ValueError(f"device: the parameters are on {self.device}; move the model "
                             f"to {device!r} first, then its optimizer")
        if all(backend.device_of(a) == device for _, a in self._arrays().values()):
            return self
        state = self.state_dict()
        self._scalars = {}
        self._alloc_state()
        self.load_state_dict(state)
        return self

    def _alloc_state(self) -> None:
        """(Re)create the state buffers, zero, like each parameter's data."""

    def hparams(self) -> dict:
        """JSON-serializable hyper-parameters (excluding ``lr``)."""
        return {"weight_decay": self.weight_decay, "decay_bn_bias": self.decay_bn_bias}

    def _groups_state(self) -> list[dict]:
        return [{"size": len(g["params"]), "lr_scale": s, "weight_decay": g["weight_decay"]}
                for g, s in zip(self.param_groups, self._lr_scales)]

    def _arrays(self) -> dict[str, tuple]:
        """{key: (parameter, buffer shaped like its data)} of the state to checkpoint."""
        return {}

    def state_dict(self) -> dict:
        """``{"name", "lr", "step", "hparams", "param_groups", "arrays": {key: NumPy copy,
        host layout}}``; ``param_groups`` describes each group (size, lr scale, weight decay)."""
        return {"name": self.name, "lr": self.lr, "step": self.step_count,
                "hparams": self.hparams(), "param_groups": self._groups_state(),
                "arrays": {k: backend.to_host(a, _layout(p)) for k, (p, a) in self._arrays().items()}}

    def check_state_dict(self, state: dict) -> None:
        """Raise if ``state`` cannot be loaded (wrong optimizer, groups, keys or shapes)."""
        if state.get("name") != self.name:
            raise ValueError(f"optimizer state is for {state.get('name')!r}, not {self.name!r}")
        # States written before param groups existed hold one group of every parameter.
        groups = state.get("param_groups")
        if groups is not None and groups != self._groups_state():
            raise ValueError(f"optimizer state has param groups {groups}, this optimizer "
                             f"{self._groups_state()}")
        own = self._arrays()
        arrays = state.get("arrays", {})
        missing = sorted(set(own) - set(arrays))
        unexpected = sorted(set(arrays) - set(own))
        if missing or unexpected:
            raise KeyError(f"optimizer state mismatch: missing {missing}, unexpected {unexpected}")
        for k, (p, a) in own.items():
            shape = backend.host_shape(a, _layout(p))
            if arrays[k].shape != shape:
                raise ValueError(f"optimizer state {k!r}: shape {arrays[k].shape} != {shape}")

    def load_state_dict(self, state: dict) -> None:
        """Restore lr, step count and buffers (copied in place); validates everything first."""
        self.check_state_dict(state)
        own, arrays = self._arrays(), state["arrays"]
        for k, (p, a) in own.items():
            backend.copy_from_host(a, arrays[k], _layout(p))
        self.lr = float(state["lr"])
        self.step_count = int(state["step"])

    def __repr__(self) -> str:
        hp = ", ".join(f"{k}={v}" for k, v in self.hparams().items())
        groups = f", groups={len(self.param_groups)}" if len(self.param_groups) > 1 else ""
        return f"{type(self).__name__}(lr={self.lr}, {hp}{groups})"


def _as_groups(params: Iterable) -> list[dict]:
    """A parameter iterable or a list of group dicts -> a list of group dicts."""
    items = list(params)
    if items and all(isinstance(g, dict) for g in items):
        for gi, g in enumerate(items):
            if "params" not in g:
                raise ValueError(f"param_groups[{gi}] has no 'params' entry")
        return items
    if any(isinstance(g, dict) for g in items):
        raise TypeError("params must be all parameters or all group dicts, not a mix")
    return [{"params": items}]


class SGD(Optimizer):
    """SGD with momentum, Nesterov and (coupled, PyTorch-style) weight decay.

    Per step: ``g += wd*p; buf = momentum*buf + g; p -= lr*(g + momentum*buf if nesterov
    else buf)`` (dampening 0; a zero-initialised buffer equals PyTorch's first-step copy).
    """

    name = "sgd"

    def __init__(self, params: Iterable, lr: float, momentum: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False,
                 decay_bn_bias: bool = True) -> None:
        super().__init__(params, lr, weight_decay, decay_bn_bias)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if nesterov and momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0")
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        self._alloc_state()

    def _alloc_state(self) -> None:
        self.buffers = ([backend.zeros_like(p.data) for p in self.params]
                        if self.momentum else [None] * len(self.params))

    def apply_step(self) -> None:
        for i, p, gi in self._each():
            F.sgd_step(p.data, p.grad, self.buffers[i], lr=self._lr_arg(gi),
                       momentum=self.momentum, weight_decay=self._wd(p, gi),
                       nesterov=self.nesterov)

    def hparams(self) -> dict:
        return {"momentum": self.momentum, "nesterov": self.nesterov, **super().hparams()}

    def _arrays(self) -> dict[str, tuple]:
        if not self.momentum:
            return {}
        return {f"{i}.momentum": (p, b) for i, (p, b) in enumerate(zip(self.params, self.buffers))}


class Adam(Optimizer):
    """Adam (bias-corrected); weight decay is coupled (``g += wd*p``) unless ``decoupled``."""

    name = "adam"
    decoupled = False

    def __init__(self, params: Iterable, lr: float = 1e-3,
                 betas: Sequence[float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, decay_bn_bias: bool = True) -> None:
        super().__init__(params, lr, weight_decay, decay_bn_bias)
        b1, b2 = (float(b) for b in betas)
        if not (0.0 <= b1 < 1.0 and 0.0 <= b2 < 1.0):
            raise ValueError(f"betas must be in [0, 1), got {tuple(betas)}")
        if eps <= 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        self.beta1, self.beta2, self.eps = b1, b2, float(eps)
        self._alloc_state()

    def _alloc_state(self) -> None:
        self.m = [backend.zeros_like(p.data) for p in self.params]
        self.v = [backend.zeros_like(p.data) for p in self.params]

    def apply_step(self) -> None:
        step = self._scalars["step"] if self.device == "cuda" else self.step_count
        for i, p, gi in self._each():
            F.adam_step(p.data, p.grad, self.m[i], self.v[i], step=step, lr=self._lr_arg(gi),
                        beta1=self.beta1, beta2=self.beta2, eps=self.eps,
                        weight_decay=self._wd(p, gi), decoupled=self.decoupled)

    def hparams(self) -> dict:
        return {"betas": [self.beta1, self.beta2], "eps": self.eps, **super().hparams()}

    def _arrays(self) -> dict[str, tuple]:
        out = {f"{i}.m": (p, m) for i, (p, m) in enumerate(zip(self.params, self.m))}
        out.update({f"{i}.v": (p, v) for i, (p, v) in enumerate(zip(self.params, self.v))})
        return out


class AdamW(Adam):
    """Adam with decoupled weight decay (``p *= 1 - lr*wd`` before the Adam update)."""

    name = "adamw"
    decoupled = True

    def __init__(self, params: Iterable, lr: float = 1e-3,
                 betas: Sequence[float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, decay_bn_bias: bool = True) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, decay_bn_bias)


OPTIMIZERS = {"sgd": SGD, "adam": Adam, "adamw": AdamW}


def create_optimizer(name: str, params: Iterable, **kwargs) -> Optimizer:
    """Build an optimizer by name (``"sgd"``, ``"adam"``, ``"adamw"``)."""
    try:
        cls = OPTIMIZERS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown optimizer {name!r}; valid: {', '.join(OPTIMIZERS)}") from None
    return cls(params, **kwargs)


# --------------------------------------------------------------------------- schedules


class Schedule:
    """Per-iteration learning-rate schedule driving ``optimizer.lr``.

    ``base_lr`` defaults to the optimizer's lr at construction. Creating the schedule sets
    the lr of step 0; call ``step()`` after each ``optimizer.step()``.
    """

    name = "schedule"

    def __init__(self, optimizer: Optimizer, base_lr: float | None = None) -> None:
        self.optimizer = optimizer
        self.base_lr = float(optimizer.lr if base_lr is None else base_lr)
        self.last_step = 0
        self.optimizer.lr = self.lr_at(0)

    def lr_at(self, step: int) -> float:
        """Learning rate for optimizer step ``step`` (0-based)."""
        raise NotImplementedError

    def step(self) -> None:
        """Advance one iteration and set the optimizer's lr for the next step."""
        self.last_step += 1
        self.optimizer.lr = self.lr_at(self.last_step)

    def state_dict(self) -> dict:
        return {"name": self.name, "step": self.last_step, "base_lr": self.base_lr}

    def load_state_dict(self, state: dict) -> None:
        if state.get("name") != self.name:
            raise ValueError(f"schedule state is for {state.get('name')!r}, not {self.name!r}")
        self.base_lr = float(state["base_lr"])
        self.last_step = int(state["step"])
        self.optimizer.lr = self.lr_at(self.last_step)


class Constant(Schedule):
    """``base_lr`` at every step."""

    name = "constant"

    def lr_at(self, step: int) -> float:
        return self.base_lr


class Piecewise(Schedule):
    """``base_lr * factors[i]`` for steps in ``[boundaries[i-1], boundaries[i])``.

    ``factors`` has one entry per boundary: from step ``boundaries[i]`` on, the lr is
    ``base_lr * factors[i]``; before the first boundary it is ``base_lr``.
    """

    name = "piecewise"

    def __init__(self, optimizer: Optimizer, boundaries: Sequence[int],
                 factors: Sequence[float], base_lr: float | None = None) -> None:
        b = [int(x) for x in boundaries]
        if len(b) != len(factors):
            raise ValueError(f"need one factor per boundary, got {len(b)} and {len(factors)}")
        if any(x < 0 for x in b) or b != sorted(b):
            raise ValueError(f"boundaries must be non-negative and increasing, got {b}")
        self.boundaries = b
        self.factors = [float(f) for f in factors]
        super().__init__(optimizer, base_lr)

    def lr_at(self, step: int) -> float:
        factor = 1.0
        for b, f in zip(self.boundaries, self.factors):
            if step >= b:
                factor = f
        return self.base_lr * factor


class MultiStep(Piecewise):
    """Multiply the lr by ``gamma`` at each milestone step (PyTorch ``MultiStepLR``)."""

    name = "multistep"

    def __init__(self, optimizer: Optimizer, milestones: Sequence[int], gamma: float = 0.1,
                 base_lr: float | None = None) -> None:
        super().__init__(optimizer, milestones,
                         [gamma ** (i + 1) for i in range(len(milestones))], base_lr)


class Cosine(Schedule):
    """Cosine decay from ``base_lr`` at step 0 to ``min_lr`` at ``total_steps``."""

    name = "cosine"

    def __init__(self, optimizer: Optimizer, total_steps: int, min_lr: float = 0.0,
                 base_lr: float | None = None) -> None:
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps}")
        self.total_steps = int(total_steps)
        self.min_lr = float(min_lr)
        super().__init__(optimizer, base_lr)

    def lr_at(self, step: int) -> float:
        t = min(step, self.total_steps) / self.total_steps
        return self.min_lr + 0.5 * (self.base_lr - self.min_lr) * (1.0 + math.cos(math.pi * t))


class LinearWarmup(Schedule):
    """Scale a wrapped schedule by ``(step + 1) / warmup_steps`` for the first steps.

    The wrapped schedule sees the absolute step (its milestones keep their meaning), so
    the lr is ``inner.lr_at(step) * min(1, (step + 1) / warmup_steps)``.
    """

    name = "warmup"

    def __init__(self, inner: Schedule, warmup_steps: int) -> None:
        if warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
        self.inner = inner
        self.warmup_steps = int(warmup_steps)
        super().__init__(inner.optimizer, inner.base_lr)

    def lr_at(self, step: int) -> float:
        lr = self.inner.lr_at(step)
        if step < self.warmup_steps:
            lr *= (step + 1) / self.warmup_steps
        return lr

    def state_dict(self) -> dict:
        return {**super().state_dict(), "inner": self.inner.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.inner.load_state_dict(state["inner"])
        super().load_state_dict(state)


class OneCycle(Schedule):
    """One-cycle policy (Smith & Topin), as PyTorch ``OneCycleLR`` with cosine annealing.

    lr rises from ``max_lr / div_factor`` to ``max_lr`` over the first ``pct_start`` of
    ``total_steps`` then anneals to ``max_lr / div_factor / final_div_factor``.
    ``base_lr`` is ``max_lr`` (the optimizer's lr by default). Momentum is not cycled.
    """

    name = "onecycle"

    def __init__(self, optimizer: Optimizer, total_steps: int, pct_start: float = 0.3,
                 div_factor: float = 25.0, final_div_factor: float = 1e4,
                 max_lr: float | None = None) -> None:
        if total_steps < 2:
            raise ValueError(f"total_steps must be >= 2, got {total_steps}")
        if not 0.0 < pct_start < 1.0:
            raise ValueError(f"pct_start must be in (0, 1), got {pct_start}")
        self.total_steps = int(total_steps)
        self.pct_start = float(pct_start)
        self.div_factor = float(div_factor)
        self.final_div_factor = float(final_div_factor)
        super().__init__(optimizer, max_lr)

    @staticmethod
    def _cos(start: float, end: float, pct: float) -> float:
        return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1.0)

    def lr_at(self, step: int) -> float:
        initial = self.base_lr / self.div_factor
        final = initial / self.final_div_factor
        up_end = float(self.pct_start * self.total_steps) - 1.0
        down_end = float(self.total_steps - 1)
        step = min(step, self.total_steps - 1)
        if step <= up_end:
            return self._cos(initial, self.base_lr, step / up_end if up_end > 0 else 1.0)
        return self._cos(self.base_lr, final, (step - up_end) / (down_end - up_end))


SCHEDULES = ("constant", "multistep", "cosine", "onecycle", "keras")


def create_schedule(name: str, optimizer: Optimizer, total_steps: int, *,
                    milestones: Sequence[float] = (0.5, 0.75), gamma: float = 0.1,
                    warmup_steps: int = 0) -> Schedule:
    """Build a schedule by name for a run of ``total_steps`` optimizer steps.

    ``milestones`` are fractions of training (for ``"multistep"``); ``"keras"`` is the
    Keras example's piecewise decay at 40/60/80/90% of training. ``warmup_steps > 0``
    wraps the result in :class:`LinearWarmup`.
    """
    total_steps = int(total_steps)
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    name = name.lower()
    if name == "constant":
        sched: Schedule = Constant(optimizer)
    elif name == "multistep":
        sched = MultiStep(optimizer, [round(f * total_steps) for f in milestones], gamma)
    elif name == "cosine":
        sched = Cosine(optimizer, total_steps)
    elif name == "onecycle":
        sched = OneCycle(optimizer, max(total_steps, 2))
    elif name == "keras":
        sched = Piecewise(optimizer, [round(f * total_steps) for f in (0.4, 0.6, 0.8, 0.9)],
                          [1e-1, 1e-2, 1e-3, 0.5e-3])
    else:
        raise ValueError(f"unknown schedule {name!r}; valid: {', '.join(SCHEDULES)}")
    return LinearWarmup(sched, warmup_steps) if warmup_steps > 0 else sched


# --------------------------------------------------------------------------- recipes


@dataclass(frozen=True)
class Recipe:
    """A published training setup: optimizer, hyper-parameters, batch size, schedule."""

    name: str
    optimizer: str
    lr: float
    batch_size: int
    schedule: str
    optimizer_kwargs: dict = field(default_factory=dict)
    description: str = ""

    def build(self, params: Iterable, total_steps: int, *, lr: float | None = None,
              optimizer: str | None = None, schedule: str | None = None,
              warmup_steps: int = 0, **optimizer_kwargs) -> tuple[Optimizer, Schedule]:
        """Optimizer and schedule for ``total_steps`` steps; keyword arguments override.

        Choosing another optimizer than the recipe's drops the recipe's optimizer settings
        and uses that optimizer's usual lr (0.1 for SGD, 1e-3 for Adam/AdamW) unless ``lr``.
        """
        opt_name = (optimizer or self.optimizer).lower()
        if opt_name not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {optimizer!r}; valid: {', '.join(OPTIMIZERS)}")
        same = opt_name == self.optimizer
        kwargs = dict(self.optimizer_kwargs) if same else {}
        kwargs.update(optimizer_kwargs)
        if lr is None:
            lr = self.lr if same else (0.1 if opt_name == "sgd" else 1e-3)
        opt = create_optimizer(opt_name, params, lr=lr, **kwargs)
        sched = create_schedule(schedule or self.schedule, opt, total_steps,
                                warmup_steps=warmup_steps)
        return opt, sched


RECIPES = {
    "he2015": Recipe(
        "he2015", "sgd", 0.1, 128, "multistep",
        {"momentum": 0.9, "weight_decay": 1e-4},
        "He et al. 2015 CIFAR: SGD 0.1, momentum 0.9, wd 1e-4, batch 128, /10 at 50% and 75%"),
    "keras": Recipe(
        "keras", "adam", 1e-3, 32, "keras",
        {"weight_decay": 2e-4, "decay_bn_bias": False},
        "Keras cifar10_resnet: Adam 1e-3, batch 32, x0.1/0.01/0.001/0.0005 at 40/60/80/90%"),
}


def get_recipe(name: str) -> Recipe:
    """Look up a recipe by name; unknown names raise ValueError listing the valid ones."""
    try:
        return RECIPES[name.lower()]
    except KeyError:
        raise ValueError(f"unknown recipe {name!r}; valid: {', '.join(RECIPES)}") from None
