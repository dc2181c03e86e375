"""ReLU, residual add (+ReLU), the option-A shortcut and NCHW<->NHWC conversion on every ISA
path.

These ops are exact in float32 (max, one add, a mask, a copy), so results are compared
bitwise with NumPy; the float64 reference is checked too for parity with the oracle.
"""
from __future__ import annotations

import threading

import numpy as np
import pytest

from errors import raises_arg
import reference as ref
from resnet_cpp import _core
from resnet_cpp.functional import (add, add_relu, add_relu_backward, relu, relu_backward,
                                   shortcut_a, shortcut_a_backward, to_nchw, to_nhwc)
from tolerance import FORWARD, assert_close

# Flat sizes around the vector widths and the threading threshold, plus ResNet shapes.
SHAPES = [(1,), (7,), (16,), (17,), (63,), (1, 3, 7, 7), (2, 5, 9, 9), (1, 9, 9, 17),
          (8, 16, 32, 32), (8, 32, 16, 16), (8, 64, 8, 8), (2, 256, 14, 14), (100003,)]


def _signed(rng, shape):
    """Random values with exact zeros and negative zeros mixed in (mask edge cases)."""
    a = rng.standard_normal(shape).astype(np.float32)
    flat = a.reshape(-1)
    flat[::11] = 0.0
    flat[5::13] = -0.0
    return a


@pytest.mark.impls("relu_forward")
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_relu(impl_threads, rng, shape):
    x = _signed(rng, shape)
    dy = rng.standard_normal(shape).astype(np.float32)
    y, cache = relu(x)
    assert np.array_equal(y, np.maximum(x, 0))
    assert_close(y, ref.relu_forward(x), **FORWARD, name="y")
    dx = relu_backward(dy, cache)
    assert np.array_equal(dx, np.where(y > 0, dy, 0))
    assert_close(dx, ref.relu_backward(dy, y), **FORWARD, name="dx")


@pytest.mark.impls("add_relu_forward")
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_add_and_add_relu(impl_threads, rng, shape):
    a = _signed(rng, shape)
    b = _signed(rng, shape)
    dy = rng.standard_normal(shape).astype(np.float32)
    assert np.array_equal(add(a, b), a + b)
    y, cache = add_relu(a, b)
    assert np.array_equal(y, np.maximum(a + b, 0))
    assert_close(y, ref.add_relu_forward(a, b), **FORWARD, name="y")
    d = add_relu_backward(dy, cache)
    assert np.array_equal(d, np.where(y > 0, dy, 0))
    assert_close(d, ref.add_relu_backward(dy, y), **FORWARD, name="d")


# (N, H, W, C, K, stride): odd sizes and strides (ceil division, C and K - C odd), 1 x 1
# images, stride 1 (pad only), K == C, and the CIFAR transitions at batch 8.
SHORTCUTS = [(1, 7, 7, 3, 8, 2), (2, 9, 5, 5, 5, 2), (3, 5, 8, 2, 7, 3), (1, 1, 1, 1, 4, 2),
             (2, 6, 6, 3, 9, 1), (8, 32, 32, 16, 32, 2), (8, 16, 16, 32, 64, 2)]


@pytest.mark.impls("shortcut_a_forward")
@pytest.mark.parametrize("case", SHORTCUTS, ids=str)
def test_shortcut_a(impl_threads, rng, case):
    N, H, W, C, K, s = case
    x = rng.standard_normal((N, H, W, C)).astype(np.float32)
    y, cache = shortcut_a(x, K, s)
    y_ref = ref.shortcut_a_forward(np.moveaxis(x, -1, 1), K, s)
    assert np.array_equal(np.moveaxis(y, -1, 1), y_ref)  # a copy: exact
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx_ref = np.moveaxis(ref.shortcut_a_backward(np.moveaxis(dy, -1, 1), (N, C, H, W), s), 1, -1)
    out = np.full(x.shape, np.nan, np.float32)
    dx = shortcut_a_backward(dy, cache, out=out)
    assert dx is out and np.array_equal(dx, dx_ref)
    base = rng.standard_normal(x.shape).astype(np.float32)
    acc = base.copy()
    assert shortcut_a_backward(dy, cache, out=acc, accumulate=True) is acc
    assert np.array_equal(acc, base + dx_ref.astype(np.float32))
    # out= for the forward: every element is written (pad channels included).
    yo = np.full(y.shape, np.nan, np.float32)
    assert shortcut_a(x, K, s, out=yo)[0] is yo and np.array_equal(yo, y)


def test_out_and_in_place(rng):
    """out= is written and returned; in place (out is an input) is safe elementwise."""
    a = rng.standard_normal((4, 5, 6, 7)).astype(np.float32)
    b = rng.standard_normal(a.shape).astype(np.float32)
    expect = np.maximum(a + b, 0)
    out = np.empty_like(a)
    assert _core.add_relu_forward(a, b, out=out) is out
    assert np.array_equal(out, expect)
    y, _ = add_relu(a, b, out=a)
    assert y is a and np.array_equal(a, expect)
    x = b.copy()
    relu(x, out=x)
    assert np.array_equal(x, np.maximum(b, 0))


def test_dyadic_bitwise_across_impls(rng):
    """Every implementation and thread count gives identical bits (exact math), incl. tails."""
    from conftest import THREADS, cap, isa_of, runnable_impls

    shape = (3, 7, 9, 17)
    a = (rng.integers(-16, 17, shape) / 8.0).astype(np.float32)
    b = (rng.integers(-16, 17, shape) / 8.0).astype(np.float32)
    results = []
    for impl in runnable_impls("relu_forward"):
        for t in THREADS:
            with cap(isa_of(impl), t):
                y = _core.add_relu_forward(a, b)
                results.append([_core.relu_forward(a), _core.relu_backward(b, a),
                                _core.add_forward(a, b), y, _core.add_relu_backward(b, y),
                                _core.nchw_to_nhwc(a), _core.nhwc_to_nchw(a)])
    for r in results[1:]:
        for x, y in zip(r, results[0]):
            assert np.array_equal(x, y)
            assert np.array_equal(np.signbit(x), np.signbit(y))


@pytest.mark.impls("nchw_to_nhwc")
@pytest.mark.parametrize("shape", [(1, 3, 7, 7), (2, 5, 9, 9), (1, 17, 1, 1), (1, 1, 5, 3),
                                   (3, 33, 9, 7), (8, 16, 32, 32), (2, 256, 14, 14)], ids=str)
def test_layout_conversion(impl_threads, rng, shape):
    x = rng.standard_normal(shape).astype(np.float32)
    y = to_nhwc(x)
    assert y.shape == (shape[0], shape[2], shape[3], shape[1])
    assert np.array_equal(y, np.transpose(x, (0, 2, 3, 1)))
    z = to_nchw(y)
    assert np.array_equal(z, x)
    out = np.empty_like(x)
    assert _core.nhwc_to_nchw(y, out=out) is out and np.array_equal(out, x)


def test_thread_safety(rng):
    """Four Python threads run the eltwise ops concurrently on different inputs."""
    inputs = [rng.standard_normal((4, 16, 16, 16 + i)).astype(np.float32) for i in range(4)]
    errors = []

    def worker(x):
        try:
            for _ in range(20):
                y = _core.add_relu_forward(x, x)
                assert np.array_equal(y, np.maximum(x + x, 0))
                assert np.array_equal(_core.nhwc_to_nchw(_core.nchw_to_nhwc(x)), x)
        except Exception as exc:  # surfaced below: pytest cannot see other threads' raises
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(x,)) for x in inputs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def _ro(a):
    a = a.copy()
    a.flags.writeable = False
    return a


def _bad_cases():
    x = np.zeros((2, 3, 4, 5), np.float32)
    x64 = x.astype(np.float64)
    nc = np.zeros((2, 3, 4, 10), np.float32)[..., ::2]
    c = _core
    cases = {}
    for name, f in [("relu_forward", lambda a, out=None: c.relu_forward(a, out=out)),
                    ("nchw_to_nhwc", lambda a, out=None: c.nchw_to_nhwc(a, out=out)),
                    ("nhwc_to_nchw", lambda a, out=None: c.nhwc_to_nchw(a, out=out))]:
        cases[f"{name} dtype"] = (lambda f=f: f(x64), TypeError, "x")
        cases[f"{name} list"] = (lambda f=f: f([1.0, 2.0]), TypeError, "x")
        cases[f"{name} noncontig"] = (lambda f=f: f(nc), ValueError, "x")
        cases[f"{name} empty"] = (lambda f=f: f(x[:0]), ValueError, "x")
        cases[f"{name} out readonly"] = (lambda f=f: f(x, out=_ro(f(x))), ValueError, "out")
        cases[f"{name} out shape"] = (lambda f=f: f(x, out=np.zeros(5, np.float32)), ValueError,
                                      "out")
    cases["relu_forward 0-d"] = (lambda: c.relu_forward(np.ones((), np.float32)),
                                 ValueError, "x")
    cases["nchw_to_nhwc ndim"] = (lambda: c.nchw_to_nhwc(x[0]), ValueError, "x")
    cases["nhwc_to_nchw ndim"] = (lambda: c.nhwc_to_nchw(x[None]), ValueError, "x")
    for name, f in [("add_forward", c.add_forward), ("add_relu_forward", c.add_relu_forward)]:
        cases[f"{name} a dtype"] = (lambda f=f: f(x64, x), TypeError, "a")
        cases[f"{name} b dtype"] = (lambda f=f: f(x, x64), TypeError, "b")
        cases[f"{name} shape"] = (lambda f=f: f(x, x[:1].copy()), ValueError, "b")
        cases[f"{name} ndim"] = (lambda f=f: f(x, x[0]), ValueError, "b")
        cases[f"{name} noncontig"] = (lambda f=f: f(nc, nc), ValueError, "a")
        cases[f"{name} empty"] = (lambda f=f: f(x[:0], x[:0]), ValueError, "a")
        cases[f"{name} out readonly"] = (lambda f=f: f(x, x, out=_ro(x)), ValueError, "out")
    for name, f in [("relu_backward", c.relu_backward), ("add_relu_backward", c.add_relu_backward)]:
        cases[f"{name} dy dtype"] = (lambda f=f: f(x64, x), TypeError, "dy")
        cases[f"{name} y shape"] = (lambda f=f: f(x, x[:1].copy()), ValueError, "y")
        cases[f"{name} y noncontig"] = (lambda f=f: f(nc.copy(), nc), ValueError, "y")
        cases[f"{name} empty"] = (lambda f=f: f(x[:0], x[:0]), ValueError, "dy")
        cases[f"{name} out readonly"] = (lambda f=f: f(x, x, out=_ro(x)), ValueError, "out")
    # shortcut A: x (2, 3, 4, 5) -> dy (2, 2, 2, 8) at stride 2
    SF, SB = c.shortcut_a_forward, c.shortcut_a_backward
    dy = np.zeros((2, 2, 2, 8), np.float32)
    cases.update({
        "shortcut_a_forward dtype": (lambda: SF(x64, 8, 2), TypeError, "x"),
        "shortcut_a_forward ndim": (lambda: SF(x[0], 8, 2), ValueError, "x"),
        "shortcut_a_forward noncontig": (lambda: SF(nc, 8, 2), ValueError, "x"),
        "shortcut_a_forward stride": (lambda: SF(x, 8, 0), ValueError, "stride"),
        "shortcut_a_forward channels": (lambda: SF(x, 4, 2), ValueError, "channels_out"),
        "shortcut_a_forward out shape": (lambda: SF(x, 8, 2, out=dy[:, :1].copy()), ValueError,
                                         "out"),
        "shortcut_a_forward out readonly": (lambda: SF(x, 8, 2, out=_ro(dy)), ValueError, "out"),
        "shortcut_a_backward dtype": (lambda: SB(dy.astype(np.float64), 5, 3, 4, 2), TypeError,
                                      "dy"),
        "shortcut_a_backward dy shape": (lambda: SB(dy, 5, 5, 4, 2), ValueError, "dy"),
        "shortcut_a_backward channels": (lambda: SB(dy, 9, 3, 4, 2), ValueError, "channels_in"),
        "shortcut_a_backward H": (lambda: SB(dy, 5, 0, 4, 2), ValueError, "H"),
        "shortcut_a_backward stride": (lambda: SB(dy, 5, 3, 4, -1), ValueError, "stride"),
        "shortcut_a_backward out shape": (lambda: SB(dy, 5, 3, 4, 2, out=x[:1].copy()),
                                          ValueError, "out"),
        "shortcut_a_backward out readonly": (lambda: SB(dy, 5, 3, 4, 2, out=_ro(x)), ValueError,
                                             "out"),
        "shortcut_a_backward accumulate": (lambda: SB(dy, 5, 3, 4, 2, accumulate=True),
                                           ValueError, "out"),
    })
    return cases


_CASES = _bad_cases()


@pytest.mark.parametrize("case", list(_CASES))
def test_bad_inputs(case):
    fn, exc, name = _CASES[case]
    with raises_arg(exc, name):
        fn()


@pytest.mark.impls("relu_forward")
def test_relu_family_propagates_nan(impl_threads):
    import resnet_cpp.functional as F

    # A NaN activation must reach the loss (PyTorch's relu(NaN) is NaN), so training that
    # diverges is detected at the loss instead of being silently masked to zero.
    x = np.full((2, 3, 3, 17), 0.5, np.float32)
    x[1, 2, 0, 16] = np.nan
    x[0, 0, 0, 0] = -1.0
    for y in (F.relu(x)[0], F.add_relu(x, np.zeros_like(x))[0]):
        assert np.isnan(y[1, 2, 0, 16]) and np.isnan(y).sum() == 1 and y[0, 0, 0, 0] == 0
    g, b = np.ones(17, np.float32), np.zeros(17, np.float32)
    y, _ = F.batch_norm2d(x, g, b, np.zeros(17, np.float32), np.ones(17, np.float32),
                          training=False, relu=True, layout="NHWC")
    assert np.isnan(y[1, 2, 0, 16]) and y[0, 0, 0, 0] == 0
