"""SGD and Adam/AdamW updates vs tests/reference.py over several steps."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from errors import raises_arg
import reference as ref
from resnet_cpp import _core
from resnet_cpp import functional as F
from tolerance import FORWARD, assert_close

# Odd sizes and shapes: 1-d bias, a conv weight, and one big enough for the threaded path.
SHAPES = [(5,), (3, 17), (16, 3, 3, 3), (300, 257)]

SGD_CASES = [
    dict(lr=0.1, momentum=0.0, weight_decay=0.0, nesterov=False),
    dict(lr=0.1, momentum=0.0, weight_decay=5e-4, nesterov=False),
    dict(lr=0.05, momentum=0.9, weight_decay=0.0, nesterov=False),
    dict(lr=0.05, momentum=0.9, weight_decay=1e-2, nesterov=False),
    dict(lr=0.05, momentum=0.9, weight_decay=1e-2, nesterov=True),
]

ADAM_CASES = [
    dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, decoupled=False),
    dict(lr=1e-2, beta1=0.8, beta2=0.99, eps=1e-6, weight_decay=1e-2, decoupled=False),
    dict(lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.1, decoupled=True),
]


@pytest.mark.impls("sgd_step")
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("case", SGD_CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_sgd_steps(impl_threads, rng, shape, case):
    p = rng.standard_normal(shape).astype(np.float32)
    buf = np.zeros(shape, np.float32) if case["momentum"] > 0 else None
    rp = p.astype(np.float64)
    rbuf = np.zeros(shape) if buf is not None else None
    for _ in range(5):
        g = rng.standard_normal(shape).astype(np.float32)
        F.sgd_step(p, g, buf, **case)
        rp, rbuf = ref.sgd_step(rp, g, rbuf, case["lr"], case["momentum"], case["weight_decay"],
                                case["nesterov"])
    assert_close(p, rp, **FORWARD, name="param")
    if buf is not None:
        assert_close(buf, rbuf, **FORWARD, name="momentum_buf")


@pytest.mark.impls("adam_step")
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("case", ADAM_CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_adam_steps(impl_threads, rng, shape, case):
    p = rng.standard_normal(shape).astype(np.float32)
    m = np.zeros(shape, np.float32)
    v = np.zeros(shape, np.float32)
    rp, rm, rv = p.astype(np.float64), np.zeros(shape), np.zeros(shape)
    for step in range(1, 6):
        g = rng.standard_normal(shape).astype(np.float32)
        F.adam_step(p, g, m, v, step=step, **case)
        rp, rm, rv = ref.adam_step(rp, g, rm, rv, step, case["lr"], case["beta1"], case["beta2"],
                                   case["eps"], case["weight_decay"], case["decoupled"])
    assert_close(p, rp, **FORWARD, name="param")
    assert_close(m, rm, **FORWARD, name="m")
    assert_close(v, rv, **FORWARD, name="v")


# Cross-checks against torch.optim itself; slow only because importing torch takes seconds.
@pytest.mark.slow
def test_sgd_matches_torch_if_available(rng):
    torch = pytest.importorskip("torch")
    p = rng.standard_normal((7, 9)).astype(np.float32)
    tp = torch.nn.Parameter(torch.tensor(p))
    opt = torch.optim.SGD([tp], lr=0.1, momentum=0.9, weight_decay=1e-3, nesterov=True)
    buf = np.zeros_like(p)
    for _ in range(3):
        g = rng.standard_normal(p.shape).astype(np.float32)
        tp.grad = torch.tensor(g)
        opt.step()
        F.sgd_step(p, g, buf, lr=0.1, momentum=0.9, weight_decay=1e-3, nesterov=True)
    assert_close(p, tp.detach().numpy(), **FORWARD, name="param")


@pytest.mark.slow
def test_adamw_matches_torch_if_available(rng):
    torch = pytest.importorskip("torch")
    p = rng.standard_normal((7, 9)).astype(np.float32)
    tp = torch.nn.Parameter(torch.tensor(p))
    opt = torch.optim.AdamW([tp], lr=1e-2, weight_decay=0.1)
    m, v = np.zeros_like(p), np.zeros_like(p)
    for step in range(1, 4):
        g = rng.standard_normal(p.shape).astype(np.float32)
        tp.grad = torch.tensor(g)
        opt.step()
        F.adam_step(p, g, m, v, step=step, lr=1e-2, weight_decay=0.1, decoupled=True)
    assert_close(p, tp.detach().numpy(), **FORWARD, name="param")


def test_zero_size_param_is_a_no_op():
    # Zero rows cut from real arrays: an update that ran anyway would write past them.
    bufs = [np.full((4, 3), float(i + 1), np.float32) for i in range(4)]
    before = [b.copy() for b in bufs]
    p, g, m, v = (b[:0] for b in bufs)
    F.sgd_step(p, g, m, lr=0.1, momentum=0.9, weight_decay=0.1)
    F.adam_step(p, g, m, v, step=1, lr=0.1, weight_decay=0.1)
    assert p.shape == (0, 3)
    for b, want in zip(bufs, before):
        np.testing.assert_array_equal(b, want)


def test_sgd_thread_safety(rng):
    """Four Python threads update their own params at once (GIL released)."""
    ps = [rng.standard_normal(70_000).astype(np.float32) for _ in range(4)]
    gs = [rng.standard_normal(70_000).astype(np.float32) for _ in range(4)]
    want = []
    for p, g in zip(ps, gs):
        q, b = p.copy(), np.zeros_like(p)
        for _ in range(10):
            _core.sgd_step(q, g, b, 0.01, 0.9, 1e-4, True)
        want.append(q)

    def work(i):
        b = np.zeros_like(ps[i])
        for _ in range(10):
            _core.sgd_step(ps[i], gs[i], b, 0.01, 0.9, 1e-4, True)

    ts = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for p, w in zip(ps, want):
        np.testing.assert_array_equal(p, w)


P = np.zeros((3, 4), np.float32)
RO = np.zeros((3, 4), np.float32)
RO.flags.writeable = False


def _p():
    return np.zeros((3, 4), np.float32)


SGD_BAD = [
    ((RO, _p(), None, 0.1), {}, ValueError, "param"),
    ((_p().astype(np.float64), _p(), None, 0.1), {}, TypeError, "param"),
    (([1.0], _p(), None, 0.1), {}, TypeError, "param"),
    ((np.zeros((4, 3), np.float32).T, _p(), None, 0.1), {}, ValueError, "param"),
    ((_p(), np.zeros((4, 3), np.float32), None, 0.1), {}, ValueError, "grad"),
    ((_p(), np.zeros((3, 4), np.float16), None, 0.1), {}, TypeError, "grad"),
    ((_p(), _p(), None, 0.1, 0.9), {}, ValueError, "momentum_buf"),
    ((_p(), _p(), RO, 0.1, 0.9), {}, ValueError, "momentum_buf"),
    ((_p(), _p(), np.zeros(12, np.float32), 0.1, 0.9), {}, ValueError, "momentum_buf"),
    ((P, _p(), P, 0.1, 0.9), {}, ValueError, "momentum_buf"),
    ((_p(), _p(), None, -0.1), {}, ValueError, "lr"),
    ((_p(), _p(), None, float("nan")), {}, ValueError, "lr"),
    ((_p(), _p(), _p(), 0.1, -0.9), {}, ValueError, "momentum"),
    ((_p(), _p(), None, 0.1, 0.0, -1e-4), {}, ValueError, "weight_decay"),
    ((_p(), _p(), None, 0.1, 0.0, 0.0, True), {}, ValueError, "nesterov"),
]


@pytest.mark.parametrize("args,kw,exc,name", SGD_BAD, ids=lambda v: v if isinstance(v, str) else "")
def test_sgd_bad_inputs(args, kw, exc, name):
    with raises_arg(exc, name):
        _core.sgd_step(*args, **kw)


ADAM_BAD = [
    ((RO, _p(), _p(), _p(), 1, 1e-3), ValueError, "param"),
    ((_p(), _p()[:2], _p(), _p(), 1, 1e-3), ValueError, "grad"),
    ((_p(), _p(), RO, _p(), 1, 1e-3), ValueError, "m"),
    ((_p(), _p(), _p(), RO, 1, 1e-3), ValueError, "v"),
    ((_p(), _p(), _p(), np.zeros((3, 4), np.float64), 1, 1e-3), TypeError, "v"),
    ((_p(), _p(), P, P, 1, 1e-3), ValueError, "v"),
    ((_p(), _p(), _p(), _p(), 0, 1e-3), ValueError, "step"),
    ((_p(), _p(), _p(), _p(), 1, -1e-3), ValueError, "lr"),
    ((_p(), _p(), _p(), _p(), 1, 1e-3, 1.0), ValueError, "beta1"),
    ((_p(), _p(), _p(), _p(), 1, 1e-3, -0.1), ValueError, "beta1"),
    ((_p(), _p(), _p(), _p(), 1, 1e-3, 0.9, 1.5), ValueError, "beta2"),
    ((_p(), _p(), _p(), _p(), 1, 1e-3, 0.9, 0.999, 0.0), ValueError, "eps"),
    ((_p(), _p(), _p(), _p(), 1, 1e-3, 0.9, 0.999, 1e-8, -1.0), ValueError, "weight_decay"),
]


@pytest.mark.parametrize("args,exc,name", ADAM_BAD, ids=lambda v: v if isinstance(v, str) else "")
def test_adam_bad_inputs(args, exc, name):
    with raises_arg(exc, name):
        _core.adam_step(*args)


def test_functional_bad_scalars():
    with pytest.raises(TypeError, match=r"^lr\b"):
        F.sgd_step(_p(), _p(), lr="fast")
    with pytest.raises(TypeError, match=r"^step\b"):
        F.adam_step(_p(), _p(), _p(), _p(), step=1.5, lr=1e-3)
    with pytest.raises(ValueError, match=r"^step\b"):
        F.adam_step(_p(), _p(), _p(), _p(), step=0, lr=1e-3)
    with pytest.raises(TypeError, match=r"^beta1\b"):
        F.adam_step(_p(), _p(), _p(), _p(), step=1, lr=1e-3, beta1=None)


def test_hyperparameters_as_one_element_arrays(rng):
    # lr and step may be one-element arrays (read when the op runs): the CUDA graph contract.
    p, g = rng.standard_normal((2, 3, 5)).astype(np.float32), rng.standard_normal((2, 3, 5)).astype(np.float32)
    m, v = np.zeros_like(p), np.zeros_like(p)
    want, got = p.copy(), p.copy()
    F.adam_step(want, g, m.copy(), v.copy(), step=3, lr=1e-2, weight_decay=0.1, decoupled=True)
    F.adam_step(got, g, m.copy(), v.copy(), step=np.array([3], np.int64),
                lr=np.array(1e-2, np.float32), weight_decay=0.1, decoupled=True)
    np.testing.assert_array_equal(got, want)
    want, got = p.copy(), p.copy()
    F.sgd_step(want, g, lr=0.1)
    F.sgd_step(got, g, lr=np.array([0.1], np.float32))
    np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError, match=r"^lr: an array must hold one value"):
        _core.sgd_step(_p(), _p(), None, np.zeros(2, np.float32))
    with pytest.raises(TypeError, match=r"^lr: expected dtype float32"):
        _core.sgd_step(_p(), _p(), None, np.zeros(1, np.float64))
    with pytest.raises(ValueError, match=r"^lr: expected a number >= 0, finite in float32"):
        _core.sgd_step(_p(), _p(), None, np.full(1, np.nan, np.float32))
    with pytest.raises(TypeError, match=r"^lr: expected a number or a one-element float32"):
        _core.sgd_step(_p(), _p(), None, "fast")
    with pytest.raises(TypeError, match=r"^step: expected dtype int64"):
        _core.adam_step(_p(), _p(), _p(), _p(), np.ones(1, np.int32), 1e-3)
    with pytest.raises(ValueError, match=r"^step: expected an integer >= 1"):
        _core.adam_step(_p(), _p(), _p(), _p(), np.zeros(1, np.int64), 1e-3)
    with pytest.raises(TypeError, match=r"^step: expected an int"):
        _core.adam_step(_p(), _p(), _p(), _p(), 1.0, 1e-3)
