"""Parameter, Module and Sequential: a PyTorch-shaped module system without autograd.

Every module computes its own gradient: ``forward(x)`` stores what ``backward`` needs,
``backward(dy)`` returns ``dx`` and ADDS each parameter's gradient into its ``.grad``, as
PyTorch does: call ``zero_grad()`` (the model's or the optimizer's) before each step's
backward, and gradients of several backward passes in between (micro-batches) sum up.
Children, parameters and buffers are registered by attribute assignment, as in PyTorch,
so names (``layer1.0.conv1.weight``) and ``state_dict`` keys match torchvision's.

The forward/backward contract:

- A forward keeps its cache until its backward consumes it: one backward per forward
  (a second raises RuntimeError, as does a backward with no forward).
- A module may be called several times in one forward (shared weights): each call gets
  its own output arrays and cache, backward calls come in the reverse order of the forward
  calls, and the gradients of the calls add up.
- A top-level call (a module called from outside any module's forward) starts a new
  graph: the caches of earlier top-level calls are dropped, so a forward without a
  backward (evaluation, BN recalibration) leaks nothing, and a backward belongs to the
  latest top-level forward.
- Threads: activation buffers and caches are per thread, so several threads may call one
  model at once (inference in eval mode runs in parallel: the kernels release the GIL);
  a backward runs in the thread of its forward. Parameters, their gradients and BN
  running statistics are shared: training steps of one model must not run in several
  threads at once.

Activation buffers: layers write their outputs into per-layer arrays kept between calls
(one per output shape and call), so a training step allocates almost nothing. The price:
an output is overwritten by the next top-level forward of the same layer with the same
shape; copy it if you keep it. Models return freshly allocated logits, so that case is rare.
A backward returns fresh arrays or, where the caller says so (``out=dy``,
``overwrite_forward``, ``out=layer.saved_input()``), reuses arrays that are spent.

Devices and layouts: conv weights (``Parameter.layout == "RSCK"``) are stored in the
kernels' order (R, S, C, K) on every device, their gradients and optimizer state too;
``state_dict()``, ``load_state_dict()``, ``Parameter.host()`` and ``Parameter.copy_()``
speak PyTorch's (K, C, R, S). ``module.to("cuda")`` moves every parameter and float buffer
to the GPU as ``resnet_cpp.cuda.DeviceArray``s, and the activation buffers follow;
``module.to("cpu")`` moves them back. Checkpoints do not depend on the device.
"""
from __future__ import annotations

import threading
from collections import OrderedDict, namedtuple
from typing import Iterator

import numpy as np

from .. import backend
from .. import functional as F

__all__ = ["Parameter", "Module", "Sequential", "IncompatibleKeys"]

# Distinct output shapes (and calls) a layer keeps buffers for (train batch, last batch,
# eval batch, ...).
_MAX_SCRATCH = 8

IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


def _canonical(a: np.ndarray) -> np.ndarray:
    """The same memory viewed with NumPy's builtin dtype object.

    Unpickling gives arrays an equal but distinct dtype instance, which the C++ bindings
    (they compare dtype identity) reject as "expected float32, got float32".
    """
    return a.view(a.dtype.type) if a.dtype.isnative else a


class Parameter:
    """A trainable float32 array and its gradient.

    ``data`` is updated in place by optimizers and never rebound (except by ``to()``);
    ``grad`` (same shape, zero at creation) is where backward passes add their gradient.
    ``decay`` says whether weight decay applies (conv/linear weights) or not (biases, BN
    gamma/beta). ``layout="RSCK"`` marks a conv weight: its data, grad and optimizer state
    are stored (R, S, C, K), the kernels' order, on every device, while ``shape``,
    ``host()``, ``copy_()`` and state_dicts use PyTorch's (K, C, R, S).
    ``requires_grad=False`` freezes it: models skip the backward of a frozen prefix and
    ``resnet_cpp.train`` leaves it out of the optimizer.
    """

    __slots__ = ("_grad", "_grad_zero", "data", "decay", "layout", "requires_grad")

    def __init__(self, data, decay: bool = True, layout: str | None = None):
        """``data``: an array-like in the host layout (copied, stored in ``layout``)."""
        host = np.asarray(data, dtype=np.float32)
        self.data = _canonical(backend.to_device(host, "cpu", layout))
        self._init(decay, layout)

    def _init(self, decay: bool, layout: str | None) -> None:
        self.grad = np.zeros(self.data.shape, np.float32)
        self._grad_zero = True
        self.decay = bool(decay)
        self.layout = layout
        self.requires_grad = True

    @classmethod
    def zeros(cls, shape, decay: bool = True, layout: str | None = None) -> Parameter:
        """A zero-filled float32 parameter of host shape ``shape`` (layers fill it in place)."""
        p = cls.__new__(cls)
        p.data = np.zeros(backend.stored_shape(shape, layout), np.float32)
        p._init(decay, layout)
        return p

    @property
    def grad(self):
        """The gradient, shaped like ``data``; backward passes add into it."""
        return self._grad

    @grad.setter
    def grad(self, value) -> None:
        self._grad = value
        self._grad_zero = False  # contents unknown: the next backward adds to them

    def zero_grad(self) -> None:
        """Set the gradient to zero in place (the next backward then writes it directly)."""
        backend.zero_(self._grad)
        self._grad_zero = True

    def __getstate__(self):
        return {"data": self.data, "grad": self._grad, "decay": self.decay,
                "layout": self.layout, "requires_grad": self.requires_grad,
                "grad_zero": self._grad_zero}

    def __setstate__(self, state) -> None:
        self.data = _canonical(state["data"])
        self._grad = _canonical(state["grad"])
        self._grad_zero = state.get("grad_zero", False)
        self.decay = state["decay"]
        self.requires_grad = state.get("requires_grad", True)
        self.layout = state.get("layout")

    @property
    def device(self) -> str:
        return backend.device_of(self.data)

    def to(self, device: str) -> Parameter:
        """Move data to ``device`` ("cpu" or "cuda"); grad restarts at 0."""
        device = backend.parse_device(device)
        if device != self.device:
            self.data = self.to_device(self.host(), device)
            self._grad = backend.zeros_like(self.data)
            self._grad_zero = True
        return self

    def host(self, a=None) -> np.ndarray:
        """A NumPy copy, in the host layout, of ``a`` (default: data): an array stored like
        data on either device (grad, an optimizer buffer)."""
        return backend.to_host(self.data if a is None else a, self.layout)

    def copy_(self, a) -> Parameter:
        """Copy the host-layout array ``a`` (shape ``self.shape``) into data, in place."""
        a = np.asarray(a)
        if a.shape != self.shape:
            raise ValueError(f"a: expected shape {self.shape}, got {a.shape}")
        backend.copy_from_host(self.data, a, self.layout)
        return self

    def to_device(self, a: np.ndarray, device: str):
        """A new array on ``device`` holding host-layout ``a`` stored like this parameter."""
        return backend.to_device(a, device, self.layout)

    @property
    def shape(self) -> tuple:
        """The host shape ((K, C, R, S) for a conv weight, on either device)."""
        return backend.host_shape(self.data, self.layout)

    @property
    def size(self) -> int:
        return self.data.size

    def __repr__(self) -> str:
        frozen = "" if self.requires_grad else ", requires_grad=False"
        return f"Parameter(shape={self.shape}, decay={self.decay}, device={self.device!r}{frozen})"


class _ThreadCalls(threading.local):
    """This thread's module calls: nesting depth, and how many top-level calls so far."""

    depth = 0
    generation = 0


_calls = _ThreadCalls()


class _CallState:
    """One module's forward state in one thread."""

    __slots__ = ("count", "generation", "index", "pending", "scratch")

    def __init__(self) -> None:
        self.generation = -1  # the top-level call the fields below belong to
        self.count = 0        # calls of this module in that top-level call
        self.index = 0        # the running call's number: its buffers are its own
        self.pending: list = []  # caches not yet consumed by a backward, oldest first
        self.scratch: dict = {}  # (tag, shape, dtype, call index) -> array

    def sync(self) -> None:
        """Drop the caches of earlier top-level calls."""
        if self.generation != _calls.generation:
            self.generation, self.count = _calls.generation, 0
            self.pending.clear()


class Module:
    """Base class: register children/parameters by attribute, buffers by ``register_buffer``.

    Subclasses implement ``forward`` and ``backward`` and must call ``super().__init__()``
    before assigning attributes.
    """

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_local", threading.local())
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_device", "cpu")

    # -- registration ------------------------------------------------------------------
    def __setattr__(self, name: str, value) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError(
                f"{type(self).__name__}: call super().__init__() before assigning attributes")
        params, bufs, mods = self._parameters, self._buffers, self._modules
        if isinstance(value, Parameter):
            mods.pop(name, None)
            bufs.pop(name, None)
            params[name] = value
        elif isinstance(value, Module):
            params.pop(name, None)
            bufs.pop(name, None)
            mods[name] = value
        elif name in bufs:
            if not backend.is_array(value):
                raise TypeError(f"buffer {name!r} must stay an array (NumPy or DeviceArray)")
            bufs[name] = value
        else:
            params.pop(name, None)
            mods.pop(name, None)
        object.__setattr__(self, name, value)

    def register_buffer(self, name: str, value: np.ndarray) -> None:
        """Register a non-trainable array saved in ``state_dict`` (e.g. BN running stats).
        Float buffers move with ``to()``; integer ones (counters) stay on the host."""
        if not backend.is_array(value):
            raise TypeError(f"buffer {name!r} must be a numpy array, got {type(value).__name__}")
        self._buffers[name] = value
        object.__setattr__(self, name, value)

    def add_module(self, name: str, module: Module) -> None:
        setattr(self, name, module)

    # -- forward / backward --------------------------------------------------------------
    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__}.forward")

    def backward(self, dy):
        raise NotImplementedError(f"{type(self).__name__}.backward")

    def __call__(self, *args, **kwargs):
        """forward(), numbered: a top-level call starts a new graph, and each call of this
        module within one gets its own buffers (see the module doc)."""
        calls = _calls
        depth = calls.depth
        if depth == 0:
            calls.generation += 1
        st = self._state()
        st.sync()
        st.index = st.count
        st.count += 1
        calls.depth = depth + 1
        try:
            return self.forward(*args, **kwargs)
        finally:
            calls.depth = depth

    def _state(self) -> _CallState:
        """This module's forward state in the calling thread."""
        try:
            return self._local.state
        except AttributeError:
            st = self._local.state = _CallState()
            return st

    def _save(self, cache) -> None:
        """Keep a forward's cache for its backward (the latest call's is consumed first)."""
        st = self._state()
        if _calls.depth == 0:  # forward() called directly, not through __call__: a new graph
            st.generation = -1
        st.sync()
        st.pending.append(cache)

    def _saved(self):
        """The cache the next backward consumes (its forward's), without consuming it."""
        pending = self._state().pending
        if not pending:
            raise RuntimeError(
                f"{type(self).__name__}.backward: no forward left to backpropagate through: "
                "each forward allows one backward (run the forward again for another)")
        return pending[-1]

    def _consume(self) -> None:
        """A backward is done with the latest cache: drop it."""
        self._state().pending.pop()

    def _buffer(self, tag: str, shape: tuple, dtype=np.float32, zero: bool = False) -> np.ndarray:
        """A scratch array owned by this module (in this thread, for this call of it within
        a forward) on its device, reused by every such call with the same shape.

        Contents are undefined (kernels overwrite them) unless ``zero``: zero-filled once
        when first created.
        """
        st = self._state()
        key = (tag, tuple(shape), np.dtype(dtype).str, st.index)
        buf = st.scratch.get(key)
        if buf is None:
            if len(st.scratch) >= _MAX_SCRATCH:
                del st.scratch[next(iter(st.scratch))]  # oldest shape
            make = backend.zeros if zero else backend.empty
            buf = make(shape, dtype, self._device)
            st.scratch[key] = buf
        return buf

    def _grad_out(self, name: str):
        """Where a backward writes the gradient of parameter ``name`` (None if absent): its
        .grad itself while that is zero (after zero_grad, writing equals adding), else a
        scratch array that :meth:`_add_grads` adds in."""
        p = self._parameters.get(name)
        if p is None:
            return None
        return p.grad if p._grad_zero else self._buffer("d" + name, p.data.shape)

    def _add_grads(self, **written) -> None:
        """Complete what :meth:`_grad_out` started: ``name=array`` for each gradient written."""
        for name, g in written.items():
            p = self._parameters.get(name)
            if p is None:
                continue
            if g is not p.grad:
                F.add(p.grad, g, out=p.grad)
            p._grad_zero = False

    # -- traversal -----------------------------------------------------------------------
    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        """This module and every descendant, pre-order, with dotted names."""
        yield prefix, self
        for name, child in self._modules.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self) -> list[Module]:
        return [m for _, m in self.named_modules()]

    def children(self) -> list[Module]:
        return list(self._modules.values())

    def named_parameters(self) -> list[tuple[str, Parameter]]:
        """``(name, Parameter)`` pairs in a fixed order (the ``state_dict`` order)."""
        return [(f"{p}.{n}" if p else n, v)
                for p, m in self.named_modules() for n, v in m._parameters.items()]

    def parameters(self) -> list[Parameter]:
        return [v for _, v in self.named_parameters()]

    def named_buffers(self) -> list[tuple[str, np.ndarray]]:
        """``(name, array)`` for running_mean/var (float32) and num_batches_tracked (int64 0-d)."""
        return [(f"{p}.{n}" if p else n, v)
                for p, m in self.named_modules() for n, v in m._buffers.items()]

    def num_parameters(self) -> int:
        """Total number of trainable scalars."""
        return sum(p.size for p in self.parameters())

    # -- modes and gradients -----------------------------------------------------------
    def train(self, mode: bool = True) -> Module:
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self) -> Module:
        return self.train(False)

    def zero_grad(self) -> None:
        """Zero every parameter's gradient (backward passes add into them)."""
        for p in self.parameters():
            p.zero_grad()

    # -- devices -------------------------------------------------------------------------
    @property
    def device(self) -> str:
        """"cpu" or "cuda": where this module's parameters, buffers and activations live."""
        return self._device

    def to(self, device: str) -> Module:
        """Move every parameter and float buffer (this module's and its descendants') to
        ``device``, "cpu" or "cuda" (ValueError otherwise; RuntimeError saying why when CUDA
        cannot be used). Gradients restart at zero; activation buffers and forward caches
        are dropped (in every thread). Returns self. Optimizers built before the move need
        ``opt.to(device)``.
        """
        device = backend.parse_device(device)
        if device == "cuda":
            backend.require_cuda()
        for m in self.modules():
            for p in m._parameters.values():
                if p is not None:
                    p.to(device)
            for name, buf in list(m._buffers.items()):
                if buf.dtype == np.float32 and backend.device_of(buf) != device:
                    moved = backend.to_device(backend.to_host(buf), device)
                    m._buffers[name] = moved
                    object.__setattr__(m, name, moved)
            object.__setattr__(m, "_local", threading.local())
            object.__setattr__(m, "_device", device)
        return self

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        """Freeze (False) or unfreeze every parameter of this module, as in PyTorch."""
        for p in self.parameters():
            p.requires_grad = bool(requires_grad)
        return self

    # -- checkpoints ---------------------------------------------------------------------
    def _state_entries(self) -> list[tuple[str, np.ndarray, str | None]]:
        """(key, array, layout) in PyTorch's state_dict order: per module, parameters then
        buffers; layout is a parameter's device layout (None for buffers)."""
        out = []
        for p, m in self.named_modules():
            for n, v in m._parameters.items():
                out.append((f"{p}.{n}" if p else n, v.data, v.layout))
            for n, v in m._buffers.items():
                out.append((f"{p}.{n}" if p else n, v, None))
        return out

    def state_dict(self) -> OrderedDict:
        """NumPy copies of every parameter and buffer in PyTorch's layout, on any device,
        keyed like torchvision (``bn1.running_mean``)."""
        return OrderedDict((k, backend.to_host(v, layout)) for k, v, layout in self._state_entries())

    def load_state_dict(self, state_dict, strict: bool = True) -> IncompatibleKeys:
        """Copy arrays from ``state_dict`` into this module's parameters and buffers in place.

        Values may be any array-likes (a PyTorch state_dict converted with ``.numpy()``
        loads as is). A missing ``num_batches_tracked`` is tolerated (older PyTorch
        checkpoints lack it). With ``strict`` other missing or unexpected keys raise
        KeyError naming them; a shape mismatch always raises ValueError. Nothing is
        modified unless every check passes. Returns ``(missing_keys, unexpected_keys)``.
        """
        own = OrderedDict((k, (v, layout)) for k, v, layout in self._state_entries())
        missing = [k for k in own if k not in state_dict
                   and not k.endswith("num_batches_tracked")]
        unexpected = [k for k in state_dict if k not in own]
        if strict and (missing or unexpected):
            parts = []
            if missing:
                parts.append(f"missing keys: {missing}")
            if unexpected:
                parts.append(f"unexpected keys: {unexpected}")
            raise KeyError(f"load_state_dict for {type(self).__name__}: " + "; ".join(parts))
        staged = []
        errors = []
        for k, (dst, layout) in own.items():
            if k not in state_dict:
                continue
            src = np.asarray(state_dict[k])
            shape = backend.host_shape(dst, layout)
            if src.dtype.kind not in "fiub":
                errors.append(f"{k}: dtype {src.dtype} is not numeric")
            elif src.shape != shape and not (dst.ndim == 0 and src.size == 1):
                errors.append(f"{k}: checkpoint shape {src.shape} != model shape {shape}")
            elif dst.dtype.kind in "iu" and src.dtype.kind == "f" \
                    and not np.all(src == np.round(src)):
                errors.append(f"{k}: expected integer values, got {src}")
            else:
                staged.append((dst, src.reshape(shape), layout))
        if errors:
            raise ValueError(f"load_state_dict for {type(self).__name__}: " + "; ".join(errors))
        for dst, src, layout in staged:
            backend.copy_from_host(dst, src, layout)
        return IncompatibleKeys(missing, unexpected)

    def __getstate__(self) -> dict:
        """Pickle/deepcopy without activation buffers or forward caches (rebuilt on use)."""
        state = self.__dict__.copy()
        del state["_local"]
        return state

    def __setstate__(self, state: dict) -> None:
        for name in state["_buffers"]:
            buf = _canonical(state[name])
            state[name] = state["_buffers"][name] = buf
        self.__dict__.update(state)
        object.__setattr__(self, "_local", threading.local())

    # -- printing ------------------------------------------------------------------------
    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        for name, child in self._modules.items():
            body = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {body}")
        return "\n".join(lines) + (")" if len(lines) == 1 else "\n)")


class Sequential(Module):
    """Children ``0, 1, ...`` applied in order; backward runs them in reverse."""

    def __init__(self, *modules: Module):
        super().__init__()
        for i, m in enumerate(modules):
            self.add_module(str(i), m)

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, i: int) -> Module:
        return list(self._modules.values())[i]

    def forward(self, x):
        for m in self._modules.values():
            x = m(x)
        return x

    def backward(self, dy):
        for m in reversed(list(self._modules.values())):
            dy = m.backward(dy)
        return dy
