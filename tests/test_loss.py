"""Softmax cross-entropy (with label smoothing) vs tests/reference.py."""
from __future__ import annotations

import math
import threading

import numpy as np
import pytest

from errors import raises_arg
import reference as ref
from resnet_cpp import _core
from resnet_cpp import functional as F
from tolerance import BACKWARD, FORWARD, assert_close

# Kernel tests run on each entry of this op's implementation list (conftest.impl_threads).
pytestmark = pytest.mark.impls("softmax_cross_entropy")

# (N, K): batch 1, odd class counts, CIFAR-10 at batch 8 and ImageNet's 1000 classes.
SHAPES = [(1, 3), (5, 17), (8, 10), (3, 1000), (33, 2)]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("ls", [0.0, 0.1, 0.5])
@pytest.mark.parametrize("label_dtype", [np.int32, np.int64])
def test_cross_entropy_parity(impl_threads, rng, shape, ls, label_dtype):
    N, K = shape
    logits = (rng.standard_normal((N, K)) * 3).astype(np.float32)
    labels = rng.integers(0, K, N).astype(label_dtype)
    loss, cache = F.cross_entropy(logits, labels, label_smoothing=ls)
    assert isinstance(loss, float)
    assert_close(loss, ref.cross_entropy_forward(logits, labels, ls), **FORWARD, name="loss")
    d = F.cross_entropy_backward(cache)
    assert d.shape == (N, K) and d.dtype == np.float32
    assert_close(d, ref.cross_entropy_backward(logits, labels, ls), **BACKWARD, name="dlogits")


@pytest.mark.parametrize("ls", [0.0, 0.1])
def test_cross_entropy_huge_logits_finite(impl_threads, rng, ls):
    # |logits| ~ 1e4: exp would overflow without the max subtraction.
    logits = (rng.standard_normal((6, 10)) * 1e4).astype(np.float32)
    labels = rng.integers(0, 10, 6)
    loss, cache = F.cross_entropy(logits, labels, label_smoothing=ls)
    d = F.cross_entropy_backward(cache)
    assert math.isfinite(loss) and np.all(np.isfinite(d))
    # float32 logits of size 1e4 carry absolute error ~1e-3; the loss is ~1e4.
    assert_close(loss, ref.cross_entropy_forward(logits, labels, ls), rtol=1e-5, atol=1e-2, name="loss")
    assert_close(d, ref.cross_entropy_backward(logits, labels, ls), **BACKWARD, name="dlogits")
    # All logits equal and large: uniform softmax, loss log K.
    same = np.full((2, 10), 1e4, np.float32)
    loss, _ = F.cross_entropy(same, np.array([0, 9]))
    assert_close(loss, math.log(10), **FORWARD, name="uniform loss")


def test_cross_entropy_gradient_rows_sum_to_zero(rng):
    logits = rng.standard_normal((7, 13)).astype(np.float32)
    _, cache = F.cross_entropy(logits, rng.integers(0, 13, 7), label_smoothing=0.2)
    assert_close(cache.dlogits.sum(axis=1), np.zeros(7), atol=1e-7, rtol=0, name="row sums")


def test_cross_entropy_thread_count_invariant(rng):
    logits = rng.standard_normal((64, 100)).astype(np.float32)
    labels = rng.integers(0, 100, 64)
    old = _core.num_threads()
    try:
        res = []
        for t in (1, 2):
            _core.set_num_threads(t)
            res.append(_core.softmax_cross_entropy(logits, labels, 0.1))
    finally:
        _core.set_num_threads(old)
    assert res[0][0] == res[1][0]
    np.testing.assert_array_equal(res[0][1], res[1][1])


def test_cross_entropy_out_buffer(rng):
    logits = rng.standard_normal((4, 5)).astype(np.float32)
    out = np.empty((4, 5), np.float32)
    _, d = _core.softmax_cross_entropy(logits, np.arange(4), 0.0, dlogits_out=out)
    assert d is out


def test_unchecked_bad_labels_give_nan_rows(rng):
    # check_labels=False (what a CUDA graph needs) must not read out of bounds: the row with
    # a bad label is NaN, the others are untouched, and the mean is NaN.
    logits = rng.standard_normal((4, 3)).astype(np.float32)
    labels = np.array([0, 1, 3, -1], np.int64)
    loss, d = _core.softmax_cross_entropy(logits, labels, 0.0, None, None, False)
    assert math.isnan(loss) and np.isnan(d[2:]).all()
    good = _core.softmax_cross_entropy(logits[:2], labels[:2], 0.0)[1] * np.float32(2 / 4)
    assert_close(d[:2], good, **FORWARD, name="good rows")
    with pytest.raises(ValueError, match=r"^labels: labels\[2\] = 3"):
        _core.softmax_cross_entropy(logits, labels, 0.0)


def test_cross_entropy_loss_out(rng):
    logits = rng.standard_normal((5, 7)).astype(np.float32)
    labels = rng.integers(0, 7, 5)
    out = np.zeros((), np.float32)
    loss, _ = F.cross_entropy(logits, labels, loss_out=out)
    assert loss is out
    assert_close(out, ref.cross_entropy_forward(logits, labels, 0.0), **FORWARD, name="loss_out")
    with pytest.raises(ValueError, match=r"^loss_out: expected 0-d"):
        F.cross_entropy(logits, labels, loss_out=np.zeros(1, np.float32))


def test_cross_entropy_thread_safety(rng):
    zs = [rng.standard_normal((32, 50)).astype(np.float32) for _ in range(4)]
    ys = [rng.integers(0, 50, 32) for _ in range(4)]
    want = [_core.softmax_cross_entropy(z, y, 0.1) for z, y in zip(zs, ys)]
    got = [None] * 4

    def work(i):
        for _ in range(50):
            got[i] = _core.softmax_cross_entropy(zs[i], ys[i], 0.1)

    ts = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for (lw, dw), (lg, dg) in zip(want, got):
        assert lw == lg
        np.testing.assert_array_equal(dw, dg)


Z = np.zeros((3, 4), np.float32)
Y = np.array([0, 1, 3])
RO = np.zeros((3, 4), np.float32)
RO.flags.writeable = False

BAD = [
    ((Z.astype(np.float64), Y), {}, TypeError, "logits"),
    ((Z[0], Y), {}, ValueError, "logits"),
    ((np.zeros((4, 3), np.float32).T, Y), {}, ValueError, "logits"),
    ((np.zeros((0, 4), np.float32), Y[:0]), {}, ValueError, "logits"),
    ((Z, Y.astype(np.float32)), {}, TypeError, "labels"),
    ((Z, Y.astype(np.uint8)), {}, TypeError, "labels"),
    ((Z, Y[:2]), {}, ValueError, "labels"),
    ((Z, Y[:, None]), {}, ValueError, "labels"),
    ((Z, np.array([0, 4, 1])), {}, ValueError, "labels"),
    ((Z, np.array([0, -1, 1], np.int32)), {}, ValueError, "labels"),
    ((Z, np.array([0, 2**40, 1])), {}, ValueError, "labels"),
    ((Z, Y, -0.1), {}, ValueError, "label_smoothing"),
    ((Z, Y, 1.0), {}, ValueError, "label_smoothing"),
    ((Z, Y, float("nan")), {}, ValueError, "label_smoothing"),
    ((Z, Y, 0.0), {"dlogits_out": RO}, ValueError, "dlogits_out"),
    ((Z, Y, 0.0), {"dlogits_out": np.zeros((3, 5), np.float32)}, ValueError, "dlogits_out"),
]


@pytest.mark.parametrize("args,kw,exc,name", BAD, ids=lambda v: v if isinstance(v, str) else "")
def test_bad_inputs(args, kw, exc, name):
    with raises_arg(exc, name):
        _core.softmax_cross_entropy(*args, **kw)


def test_functional_bad_inputs():
    with pytest.raises(TypeError, match=r"^label_smoothing\b"):
        F.cross_entropy(Z, Y, label_smoothing="a lot")
    with pytest.raises(ValueError, match=r"^label_smoothing\b"):
        F.cross_entropy(Z, Y, label_smoothing=2.0)
    with pytest.raises(ValueError, match=r"^labels\b"):
        F.cross_entropy(Z, np.array([5, 0, 0]))
