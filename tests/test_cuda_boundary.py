"""The boundary rules of README "Hardening" on device arrays: every ``_cuda`` op, from the
valid calls of tests/boundary.py (the _core table; the two modules share one op surface),
moved to the device.

- overlap: every output (``out=``, ``*_out``, buffers written in place) against every other
  device array argument, the same array or a view shifted either way into one allocation:
  the documented in-place uses (IN_PLACE) give exactly the separate arrays' result, every
  other overlap is a ValueError naming both arguments, the output first (as _core);
- memory: an output larger than the device memory is a MemoryError naming it, raised before
  the allocator is asked; a cudaMalloc that still fails (after the cache was given back) is a
  MemoryError naming the array.
"""
from __future__ import annotations

import re

import boundary as B
import numpy as np
import pytest
from cudatest import cuda_module_or_skip
from errors import raises_arg
from resnet_cpp import _core

_cuda = cuda_module_or_skip()

# The in-place uses README "Hardening" documents (op, output, input): the output may be the
# input itself (never a shifted or partial view of it).
IN_PLACE = {
    ("relu_forward", "out", "x"),
    ("relu_backward", "out", "dy"), ("relu_backward", "out", "y"),
    ("add_relu_backward", "out", "dy"), ("add_relu_backward", "out", "y"),
    ("add_forward", "out", "a"), ("add_forward", "out", "b"),
    ("add_relu_forward", "out", "a"), ("add_relu_forward", "out", "b"),
    ("batch_norm_forward_train", "out", "x"), ("batch_norm_forward_train", "out", "residual"),
    ("batch_norm_forward_eval", "out", "x"), ("batch_norm_forward_eval", "out", "residual"),
    ("batch_norm_backward", "out", "dy"), ("batch_norm_backward", "out", "x"),
    ("softmax_cross_entropy", "dlogits_out", "logits"),
}

# Optional outputs the _core table leaves out, passed here so that they are checked too:
# name -> shape, from the call's arguments.
_PER_CHANNEL = lambda a: (a["x"].shape[-1],)
EXTRA_OUTPUTS = {
    "batch_norm_forward_train": {"mean_out": _PER_CHANNEL, "rstd_out": _PER_CHANNEL},
    "batch_norm_forward_eval": {"mean_out": _PER_CHANNEL, "rstd_out": _PER_CHANNEL},
    "batch_norm_backward": {"dgamma_out": _PER_CHANNEL, "dbeta_out": _PER_CHANNEL},
    "softmax_cross_entropy": {"loss_out": lambda a: ()},
}


def _full_pick(seed: int) -> B.Pick:
    """Seeded sizes, every flag on: all optional outputs and inputs are present."""
    g = np.random.default_rng(seed)
    return lambda name, lo, hi: hi if (lo, hi) == (0, 1) else int(g.integers(lo, hi + 1))


def _device_case(builder, device_scalars: bool = False):
    """(op name, host arguments, outputs, huge) of a _core case whose op _cuda has;
    device_scalars: lr and Adam's step as one-element arrays (read on the device)."""
    c = builder(_full_pick(3), np.random.default_rng(3))
    op = c.name.removeprefix("_core.")
    if not hasattr(_cuda, op):
        return None
    args = dict(c.args)
    for name, shape in EXTRA_OUTPUTS.get(op, {}).items():
        args[name] = B.empty(*shape(args))
    if device_scalars:
        args["lr"] = np.array([args["lr"]], np.float32)
        if "step" in args:
            args["step"] = np.array([args["step"]], np.int64)
    outs = [o for o in (*c.writes, *EXTRA_OUTPUTS.get(op, {})) if args.get(o) is not None]
    return op, args, outs, c.huge


CASES = [d for b in B.CORE for d in [_device_case(b)] if d] + \
        [_device_case(b, device_scalars=True) for b in (B.core_sgd_step, B.core_adam_step)]


def test_every_cuda_op_has_a_case():
    """The ops both modules have (cpp/bindings/ops.h; each has an output or writes in place)."""
    ops = {n for n in dir(_cuda) if not n.startswith("_") and hasattr(_core, n)}
    assert ops == {op for op, *_ in CASES}


# ---------------------------------------------------------------------------- aliasing


def _to_device(args: dict) -> dict:
    return {k: _cuda.DeviceArray.from_numpy(v) if isinstance(v, np.ndarray) else v
            for k, v in args.items()}


class _View:
    """__cuda_array_interface__ of `nbytes` at byte `offset` into a device allocation."""

    def __init__(self, buf, offset: int, like: np.ndarray):
        self.buf = buf  # kept alive by the DeviceArray that wraps this object
        self.__cuda_array_interface__ = {
            "shape": like.shape, "typestr": like.dtype.str, "data": (buf.ptr + offset, False),
            "strides": None, "version": 3}


def _shift(out: np.ndarray, inp: np.ndarray, mode: str) -> int:
    """Bytes between the two views' starts: at most 8, aligned for both dtypes, and less than
    the size of the one placed first, so that they overlap."""
    align = max(out.itemsize, inp.itemsize)
    first = inp if mode == "after" else out
    return min(8, (first.nbytes - 1) // align * align)


def _overlapping(out: np.ndarray, inp: np.ndarray, mode: str):
    """(out, inp) as device arrays: inp with its values, out either inp itself ("same") or a
    view `_shift` bytes after ("after") or before ("before") it in one allocation."""
    if mode == "same":
        d = _cuda.DeviceArray.from_numpy(inp)
        return d, d
    s = _shift(out, inp, mode)
    buf = _cuda.DeviceArray.zeros(((out.nbytes + inp.nbytes + 16) // 4,), np.float32)
    o0, i0 = (s, 0) if mode == "after" else (0, s)
    new_in = _cuda.DeviceArray(_View(buf, i0, inp))
    new_in.copy_from_numpy(inp.copy())
    return _cuda.DeviceArray(_View(buf, o0, out)), new_in


def _alias_params():
    for op, args, outs, _ in CASES:
        lr = "-device-lr" if isinstance(args.get("lr"), np.ndarray) else ""
        for o in outs:
            for i in [k for k, v in args.items() if isinstance(v, np.ndarray) and k != o]:
                same = args[o].shape == args[i].shape and args[o].dtype == args[i].dtype
                for mode in (["same"] if same else []) + ["after", "before"]:
                    if mode != "same" and _shift(args[o], args[i], mode) == 0 and \
                            args[o].nbytes == args[i].nbytes:
                        continue  # both one element: only "same" can overlap them
                    yield pytest.param(op, args, outs, o, i, mode, id=f"{op}{lr}-{o}-{i}-{mode}")


def _results(op: str, args: dict, outs: list) -> list:
    """What the call returns and what it leaves in its outputs, on the host."""
    r = getattr(_cuda, op)(**args)
    flat = list(r) if isinstance(r, tuple) else [r]
    flat += [args[o] for o in outs]
    return [None if v is None else v.to_numpy() if isinstance(v, _cuda.DeviceArray)
            else np.asarray(v) for v in flat]


@pytest.mark.parametrize("op,args,outs,out,inp,mode", _alias_params())
def test_overlapping_output_is_refused_or_in_place(op, args, outs, out, inp, mode):
    base = _results(op, _to_device(args), outs)
    dev = _to_device(args)
    dev[out], dev[inp] = _overlapping(args[out], args[inp], mode)
    if (op, out, inp) in IN_PLACE and mode == "same":
        got = _results(op, dev, outs)
        for g, b in zip(got, base):
            assert (g is None and b is None) or np.array_equal(g, b, equal_nan=True), \
                f"{op}: {out}={inp} in place gives a different result"
        return
    # Names both, the output first (of two outputs, the one whose check runs first).
    pairs = [(out, inp)] + ([(inp, out)] if inp in outs else [])
    with pytest.raises(ValueError) as e:
        _results(op, dev, outs)
    assert any(re.match(rf"{a}: must not share memory with {b}(?!\w)", str(e.value))
               for a, b in pairs), e.value


def test_in_place_calls_work_on_the_device(rng):
    """The documented in-place uses, as the training loop makes them."""
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    d = _cuda.DeviceArray.from_numpy(x)
    assert _cuda.relu_forward(d, out=d) is d
    assert np.array_equal(d.to_numpy(), np.maximum(x, 0))
    z = rng.standard_normal((4, 7)).astype(np.float32)
    labels = _cuda.DeviceArray.from_numpy(np.array([1, 2, 3, 6], np.int64))
    loss, g = _cuda.softmax_cross_entropy(_cuda.DeviceArray.from_numpy(z), labels)
    zz = _cuda.DeviceArray.from_numpy(z)
    loss2, g2 = _cuda.softmax_cross_entropy(zz, labels, dlogits_out=zz)
    assert g2 is zz and float(loss2) == float(loss) and np.array_equal(g2.to_numpy(), g.to_numpy())


# ---------------------------------------------------------------------------- memory


@pytest.mark.parametrize("op,overrides,output", [(op, *huge) for op, _, _, huge in CASES if huge],
                         ids=lambda v: v if isinstance(v, str) else "")
def test_output_larger_than_device_memory_is_a_named_memory_error(op, overrides, output):
    args = next(a for o, a, *_ in CASES if o == op)
    args = _to_device({**args, **overrides})
    before = _cuda.allocator_stats()["requests"]
    with pytest.raises(MemoryError, match=rf"^{output}: an array of shape \(.*\) needs "
                                          r"[\d.]+ [KMGTPE]iB, more than the "):
        getattr(_cuda, op)(**args)
    assert _cuda.allocator_stats()["requests"] == before  # refused before allocating


def test_device_array_larger_than_device_memory_is_a_memory_error():
    _, total = _cuda.mem_info()
    with raises_arg(MemoryError, "shape"):
        _cuda.DeviceArray.empty((total // 4 + 1, 1024), np.float32)


@pytest.mark.skipif(_cuda.cuda_architectures != "emulated",
                    reason="needs the emulator's RESNET_CPP_EMU_MALLOC_LIMIT")
def test_failed_device_allocation_is_a_named_memory_error(monkeypatch):
    """cudaMalloc fails although the memory looked free: the cache is given back, the
    allocation retried, and the error names the array."""
    _cuda.empty_cache()
    x = _cuda.DeviceArray.zeros((64, 1024), np.float32)  # 256 KiB
    del_me = _cuda.DeviceArray.empty((3, 1024), np.float32)
    del del_me  # a cached block
    assert _cuda.allocator_stats()["cached_bytes"] > 0
    monkeypatch.setenv("RESNET_CPP_EMU_MALLOC_LIMIT", str(64 << 10))
    with pytest.raises(MemoryError, match=r"^out: allocating an array of shape \(64, 1024\) "
                                          r"failed \(out of device memory\)"):
        _cuda.relu_forward(x)
    assert _cuda.allocator_stats()["cached_bytes"] == 0  # given back before the retry
