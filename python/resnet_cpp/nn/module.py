"""Parameter, Module and Sequential: a PyTorch-shaped module system without autograd.

Every module computes its own gradient: ``forward(x)`` stores what ``backward`` needs,
``backward(dy)`` returns ``dx`` and OVERWRITES the ``.grad`` of each parameter it owns.
Children, parameters and buffers are registered by attribute assignment, as in PyTorch,
so names (``layer1.0.conv1.weight``) and ``state_dict`` keys match torchvision's.

Activation buffers: layers write their outputs into per-layer arrays kept between calls
(one per output shape), so a training step allocates almost nothing. The price: an
output is overwritten by the next forward of the same layer with the same shape; copy
it if you keep it. Models return freshly allocated logits, so that case is rare.
Gradients are not kept between steps: a backward returns fresh arrays or, where the caller
says so (``out=dy``, ``overwrite_forward``), reuses arrays that are spent.

Devices: ``module.to("cuda")`` moves every parameter and float buffer to the GPU as
``resnet_cpp.cuda.DeviceArray``s in the kernels' layout (conv weights (R, S, C, K)), and the
activation buffers follow; ``module.to("cpu")`` moves them back. ``state_dict()`` always
returns NumPy arrays in PyTorch's layout, so checkpoints do not depend on the device.
"""
from __future__ import annotations

from collections import OrderedDict, namedtuple
from typing import Iterator

import numpy as np

from .. import backend

__all__ = ["Parameter", "Module", "Sequential", "IncompatibleKeys"]

# Distinct output shapes a layer keeps buffers for (train batch, last batch, eval batch, ...).
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
    ``grad`` (same shape, zero at creation) is overwritten by the owning module's
    ``backward``. ``decay`` says whether weight decay applies (conv/linear weights) or not
    (biases, BN gamma/beta). ``layout="RSCK"`` marks a conv weight: on the device its data,
    grad and optimizer state are (R, S, C, K), the kernels' layout; on the host (K, C, R, S).
    ``requires_grad=False`` freezes it: models skip the backward of a frozen prefix and
    ``resnet_cpp.train`` leaves it out of the optimizer.
    """

    __slots__ = ("data", "grad", "decay", "layout", "requires_grad")

    def __init__(self, data, decay: bool = True, layout: str | None = None):
        self.data = _canonical(np.array(data, dtype=np.float32, order="C", copy=True))
        self.grad = np.zeros(self.data.shape, np.float32)
        self.decay = bool(decay)
        self.layout = layout
        self.requires_grad = True

    @classmethod
    def zeros(cls, shape, decay: bool = True, layout: str | None = None) -> Parameter:
        """A zero-filled float32 parameter (no copy; layers fill it in place)."""
        p = cls.__new__(cls)
        p.data = np.zeros(shape, np.float32)
        p.grad = np.zeros(shape, np.float32)
        p.decay = bool(decay)
        p.layout = layout
        p.requires_grad = True
        return p

    def __getstate__(self):
        return {"data": self.data, "grad": self.grad, "decay": self.decay, "layout": self.layout,
                "requires_grad": self.requires_grad}

    def __setstate__(self, state) -> None:
        self.data = _canonical(state["data"])
        self.grad = _canonical(state["grad"])
        self.decay = state["decay"]
        self.requires_grad = state.get("requires_grad", True)
        self.layout = state.get("layout")

    @property
    def device(self) -> str:
        return backend.device_of(self.data)

    def to(self, device: str) -> Parameter:
        """Move data to ``device`` ("cpu" or "cuda") in its layout there; grad restarts at 0."""
        device = backend.parse_device(device)
        if device != self.device:
            self.data = self.to_device(self.host(), device)
            self.grad = backend.zeros_like(self.data)
        return self

    def host(self, a=None) -> np.ndarray:
        """A NumPy copy, in the host layout, of ``a`` (default: data): an array shaped like
        data on either device (grad, an optimizer buffer)."""
        return backend.to_host(self.data if a is None else a, self.layout)

    def to_device(self, a: np.ndarray, device: str):
        """A new array on ``device`` holding host-layout ``a`` in this parameter's layout there."""
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


class Module:
    """Base class: register children/parameters by attribute, buffers by ``register_buffer``.

    Subclasses implement ``forward`` and ``backward`` and must call ``super().__init__()``
    before assigning attributes.
    """

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_scratch", {})
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
        return self.forward(*args, **kwargs)

    def _buffer(self, tag: str, shape: tuple, dtype=np.float32, zero: bool = False) -> np.ndarray:
        """A scratch array owned by this module on its device, reused by every call with the
        same shape.

        Contents are undefined (kernels overwrite them) unless ``zero``: zero-filled once
        when first created.
        """
        key = (tag, tuple(shape), np.dtype(dtype).str)
        buf = self._scratch.get(key)
        if buf is None:
            if len(self._scratch) >= _MAX_SCRATCH:
                del self._scratch[next(iter(self._scratch))]  # oldest shape
            make = backend.zeros if zero else backend.empty
            buf = make(shape, dtype, self._device)
            self._scratch[key] = buf
        return buf

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
        for p in self.parameters():
            backend.zero_(p.grad)

    # -- devices -------------------------------------------------------------------------
    @property
    def device(self) -> str:
        """"cpu" or "cuda": where this module's parameters, buffers and activations live."""
        return self._device

    def to(self, device: str) -> Module:
        """Move every parameter and float buffer (this module's and its descendants') to
        ``device``, "cpu" or "cuda" (ValueError otherwise; RuntimeError saying why when CUDA
        cannot be used). Gradients restart at zero; activation buffers and forward caches
        are dropped. Returns self. Optimizers built before the move need ``opt.to(device)``.
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
            object.__setattr__(m, "_scratch", {})
            if "_cache" in m.__dict__:
                object.__setattr__(m, "_cache", None)
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
        state["_scratch"] = {}
        if "_cache" in state:
            state["_cache"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        for name in state["_buffers"]:
            buf = _canonical(state[name])
            state[name] = state["_buffers"][name] = buf
        self.__dict__.update(state)

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
