"""Max pooling and global average pooling vs tests/reference.py on every ISA x thread count."""
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
pytestmark = pytest.mark.impls("max_pool2d_forward")

# (N, C, H, W, k, stride, pad): odd tails, 1x1, k=2 without padding, and the stem pool.
POOL_SHAPES = [
    (1, 3, 7, 7, 3, 2, 1),
    (2, 5, 9, 9, 3, 1, 1),
    (1, 17, 9, 9, 2, 2, 0),
    (2, 3, 7, 7, 1, 1, 0),
    (1, 5, 8, 8, 3, 2, 0),
    (3, 16, 7, 9, 3, 3, 1),
]


@pytest.mark.parametrize("shape", POOL_SHAPES, ids=str)
def test_max_pool_parity_with_ties(impl_threads, rng, shape):
    N, C, H, W, k, s, p = shape
    # Integer values in a small range: many ties, so the first-max rule is exercised.
    x = rng.integers(-2, 3, size=(N, C, H, W)).astype(np.float32)
    y, cache = F.max_pool2d(x, k, s, p)
    assert y.dtype == np.float32 and y.flags.c_contiguous
    assert_close(y, ref.max_pool2d_forward(x, k, s, p), **FORWARD, name="y")
    argmax = cache[0].transpose(0, 3, 1, 2)
    np.testing.assert_array_equal(argmax, ref.max_pool2d_argmax(x, k, s, p))
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = F.max_pool2d_backward(dy, cache)
    assert_close(dx, ref.max_pool2d_backward(dy, x, k, s, p), **BACKWARD, name="dx")


def test_max_pool_nan_propagates(impl_threads):
    # PyTorch: a NaN in the window is the maximum, and its position the argmax.
    x = np.arange(1 * 19 * 5 * 5, dtype=np.float32).reshape(1, 19, 5, 5)
    x[0, :, 1, 1] = np.nan
    y, cache = F.max_pool2d(x, 3, 2, 1)
    assert np.all(np.isnan(y[0, :, 0, 0])) and np.all(np.isnan(y[0, :, 1, 1]))
    assert np.all(cache[0][0, 0, 0] == 6) and np.all(cache[0][0, 1, 1] == 6)
    assert not np.any(np.isnan(y[0, :, 2, 2]))


def test_max_pool_nhwc_matches_nchw(impl_threads, rng):
    x = rng.standard_normal((2, 5, 9, 9)).astype(np.float32)
    y, cache = F.max_pool2d(x, 3, 2, 1)
    xh = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    yh, cache_h = F.max_pool2d(xh, 3, 2, 1, layout="NHWC")
    np.testing.assert_array_equal(yh, y.transpose(0, 2, 3, 1))
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dxh = F.max_pool2d_backward(np.ascontiguousarray(dy.transpose(0, 2, 3, 1)), cache_h)
    np.testing.assert_array_equal(dxh, F.max_pool2d_backward(dy, cache).transpose(0, 2, 3, 1))


@pytest.fixture(scope="module")
def stem_case():
    """ResNet-18/50 stem pool input (NHWC, as models call it) and its reference output, built
    once for all ISA x thread variants (the float64 reference is the slow part)."""
    x = np.random.default_rng(18).standard_normal((2, 112, 112, 64)).astype(np.float32)
    return x, ref.max_pool2d_forward(x.transpose(0, 3, 1, 2), 3, 2, 1).transpose(0, 2, 3, 1)


def test_max_pool_resnet18_stem(impl_threads, rng, stem_case):
    # 112x112x64 -> 56x56x64, k=3, stride 2, pad 1.
    x, y_ref = stem_case
    y, cache = F.max_pool2d(x, layout="NHWC")
    assert y.shape == (2, 56, 56, 64)
    assert_close(y, y_ref, **FORWARD, name="y")
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = F.max_pool2d_backward(dy, cache)
    # Every dy lands on its argmax: dx sums to dy per (image, channel), and x at the argmax
    # is the pooled value.
    assert_close(dx.sum(axis=(1, 2)), dy.sum(axis=(1, 2)), **BACKWARD, name="dx sums")
    np.testing.assert_array_equal(np.take_along_axis(
        x.reshape(2, -1, 64), cache[0].reshape(2, -1, 64).astype(np.int64), axis=1),
        y.reshape(2, -1, 64))


def test_max_pool_out_buffers(rng):
    x = rng.standard_normal((2, 7, 7, 3)).astype(np.float32)
    out = np.empty((2, 4, 4, 3), np.float32)
    am = np.empty((2, 4, 4, 3), np.int32)
    y, a = _core.max_pool2d_forward(x, 3, 2, 1, out=out, argmax_out=am)
    assert y is out and a is am
    dx = np.full((2, 7, 7, 3), 99.0, np.float32)
    assert _core.max_pool2d_backward(y, a, 7, 7, 3, 2, 1, out=dx) is dx
    assert np.all(dx[dx != 0] != 99.0)  # overwritten, not accumulated into
    # functional NCHW out=
    xc = rng.standard_normal((1, 3, 7, 7)).astype(np.float32)
    o = np.empty((1, 3, 4, 4), np.float32)
    yc, _ = F.max_pool2d(xc, out=o)
    assert yc is o
    assert_close(o, ref.max_pool2d_forward(xc, 3, 2, 1), **FORWARD, name="out")


@pytest.mark.impls("global_avg_pool_forward")
@pytest.mark.parametrize("shape", [(1, 3, 7, 7), (2, 17, 9, 9), (8, 64, 8, 8), (2, 5, 1, 1)], ids=str)
def test_global_avg_pool_parity(impl_threads, rng, shape):
    x = rng.standard_normal(shape).astype(np.float32)
    y, cache = F.global_avg_pool2d(x)
    assert y.shape == shape[:2]
    assert_close(y, ref.global_avg_pool_forward(x), **FORWARD, name="y")
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = F.global_avg_pool2d_backward(dy, cache)
    assert_close(dx, ref.global_avg_pool_backward(dy, x.shape), **BACKWARD, name="dx")
    xh = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    yh, ch = F.global_avg_pool2d(xh, layout="NHWC")
    assert_close(yh, y, **FORWARD, name="y nhwc")
    assert_close(F.global_avg_pool2d_backward(dy, ch), dx.transpose(0, 2, 3, 1), **FORWARD, name="dx nhwc")


def test_max_pool_thread_safety(rng):
    """Four Python threads run the kernel at once (GIL released); each result must be exact."""
    xs = [rng.standard_normal((4, 33, 33, 19)).astype(np.float32) for _ in range(4)]
    want = [_core.max_pool2d_forward(x, 3, 2, 1) for x in xs]
    got = [None] * 4

    def work(i):
        for _ in range(10):
            got[i] = _core.max_pool2d_forward(xs[i], 3, 2, 1)

    ts = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for (yw, aw), (yg, ag) in zip(want, got):
        np.testing.assert_array_equal(yg, yw)
        np.testing.assert_array_equal(ag, aw)


X = np.zeros((2, 7, 7, 3), np.float32)
DY = np.zeros((2, 4, 4, 3), np.float32)
AM = np.zeros((2, 4, 4, 3), np.int32)
RO = np.zeros((2, 4, 4, 3), np.float32)
RO.flags.writeable = False

BAD_CORE = [
    ("max_pool2d_forward", (X.astype(np.float64), 3, 2, 1), {}, TypeError, "x"),
    ("max_pool2d_forward", (X[0], 3, 2, 1), {}, ValueError, "x"),
    ("max_pool2d_forward", (np.zeros((2, 7, 14, 3), np.float32)[:, :, ::2], 3, 2, 1), {}, ValueError, "x"),
    ("max_pool2d_forward", (np.zeros((0, 7, 7, 3), np.float32), 3, 2, 1), {}, ValueError, "x"),
    ("max_pool2d_forward", (X, 0, 2, 0), {}, ValueError, "k"),
    ("max_pool2d_forward", (X, 3, 0, 1), {}, ValueError, "stride"),
    ("max_pool2d_forward", (X, 3, 2, -1), {}, ValueError, "pad"),
    ("max_pool2d_forward", (X, 3, 2, 2), {}, ValueError, "pad"),
    ("max_pool2d_forward", (X, 9, 1, 0), {}, ValueError, "k"),
    ("max_pool2d_forward", (X, 3, 2, 1), {"out": RO}, ValueError, "out"),
    ("max_pool2d_forward", (X, 3, 2, 1), {"out": np.zeros((2, 3, 3, 3), np.float32)}, ValueError, "out"),
    ("max_pool2d_forward", (X, 3, 2, 1), {"argmax_out": np.zeros((2, 4, 4, 3), np.int64)}, TypeError, "argmax_out"),
    ("max_pool2d_backward", (DY, AM.astype(np.int64), 7, 7, 3, 2, 1), {}, TypeError, "argmax"),
    ("max_pool2d_backward", (DY, AM[:1], 7, 7, 3, 2, 1), {}, ValueError, "argmax"),
    ("max_pool2d_backward", (DY.astype(np.float16), AM, 7, 7, 3, 2, 1), {}, TypeError, "dy"),
    ("max_pool2d_backward", (DY, AM, 0, 7, 3, 2, 1), {}, ValueError, "H"),
    ("max_pool2d_backward", (DY, AM, 7, 7, 3, 1, 1), {}, ValueError, "dy: expected shape (2, 7, 7, 3)"),
    ("max_pool2d_backward", (DY, np.full_like(AM, 49), 7, 7, 3, 2, 1), {}, ValueError, "argmax"),
    ("max_pool2d_backward", (DY, np.full_like(AM, -1), 7, 7, 3, 2, 1), {}, ValueError, "argmax"),
    ("max_pool2d_backward", (DY, AM, 7, 7, 3, 2, 1), {"out": np.zeros((2, 7, 7, 3), np.float32).T}, ValueError, "out"),
    ("global_avg_pool_forward", (X.reshape(2, 49, 3),), {}, ValueError, "x"),
    ("global_avg_pool_forward", ([[1.0]],), {}, TypeError, "x"),
    ("global_avg_pool_backward", (np.zeros((2, 3), np.float32), 7, -1), {}, ValueError, "W"),
    ("global_avg_pool_backward", (np.zeros((0, 3), np.float32), 7, 7), {}, ValueError, "dy"),
    ("global_avg_pool_backward", (np.zeros((2, 3), np.int32), 7, 7), {}, TypeError, "dy"),
]


@pytest.mark.parametrize("fn,args,kw,exc,name", BAD_CORE, ids=lambda v: v if isinstance(v, str) else "")
def test_core_bad_inputs(fn, args, kw, exc, name):
    with raises_arg(exc, name):
        getattr(_core, fn)(*args, **kw)


XC = np.zeros((2, 3, 7, 7), np.float32)
BAD_FUNCTIONAL = [
    (F.max_pool2d, (XC,), {"kernel_size": 0}, ValueError, "kernel_size"),
    (F.max_pool2d, (XC,), {"stride": 0}, ValueError, "stride"),
    (F.max_pool2d, (XC,), {"padding": 2}, ValueError, "padding"),
    (F.max_pool2d, (XC,), {"kernel_size": 2.5}, TypeError, "kernel_size"),
    (F.max_pool2d, (XC,), {"layout": "NCWH"}, ValueError, "layout"),
    (F.max_pool2d, (XC[0],), {}, ValueError, "x"),
    (F.max_pool2d, (XC.astype(np.float64),), {}, TypeError, "x"),
    (F.max_pool2d, (XC,), {"out": np.zeros((2, 3, 3, 3), np.float32)}, ValueError, "out"),
    (F.global_avg_pool2d, (XC,), {"layout": "nchw"}, ValueError, "layout"),
    (F.global_avg_pool2d, ("x",), {}, TypeError, "x"),
]


@pytest.mark.parametrize("fn,args,kw,exc,name", BAD_FUNCTIONAL, ids=lambda v: getattr(v, "__name__", ""))
def test_functional_bad_inputs(fn, args, kw, exc, name):
    with raises_arg(exc, name):
        fn(*args, **kw)
