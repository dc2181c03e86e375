"""Linear layer (y = x W^T + b) vs tests/reference.py on every ISA x thread count."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from errors import raises_arg
import reference as ref
from resnet_cpp import _core
from resnet_cpp import functional as F
from tolerance import BACKWARD, FORWARD, assert_close

# Kernel tests run on each entry of this op's implementation list (conftest.impl_threads).
pytestmark = pytest.mark.impls("linear_forward")

# (N, F, O): tails of every micro-kernel block (not multiples of 3/4/6/8/16/32), batch 1,
# ResNet-20's head (64 -> 10) and ResNet-18's (512 -> 1000).
SHAPES = [(1, 3, 5), (5, 17, 33), (7, 100, 13), (9, 65, 49), (8, 64, 10), (130, 37, 50)]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_linear_parity(impl_threads, rng, shape, bias):
    N, Fi, O = shape
    x = rng.standard_normal((N, Fi)).astype(np.float32)
    w = rng.standard_normal((O, Fi)).astype(np.float32)
    b = rng.standard_normal(O).astype(np.float32) if bias else None
    y, cache = F.linear(x, w, b)
    assert y.shape == (N, O) and y.dtype == np.float32
    assert_close(y, ref.linear_forward(x, w, b), **FORWARD, name="y")
    dy = rng.standard_normal((N, O)).astype(np.float32)
    dx, dw, db = F.linear_backward(dy, cache)
    rdx, rdw, rdb = ref.linear_backward(dy, x, w)
    assert_close(dx, rdx, **BACKWARD, name="dx")
    assert_close(dw, rdw, **BACKWARD, name="dw")
    if bias:
        assert_close(db, rdb, **BACKWARD, name="db")
    else:
        assert db is None
    dx2, dw2, _ = F.linear_backward(dy, cache, need_dx=False)
    assert dx2 is None
    np.testing.assert_array_equal(dw2, dw)


def test_linear_imagenet_fc(impl_threads, rng):
    # ResNet-50's classifier: 2048 -> 1000 at batch 4.
    x = rng.standard_normal((4, 2048)).astype(np.float32)
    w = (rng.standard_normal((1000, 2048)) * 0.02).astype(np.float32)
    b = rng.standard_normal(1000).astype(np.float32)
    y, cache = F.linear(x, w, b)
    assert_close(y, ref.linear_forward(x, w, b), **FORWARD, name="y")
    dy = rng.standard_normal((4, 1000)).astype(np.float32)
    dx, dw, db = F.linear_backward(dy, cache)
    for got, want, name in zip((dx, dw, db), ref.linear_backward(dy, x, w), ("dx", "dw", "db")):
        assert_close(got, want, **BACKWARD, name=name)


def test_linear_thread_count_invariant(rng):
    """Each output is computed by one thread in a fixed order: bitwise equal for 1 and 2 threads."""
    x = rng.standard_normal((50, 300)).astype(np.float32)
    w = rng.standard_normal((70, 300)).astype(np.float32)
    dy = rng.standard_normal((50, 70)).astype(np.float32)
    old = _core.num_threads()
    try:
        res = []
        for t in (1, 2):
            _core.set_num_threads(t)
            res.append((_core.linear_forward(x, w), *_core.linear_backward(dy, x, w, True, True)))
    finally:
        _core.set_num_threads(old)
    for a, b in zip(*res):
        np.testing.assert_array_equal(a, b)


def test_linear_out(rng):
    x = rng.standard_normal((3, 5)).astype(np.float32)
    w = rng.standard_normal((4, 5)).astype(np.float32)
    out = np.full((3, 4), np.nan, np.float32)
    y, _ = F.linear(x, w, out=out)
    assert y is out
    assert_close(out, ref.linear_forward(x, w, None), **FORWARD, name="out")
    dy = rng.standard_normal((3, 4)).astype(np.float32)
    bufs = [np.full(s, np.nan, np.float32) for s in ((3, 5), (4, 5), (4,))]
    got = _core.linear_backward(dy, x, w, True, True, *bufs)
    assert all(g is b for g, b in zip(got, bufs))
    for g, r in zip(got, ref.linear_backward(dy, x, w)):
        assert_close(g, r, **BACKWARD, name="out buffers")


def test_linear_thread_safety(rng):
    """Four Python threads call the backward at once (GIL released); results stay exact."""
    xs = [rng.standard_normal((16, 200)).astype(np.float32) for _ in range(4)]
    w = rng.standard_normal((60, 200)).astype(np.float32)
    dys = [rng.standard_normal((16, 60)).astype(np.float32) for _ in range(4)]
    want = [_core.linear_backward(dy, x, w, True, True) for dy, x in zip(dys, xs)]
    got = [None] * 4

    def work(i):
        for _ in range(20):
            got[i] = _core.linear_backward(dys[i], xs[i], w, True, True)

    ts = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for g, wnt in zip(got, want):
        for a, b in zip(g, wnt):
            np.testing.assert_array_equal(a, b)


X = np.zeros((3, 5), np.float32)
W = np.zeros((4, 5), np.float32)
B = np.zeros(4, np.float32)
DY = np.zeros((3, 4), np.float32)
RO = np.zeros((3, 4), np.float32)
RO.flags.writeable = False
SQ = np.zeros((4, 4), np.float32)
BIG = np.zeros(40, np.float32)

BAD = [
    (_core.linear_forward, (X.astype(np.float64), W), {}, TypeError, "x"),
    (_core.linear_forward, (X, W.astype(np.int32)), {}, TypeError, "w"),
    (_core.linear_forward, (X[None], W), {}, ValueError, "x"),
    (_core.linear_forward, (X, W[:, :4]), {}, ValueError, "w"),
    (_core.linear_forward, (X, np.zeros((5, 4), np.float32).T), {}, ValueError, "w"),
    (_core.linear_forward, (X, W, np.zeros(3, np.float32)), {}, ValueError, "b"),
    (_core.linear_forward, (X, W, np.zeros((4, 1), np.float32)), {}, ValueError, "b"),
    (_core.linear_forward, (np.zeros((0, 5), np.float32), W), {}, ValueError, "x"),
    (_core.linear_forward, (X, W), {"out": RO}, ValueError, "out"),
    (_core.linear_forward, (X, W), {"out": np.zeros((4, 3), np.float32)}, ValueError, "out"),
    (_core.linear_forward, ("x", W), {}, TypeError, "x"),
    (_core.linear_forward, (SQ, W[:, :4].copy()), {"out": SQ[:3]}, ValueError, "out"),
    (_core.linear_forward, (X, W), {"out": np.zeros((3, 5), np.float32)[:, :4]}, ValueError, "out"),
    (_core.linear_backward, (DY, X, W.T.copy(), True, True), {}, ValueError, "w"),
    (_core.linear_backward, (DY, X, W, True, True), {"dw_out": RO}, ValueError, "dw_out"),
    (_core.linear_backward, (DY, X, W, True, True), {"dx_out": X}, ValueError, "dx_out"),
    (_core.linear_backward, (DY, X, W, True, True), {"dw_out": W}, ValueError, "dw_out"),
    (_core.linear_backward, (DY, X, W, True, True), {"dw_out": BIG[:20].reshape(4, 5),
                                                    "dx_out": BIG[10:25].reshape(3, 5)}, ValueError, "dx_out"),
    (_core.linear_backward, (DY, X, W, True, True), {"dx_out": np.zeros((3, 4), np.float32)}, ValueError, "dx_out"),
    (_core.linear_backward, (DY, X, W, True, True), {"db_out": B.astype(np.float64)}, TypeError, "db_out"),
    (_core.linear_backward, (DY[:2], X, W, True, True), {}, ValueError, "x"),
    (_core.linear_backward, (DY.astype(np.float16), X, W, True, True), {}, TypeError, "dy"),
    (_core.linear_backward, (np.zeros((0, 4), np.float32), X, W, True, True), {}, ValueError, "dy"),
    (_core.linear_backward, (np.zeros((3, 8), np.float32)[:, ::2], X, W, True, True), {}, ValueError, "dy"),
    (F.linear, (X, W, B[:3]), {}, ValueError, "b"),
    (F.linear_backward, (np.zeros((3, 3), np.float32), F.LinearCache(X, W, True)), {}, ValueError, "w"),
    (F.linear_backward, (DY, (X, W, True)), {}, TypeError, "cache"),
]


@pytest.mark.parametrize("fn,args,kw,exc,name", BAD, ids=lambda v: getattr(v, "__name__", ""))
def test_bad_inputs(fn, args, kw, exc, name):
    with raises_arg(exc, name):
        fn(*args, **kw)
