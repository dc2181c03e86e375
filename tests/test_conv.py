"""Convolution: parity with tests/reference.py on every ISA path x thread count, bitwise
agreement on exactly-representable inputs, argument checking and thread safety."""
from __future__ import annotations

import os
import threading

import numpy as np
import pytest

import reference as ref
import resnet_cpp
from resnet_cpp import _core
from resnet_cpp.functional import conv2d, conv2d_backward
from tolerance import BACKWARD, FORWARD, assert_close
from conftest import THREADS, cap, isa_of, runnable_impls

# (N, C, H, W, K, R, stride, pad): odd shapes that hit every tail (C, K not multiples of
# 8/16, 1x1, stride 2, pad 0, 7x7), then ResNet-20 layers, then ResNet-18/50 layers.
ODD = [
    (1, 3, 7, 7, 5, 3, 1, 1),
    (1, 5, 9, 9, 17, 3, 2, 1),
    (2, 5, 9, 9, 33, 1, 1, 0),
    (1, 3, 9, 9, 17, 1, 2, 0),
    (1, 5, 7, 7, 33, 3, 1, 0),
    (2, 3, 9, 9, 5, 3, 2, 0),
    (1, 3, 9, 9, 17, 7, 2, 3),
    (1, 5, 7, 9, 16, 3, 1, 2),
    (1, 40, 5, 5, 70, 3, 1, 1),
    (2, 4, 8, 8, 3, 3, 3, 1),
]
RESNET20 = [
    (8, 3, 32, 32, 16, 3, 1, 1),
    (8, 16, 32, 32, 16, 3, 1, 1),
    (8, 16, 32, 32, 32, 3, 2, 1),
    (8, 16, 32, 32, 32, 1, 2, 0),
    (8, 32, 16, 16, 32, 3, 1, 1),
    (8, 32, 16, 16, 64, 3, 2, 1),
    (8, 64, 8, 8, 64, 3, 1, 1),
]
RESNET_IMAGENET = [
    (2, 3, 56, 56, 64, 7, 2, 3),    # ResNet-18/50 stem (on a 56x56 crop)
    (2, 256, 14, 14, 64, 1, 1, 0),  # ResNet-50 bottleneck reduce
    (1, 64, 14, 14, 64, 3, 1, 1),   # ResNet-18 layer1-like 3x3
    (1, 32, 48, 48, 64, 3, 1, 1),   # big enough for several cache-sized row bands per image
]


# The convolution's fp32 entries this CPU runs (every entry but bf16), and its fp32 paths:
# the ISAs with a direct entry, which applies to every call. Under one of these caps the
# algorithm setting picks among that ISA's entries.
FP32_IMPLS = [e for e in runnable_impls("conv2d_forward") if not e.startswith("direct_bf16:")]
FP32_PATHS = [isa_of(e) for e in FP32_IMPLS if e.startswith("direct:")]
PASSES = ("forward", "backward_data", "backward_weight")


def algorithm(p, shape):
    """The algorithm a conv pass of this (N, C, H, W, K, R, stride, pad) runs now."""
    N, C, H, W, K, R, st, pad = shape
    return _core.impl_name(f"conv2d_{p}", N, H, W, C, K, R, R, st, pad).split(":")[0]


@pytest.fixture(params=[(i, t) for i in FP32_PATHS for t in THREADS], ids=lambda p: f"{p[0]}-t{p[1]}")
def conv_path(request):
    """Run the test capped at one fp32 conv path, with one thread count."""
    with cap(*request.param):
        yield request.param


def _inputs(shape, seed=0):
    """x, w (He-scaled so y is O(1)), b and dy (scaled like a mean loss so dw is O(1))."""
    N, C, H, W, K, R, st, pad = shape
    g = np.random.default_rng(seed)
    P, Q = (H + 2 * pad - R) // st + 1, (W + 2 * pad - R) // st + 1
    x = g.standard_normal((N, C, H, W)).astype(np.float32)
    w = (g.standard_normal((K, C, R, R)) * np.sqrt(2.0 / (C * R * R))).astype(np.float32)
    b = g.standard_normal(K).astype(np.float32)
    dy = (g.standard_normal((N, K, P, Q)) / np.sqrt(N * P * Q)).astype(np.float32)
    return x, w, b, dy


_REF: dict = {}


def _reference(shape):
    """(inputs, (y, dx, dw, db)) from the float64 oracle, computed once per shape."""
    if shape not in _REF:
        x, w, b, dy = _inputs(shape)
        st, pad = shape[6], shape[7]
        y = ref.conv2d_forward(x, w, b, st, pad)
        _REF[shape] = ((x, w, b, dy), (y, *ref.conv2d_backward(dy, x, w, st, pad)))
    return _REF[shape]


def nhwc(a):
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1))


def rsck(w):
    return np.ascontiguousarray(w.transpose(2, 3, 1, 0))


def check_all(shape):
    """Functional API in both layouts and the raw _core functions against the oracle."""
    (x, w, b, dy), (y_r, dx_r, dw_r, db_r) = _reference(shape)
    R, st, pad = shape[5:]
    # Winograd F(4x4, 3x3) rounds like the whole sum, not each output: up to ~7e-6 of max|ref|
    # measured (PERF.md item 13), so outputs near zero get 3x that as extra absolute tolerance.
    algos = {algorithm(p, shape) for p in PASSES}
    spread = 2e-5 if "winograd4" in algos else 0.0

    def close(a, r, tol, name):
        t = dict(tol)
        t["atol"] = max(t["atol"], spread * float(np.max(np.abs(r))))
        assert_close(a, r, **t, name=name)

    for layout in ("NCHW", "NHWC"):
        to = (lambda a: a) if layout == "NCHW" else nhwc
        y, cache = conv2d(to(x), w, b, st, pad, layout=layout)
        close(y, to(y_r), FORWARD, f"y {layout}")
        dx, dw, db = conv2d_backward(to(dy), cache)
        close(dx, to(dx_r), BACKWARD, f"dx {layout}")
        close(dw, dw_r, BACKWARD, f"dw {layout}")
        close(db, db_r, BACKWARD, f"db {layout}")
    y = _core.conv2d_forward(nhwc(x), rsck(w), None, st, pad)
    close(y, nhwc(y_r - b[None, :, None, None]), FORWARD, "_core y")
    dx = _core.conv2d_backward_data(nhwc(dy), rsck(w), x.shape[2], x.shape[3], st, pad)
    close(dx, nhwc(dx_r), BACKWARD, "_core dx")
    dw, db = _core.conv2d_backward_weight(nhwc(x), nhwc(dy), R, R, st, pad, False)
    assert db is None
    close(dw, rsck(dw_r), BACKWARD, "_core dw")


@pytest.mark.parametrize("shape", ODD, ids=str)
def test_parity_odd_shapes(conv_path, shape):
    check_all(shape)


@pytest.mark.parametrize("shape", RESNET20, ids=str)
def test_parity_resnet20(conv_path, shape):
    check_all(shape)


@pytest.mark.parametrize("shape", RESNET_IMAGENET, ids=str)
def test_parity_resnet_imagenet(conv_path, shape):
    check_all(shape)


# 3x3 stride-1 shapes for Winograd F(2x2, 3x3): odd P/Q (partial tiles), C/K tails, pad 0/1/2,
# a single tile, a 1x1 output, and ResNet-20/18 layers.
WINOGRAD = [
    (1, 16, 7, 7, 16, 3, 1, 1),
    (2, 17, 9, 5, 33, 3, 1, 1),
    (2, 5, 6, 6, 3, 3, 1, 0),
    (1, 40, 5, 5, 70, 3, 1, 2),
    (3, 16, 2, 2, 16, 3, 1, 1),
    (2, 16, 3, 3, 20, 3, 1, 0),
    (1, 32, 1, 1, 32, 3, 1, 1),
    (8, 16, 32, 32, 16, 3, 1, 1),
    (4, 64, 8, 8, 64, 3, 1, 1),
    (1, 128, 7, 7, 96, 3, 1, 1),
]


@pytest.fixture(params=[(e, t) for e in FP32_IMPLS for t in THREADS], ids=lambda p: f"{p[0]}-t{p[1]}")
def conv_impl(request):
    """Force one fp32 entry: cap at its ISA and set its algorithm (for 3x3 stride-1 calls);
    restores both settings afterwards."""
    impl, threads = request.param
    old = _core.conv_algorithm()
    resnet_cpp.set_conv_algorithm(impl.split(":")[0])
    try:
        with cap(isa_of(impl), threads):
            yield impl
    finally:
        resnet_cpp.set_conv_algorithm(old)


@pytest.mark.parametrize("shape", WINOGRAD, ids=str)
def test_parity_3x3_stride1_every_impl(conv_impl, shape):
    N, C, H, W, K, R, st, pad = shape
    for p in PASSES:
        assert _core.impl_name(f"conv2d_{p}", N, H, W, C, K, R, R, st, pad) == conv_impl
    check_all(shape)


def _choices(setting, C, K, R=3, st=1):
    """What each pass runs for a 14x14 batch-16 layer under ``setting``."""
    old = _core.conv_algorithm()
    try:
        resnet_cpp.set_conv_algorithm(setting)
        return [algorithm(p, (16, C, 14, 14, K, R, st, R // 2)) for p in PASSES]
    finally:
        resnet_cpp.set_conv_algorithm(old)


@pytest.mark.skipif(_core.active_isa() == "scalar", reason="Winograd runs on the SIMD paths only")
def test_fast_picks_winograd4_wherever_it_measured_faster():
    assert _choices("fast", 16, 16) == ["winograd4"] * 3
    assert _choices("fast", 256, 256) == ["winograd4"] * 3
    for C, K, R, st in ((16, 32, 3, 2), (16, 32, 1, 1), (16, 3, 3, 1)):
        assert _choices("fast", C, K, R, st) == ["direct"] * 3
    # the stem (C = 3): only backward-data, which reduces over K = 16, runs Winograd
    assert _choices("fast", 3, 16) == ["direct", "winograd4", "direct"]
    # 512x512: only the forward still gains
    assert _choices("fast", 512, 512) == ["winograd4", "direct", "direct"]


@pytest.mark.skipif(_core.active_isa() == "scalar", reason="Winograd runs on the SIMD paths only")
def test_auto_keeps_float32_precision():
    """The default: F(2x2) (which rounds like direct) for forward and backward-data, F(4x4)
    only for backward-weight (whose final transform does not amplify rounding)."""
    assert _choices("auto", 16, 16) == ["winograd2", "winograd2", "winograd4"]
    assert _choices("auto", 128, 128) == ["winograd2", "winograd2", "winograd4"]
    assert _choices("auto", 256, 256) == ["winograd2", "direct", "winograd4"]
    assert _choices("auto", 512, 512) == ["direct"] * 3
    assert _choices("auto", 3, 16) == ["direct", "winograd2", "direct"]
    for C, K, R, st in ((16, 32, 3, 2), (16, 32, 1, 1), (16, 3, 3, 1)):
        assert _choices("auto", C, K, R, st) == ["direct"] * 3
    assert "winograd4" not in _choices("auto", 64, 64)[:2]


@pytest.mark.skipif(_core.active_isa() == "scalar", reason="Winograd runs on the SIMD paths only")
def test_per_pass_setting():
    setting = "forward=winograd4,backward_weight=direct"
    assert _choices(setting, 32, 32) == ["winograd4", "winograd2", "direct"]
    old = _core.conv_algorithm()
    try:
        resnet_cpp.set_conv_algorithm(setting)
        assert resnet_cpp.conv_algorithm() == (
            "forward=winograd4,backward_data=auto,backward_weight=direct")
        resnet_cpp.set_conv_algorithm("backward_data=fast,forward=fast,backward_weight=fast")
        assert resnet_cpp.conv_algorithm() == "fast"
    finally:
        resnet_cpp.set_conv_algorithm(old)


def test_conv_algorithm_names_are_checked():
    old = _core.conv_algorithm()
    with pytest.raises(ValueError, match="^conv algorithm: expected 'auto', 'fast', 'direct'"):
        resnet_cpp.set_conv_algorithm("fft")
    with pytest.raises(ValueError, match="^conv algorithm: expected 'auto', 'fast', 'direct'"):
        resnet_cpp.set_conv_algorithm("forward=fft")
    with pytest.raises(ValueError, match="^pass: expected 'forward'"):
        resnet_cpp.set_conv_algorithm("fwd=direct")
    with pytest.raises(ValueError, match="^conv algorithm: expected 'pass=name' items"):
        resnet_cpp.set_conv_algorithm("forward=direct,winograd2")
    assert _core.conv_algorithm() == old  # a refused setting changes nothing


def test_conv_algorithm_from_environment():
    """RESNET_CPP_CONV_ALGO sets the default at import; a bad value falls back to auto."""
    import subprocess
    import sys

    code = "import resnet_cpp; print(resnet_cpp.conv_algorithm())"
    for env, want in (("direct", "direct"), ("fast", "fast"), ("bogus", "auto"),
                      ("forward=winograd4", "forward=winograd4,backward_data=auto,"
                                            "backward_weight=auto")):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env={**os.environ, "RESNET_CPP_CONV_ALGO": env}, check=True)
        assert out.stdout.strip() == want


def test_out_buffers_are_filled(rng):
    """out= / dw_out= / db_out= receive the results (models reuse buffers)."""
    x = rng.standard_normal((2, 9, 9, 5)).astype(np.float32)
    w = rng.standard_normal((3, 3, 5, 17)).astype(np.float32)
    b = rng.standard_normal(17).astype(np.float32)
    y0 = _core.conv2d_forward(x, w, b, 2, 1)
    out = np.full_like(y0, np.nan)
    assert _core.conv2d_forward(x, w, b, 2, 1, out) is out
    np.testing.assert_array_equal(out, y0)
    dx_out = np.full_like(x, np.nan)
    assert _core.conv2d_backward_data(y0, w, 9, 9, 2, 1, dx_out) is dx_out
    np.testing.assert_array_equal(dx_out, _core.conv2d_backward_data(y0, w, 9, 9, 2, 1))
    dw_out, db_out = np.full_like(w, np.nan), np.full_like(b, np.nan)
    dw, db = _core.conv2d_backward_weight(x, y0, 3, 3, 2, 1, True, dw_out, db_out)
    assert dw is dw_out and db is db_out and np.isfinite(dw).all() and np.isfinite(db).all()
    y_nchw, _ = conv2d(x.transpose(0, 3, 1, 2), w.transpose(3, 2, 0, 1), b, 2, 1)
    out_nchw = np.empty_like(y_nchw)
    assert conv2d(x.transpose(0, 3, 1, 2), w.transpose(3, 2, 0, 1), b, 2, 1, out=out_nchw)[0] is out_nchw
    np.testing.assert_array_equal(out_nchw, y_nchw)


def test_backward_dx_out_may_be_the_forward_input(rng):
    """dx_out receives dx; it may alias the cached input (dw is computed before dx)."""
    x = rng.standard_normal((2, 8, 8, 16)).astype(np.float32)
    w = rng.standard_normal((16, 16, 3, 3)).astype(np.float32)
    dy = rng.standard_normal((2, 8, 8, 16)).astype(np.float32)
    y, cache = conv2d(x.copy(), w, None, 1, 1, layout="NHWC")
    dx_ref, dw_ref, _ = conv2d_backward(dy, cache)
    y, cache = conv2d(x.copy(), w, None, 1, 1, layout="NHWC")
    dx, dw, _ = conv2d_backward(dy, cache, dx_out=cache.x)
    assert dx is cache.x
    np.testing.assert_array_equal(dx, dx_ref)
    np.testing.assert_array_equal(dw, dw_ref)
    _, cache = conv2d(x.transpose(0, 3, 1, 2).copy(), w, None, 1, 1)
    with pytest.raises(ValueError, match="dx_out: only supported with layout='NHWC'"):
        conv2d_backward(dy.transpose(0, 3, 1, 2).copy(), cache, dx_out=np.empty_like(x))


EXACT = [(2, 3, 9, 9, 17, 3, 1, 1), (1, 5, 9, 7, 33, 3, 2, 1), (2, 5, 8, 8, 5, 1, 2, 0),
         (1, 3, 9, 9, 16, 7, 2, 3), (2, 17, 7, 9, 16, 3, 1, 1)]


# F(4x4, 3x3)'s transforms divide by 3 (G has 1/6, 1/12, 1/24): not exact, so not here.
@pytest.mark.parametrize("conv_impl", [(e, t) for e in FP32_IMPLS if not e.startswith("winograd4:")
                                       for t in THREADS], indirect=True, ids=lambda p: f"{p[0]}-t{p[1]}")
@pytest.mark.parametrize("shape", EXACT, ids=str)
def test_dyadic_inputs_bitwise_equal_on_every_path(conv_impl, shape):
    """Multiples of 1/8 in [-2, 2] with small sums are exact in float32, so every
    implementation and thread count must give the same bits as the float64 oracle: this
    separates indexing bugs from rounding. Winograd F(2x2, 3x3) is exact here too: its
    transforms only add, subtract and halve."""
    N, C, H, W, K, R, st, pad = shape
    g = np.random.default_rng(7)
    P, Q = (H + 2 * pad - R) // st + 1, (W + 2 * pad - R) // st + 1
    dyadic = lambda *s: (g.integers(-16, 17, size=s) / 8).astype(np.float32)  # noqa: E731
    x, w, b, dy = dyadic(N, H, W, C), dyadic(R, R, C, K), dyadic(K), dyadic(N, P, Q, K)
    xr, wr, dyr = x.transpose(0, 3, 1, 2), w.transpose(3, 2, 0, 1), dy.transpose(0, 3, 1, 2)
    y_r = nhwc(ref.conv2d_forward(xr, wr, b, st, pad))
    dx_r, dw_r, db_r = ref.conv2d_backward(dyr, xr, wr, st, pad)
    np.testing.assert_array_equal(_core.conv2d_forward(x, w, b, st, pad), y_r)
    np.testing.assert_array_equal(_core.conv2d_backward_data(dy, w, H, W, st, pad), nhwc(dx_r))
    dw, db = _core.conv2d_backward_weight(x, dy, R, R, st, pad, True)
    np.testing.assert_array_equal(dw, rsck(dw_r))
    np.testing.assert_array_equal(db, db_r)


def test_repeatable_for_fixed_threads(conv_path, rng):
    """Same inputs and thread count -> same bits (fixed partition, fixed reduction order)."""
    x = rng.standard_normal((5, 8, 8, 16)).astype(np.float32)
    dy = rng.standard_normal((5, 8, 8, 32)).astype(np.float32)
    a = _core.conv2d_backward_weight(x, dy, 3, 3, 1, 1, True)
    b = _core.conv2d_backward_weight(x, dy, 3, 3, 1, 1, True)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_concurrent_python_threads(rng):
    """4 Python threads run conv2d_forward at once (GIL released) on different inputs."""
    xs = [rng.standard_normal((4, 16, 16, 16)).astype(np.float32) for _ in range(4)]
    w = rng.standard_normal((3, 3, 16, 32)).astype(np.float32)
    expect = [_core.conv2d_forward(x, w, None, 1, 1) for x in xs]
    got = [None] * 4

    def work(i):
        for _ in range(5):
            got[i] = _core.conv2d_forward(xs[i], w, None, 1, 1)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for e, g in zip(expect, got):
        np.testing.assert_array_equal(g, e)


# ----------------------------------------------------------------------- bad inputs

def _good():
    x = np.zeros((2, 7, 7, 3), np.float32)
    w = np.zeros((3, 3, 3, 5), np.float32)
    dy = np.zeros((2, 7, 7, 5), np.float32)
    return x, w, dy


def _fwd(x=None, w=None, b=None, stride=1, pad=1, out=None):
    gx, gw, _ = _good()
    return _core.conv2d_forward(gx if x is None else x, gw if w is None else w, b, stride, pad, out)


def _bwd_data(dy=None, w=None, H=7, W=7, stride=1, pad=1, out=None):
    _, gw, gdy = _good()
    return _core.conv2d_backward_data(gdy if dy is None else dy, gw if w is None else w, H, W,
                                      stride, pad, out)


def _bwd_weight(x=None, dy=None, R=3, S=3, stride=1, pad=1, bias=True, dw_out=None, db_out=None):
    gx, _, gdy = _good()
    return _core.conv2d_backward_weight(gx if x is None else x, gdy if dy is None else dy, R, S,
                                        stride, pad, bias, dw_out, db_out)


def _readonly(a):
    a = a.copy()
    a.flags.writeable = False
    return a


_x, _w, _dy = _good()
BAD = [
    # forward
    (_fwd, dict(x=_x.astype(np.float64)), TypeError, "x: expected dtype float32"),
    (_fwd, dict(w=_w.astype(np.float16)), TypeError, "w: expected dtype float32"),
    (_fwd, dict(x=[[1.0]]), TypeError, "x: expected a NumPy"),
    (_fwd, dict(x=_x[0]), ValueError, "x: expected 4-d"),
    (_fwd, dict(w=_w[0]), ValueError, "w: expected 4-d"),
    (_fwd, dict(w=np.zeros((3, 3, 4, 5), np.float32)), ValueError, "w: expected shape"),
    (_fwd, dict(b=np.zeros(4, np.float32)), ValueError, "b: expected shape"),
    (_fwd, dict(x=np.zeros((2, 7, 7, 6), np.float32)[..., ::2]), ValueError, "x: expected a C-contiguous"),
    (_fwd, dict(out=_readonly(np.zeros((2, 7, 7, 5), np.float32))), ValueError, "out: expected a writeable"),
    (_fwd, dict(out=np.zeros((2, 7, 7, 4), np.float32)), ValueError, "out: expected shape"),
    (_fwd, dict(stride=0), ValueError, "stride"),
    (_fwd, dict(pad=3), ValueError, "pad"),
    (_fwd, dict(pad=-1), ValueError, "pad"),
    (_fwd, dict(x=np.zeros((0, 7, 7, 3), np.float32)), ValueError, "x: empty batch"),
    (_fwd, dict(x=np.zeros((2, 1, 1, 3), np.float32), pad=0), ValueError, "output size < 1"),
    # backward data
    (_bwd_data, dict(dy=_dy.astype(np.float64)), TypeError, "dy: expected dtype float32"),
    (_bwd_data, dict(dy=_dy[0]), ValueError, "dy: expected 4-d"),
    (_bwd_data, dict(w=np.zeros((3, 3, 3, 4), np.float32)), ValueError, "w: expected shape"),
    (_bwd_data, dict(H=9), ValueError, "dy: expected shape"),
    (_bwd_data, dict(H=0), ValueError, "H"),
    (_bwd_data, dict(dy=np.zeros((2, 7, 7, 10), np.float32)[..., ::2]), ValueError, "C-contiguous"),
    (_bwd_data, dict(out=_readonly(_x)), ValueError, "out: expected a writeable"),
    (_bwd_data, dict(stride=0), ValueError, "stride"),
    (_bwd_data, dict(pad=3), ValueError, "pad"),
    (_bwd_data, dict(dy=np.zeros((0, 7, 7, 5), np.float32)), ValueError, "dy: empty batch"),
    (_bwd_data, dict(H=1, W=1, pad=0), ValueError, "output size < 1"),
    # backward weight
    (_bwd_weight, dict(x=_x.astype(np.int32)), TypeError, "x: expected dtype float32"),
    (_bwd_weight, dict(dy=_dy.astype(np.float64)), TypeError, "dy: expected dtype float32"),
    (_bwd_weight, dict(x=_x[0]), ValueError, "x: expected 4-d"),
    (_bwd_weight, dict(dy=np.zeros((2, 5, 5, 5), np.float32)), ValueError, "dy: expected shape"),
    (_bwd_weight, dict(dy=np.zeros((3, 7, 7, 5), np.float32)), ValueError, "dy: expected shape"),
    (_bwd_weight, dict(x=np.zeros((2, 7, 14, 3), np.float32)[:, :, ::2]), ValueError, "x: expected a C-contiguous"),
    (_bwd_weight, dict(dw_out=_readonly(_w)), ValueError, "dw_out: expected a writeable"),
    (_bwd_weight, dict(db_out=_readonly(np.zeros(5, np.float32))), ValueError, "db_out: expected a writeable"),
    (_bwd_weight, dict(bias=False, db_out=np.zeros(5, np.float32)), ValueError, "db_out"),
    (_bwd_weight, dict(stride=0), ValueError, "stride"),
    (_bwd_weight, dict(pad=3), ValueError, "pad"),
    (_bwd_weight, dict(R=0), ValueError, "R"),
    (_bwd_weight, dict(x=np.zeros((0, 7, 7, 3), np.float32)), ValueError, "x: empty batch"),
    (_bwd_weight, dict(x=np.zeros((2, 1, 1, 3), np.float32), pad=0), ValueError, "output size < 1"),
    # functional
    (lambda **k: conv2d(np.zeros((2, 3, 7, 7), np.float32), _w.transpose(3, 2, 0, 1), **k),
     dict(layout="NWHC"), ValueError, "layout"),
    (lambda **k: conv2d(np.zeros((2, 3, 7, 7), np.float32), np.zeros((5, 3, 3), np.float32), **k),
     dict(), ValueError, "w: expected a 4-d"),
    (lambda **k: conv2d(np.zeros((2, 4, 7, 7), np.float32), _w.transpose(3, 2, 0, 1), **k),
     dict(padding=1), ValueError, "w: expected shape"),
    (lambda **k: conv2d(np.zeros((2, 7, 7, 3), np.float64), _w.transpose(3, 2, 0, 1), **k),
     dict(layout="NHWC"), TypeError, "x: expected dtype float32"),
    (lambda **k: conv2d(np.zeros((2, 3, 7, 7), np.float32), _w.transpose(3, 2, 0, 1), **k),
     dict(out=np.zeros((2, 5, 7, 7), np.float64), padding=1), TypeError, "^out: expected dtype float32"),
]


@pytest.mark.parametrize("fn,kwargs,exc,match", BAD, ids=[f"{i}-{b[3]}" for i, b in enumerate(BAD)])
def test_bad_inputs_raise_naming_the_argument(fn, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        fn(**kwargs)
