"""bf16 convolutions (precision "bf16" on the avx512_bf16 path): parity with the float64
oracle on bf16-rounded inputs (tight: the fp32 tolerances, since only the fp32 sums round),
with fp32 (tolerance.BF16_VS_FP32), bitwise on inputs bf16 holds exactly; the rounding
against its scalar reference; the fp32 fallback with its warning; the settings."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import warnings

import numpy as np
import pytest

import reference as ref
import resnet_cpp
from conftest import THREADS, isa_of, runnable_impls
from resnet_cpp import _core
from test_conv import EXACT, ODD, RESNET20, RESNET_IMAGENET, _inputs, nhwc, rsck
from test_reference import bf16_cases
from tolerance import BACKWARD, FORWARD, assert_close, assert_close_bf16

# Paths that run bf16 convolutions on this machine (none without AVX512-BF16): the ISAs of
# the conv list's bf16 entries this CPU runs.
BF16_PATHS = [isa_of(e) for e in runnable_impls("conv2d_forward") if e.startswith("direct_bf16:")]

# More ResNet-50 shapes: the 1x1 expansion, a stride-2 3x3 on an odd size, a stride-2
# projection shortcut.
RESNET50 = [
    (2, 64, 14, 14, 256, 1, 1, 0),
    (2, 128, 15, 15, 128, 3, 2, 1),
    (1, 256, 7, 7, 512, 1, 2, 0),
]
# Images big enough (over 1 MiB of pairs) that backward-weight splits them into bands of
# rows; few input channels keep the oracle fast.
BANDS = [
    (1, 8, 100, 100, 64, 3, 1, 1),
    (1, 4, 150, 150, 64, 3, 2, 1),
]
SHAPES = ODD + RESNET20 + RESNET_IMAGENET + RESNET50 + BANDS


@pytest.fixture(params=[(i, t) for i in BF16_PATHS for t in THREADS], ids=lambda p: f"{p[0]}-t{p[1]}")
def bf16_path(request):
    """bf16 precision on one bf16 path and thread count; restores all three settings."""
    isa, threads = request.param
    old = (_core.max_isa(), _core.num_threads(), _core.precision())
    resnet_cpp.set_max_isa(isa)
    resnet_cpp.set_num_threads(threads)
    _core.set_precision("bf16")
    assert _core.bf16_active()
    yield request.param
    resnet_cpp.set_max_isa(old[0])
    resnet_cpp.set_num_threads(old[1])
    _core.set_precision(old[2])


def _ours(shape, x, w, b, dy):
    """(y, dx, dw, db) from the raw NHWC entry points; x, w, dy in NCHW / OIHW."""
    N, C, H, W, K, R, st, pad = shape
    y = _core.conv2d_forward(nhwc(x), rsck(w), b, st, pad)
    dx = _core.conv2d_backward_data(nhwc(dy), rsck(w), H, W, st, pad)
    dw, db = _core.conv2d_backward_weight(nhwc(x), nhwc(dy), R, R, st, pad, True)
    return y, dx, dw, db


_REF: dict = {}


def _oracle(shape, rounded: bool):
    """Float64 (y, dx, dw, db) on the inputs, or on their bf16 roundings. db always sums
    the unrounded dy: the kernels sum the fp32 gradient for it."""
    key = (shape, rounded)
    if key not in _REF:
        x, w, b, dy = _inputs(shape)
        st, pad = shape[6], shape[7]
        if rounded:
            x, w, dyr = ref.bf16_round(x), ref.bf16_round(w), ref.bf16_round(dy)
        else:
            dyr = dy
        dx, dw, _ = ref.conv2d_backward(dyr, x, w, st, pad)
        db = ref.conv2d_backward(dy, x, w, st, pad)[2]
        _REF[key] = (nhwc(ref.conv2d_forward(x, w, b, st, pad)), nhwc(dx), rsck(dw), db)
    return _REF[key]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_parity_on_rounded_inputs_tight(bf16_path, shape):
    got = _ours(shape, *_inputs(shape))
    want = _oracle(shape, rounded=True)
    for name, g, r, tol in zip(("y", "dx", "dw", "db"), got, want,
                               (FORWARD, BACKWARD, BACKWARD, BACKWARD)):
        assert_close(g, r, **tol, name=name)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_parity_against_fp32(bf16_path, shape):
    got = _ours(shape, *_inputs(shape))
    want = _oracle(shape, rounded=False)
    for name, g, r in zip(("y", "dx", "dw", "db"), got, want):
        assert_close_bf16(g, r, name=name)
    # ...and bf16 did round: the results are not fp32's (which are within 1e-6 here).
    assert np.max(np.abs(got[0] - want[0])) > 1e-4 * np.max(np.abs(want[0]))


@pytest.mark.parametrize("shape", EXACT, ids=str)
def test_dyadic_inputs_bitwise_equal(bf16_path, shape):
    """Multiples of 1/8 in [-2, 2] are bf16 numbers and their sums here are exact in fp32,
    so the bf16 path must give the float64 oracle's bits: indexing bugs cannot hide."""
    N, C, H, W, K, R, st, pad = shape
    g = np.random.default_rng(11)
    P, Q = (H + 2 * pad - R) // st + 1, (W + 2 * pad - R) // st + 1
    dyadic = lambda *s: (g.integers(-16, 17, size=s) / 8).astype(np.float32)  # noqa: E731
    x, w, b, dy = dyadic(N, C, H, W), dyadic(K, C, R, R), dyadic(K), dyadic(N, K, P, Q)
    y, dx, dw, db = _ours(shape, x, w, b, dy)
    dx_r, dw_r, db_r = ref.conv2d_backward(dy, x, w, st, pad)
    np.testing.assert_array_equal(y, nhwc(ref.conv2d_forward(x, w, b, st, pad)))
    np.testing.assert_array_equal(dx, nhwc(dx_r))
    np.testing.assert_array_equal(dw, rsck(dw_r))
    np.testing.assert_array_equal(db, db_r)


def test_impl_name_reports_bf16(bf16_path):
    for p in ("forward", "backward_data", "backward_weight"):
        assert _core.impl_name(f"conv2d_{p}", 8, 16, 16, 16, 16, 3, 3, 1, 1) == (
            f"direct_bf16:{bf16_path[0]}")


def test_repeatable_and_thread_safe(bf16_path, rng):
    """Fixed threads give fixed bits; Python threads may run bf16 convolutions at once
    (per-thread workspaces)."""
    x = rng.standard_normal((4, 9, 9, 20)).astype(np.float32)
    w = rng.standard_normal((3, 3, 20, 24)).astype(np.float32)
    dy = rng.standard_normal((4, 9, 9, 24)).astype(np.float32)
    expect = (_core.conv2d_forward(x, w, None, 1, 1),
              _core.conv2d_backward_weight(x, dy, 3, 3, 1, 1, True)[0])
    got = [None] * 3

    def work(i):
        for _ in range(3):
            got[i] = (_core.conv2d_forward(x, w, None, 1, 1),
                      _core.conv2d_backward_weight(x, dy, 3, 3, 1, 1, True)[0])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for g in got:
        np.testing.assert_array_equal(g[0], expect[0])
        np.testing.assert_array_equal(g[1], expect[1])


@pytest.mark.impls("round_to_bf16")
def test_round_to_bf16_matches_reference(impl_threads):
    """Every implementation of the rounding (C++, and vcvtneps2bf16 on avx512_bf16)
    against the reference, bit for bit: ties, overflow, denormals, infinities, NaNs."""
    bits = bf16_cases()
    got = _core.round_to_bf16(bits.view(np.float32)).view(np.uint32)
    np.testing.assert_array_equal(got, ref.bf16_round(bits.view(np.float32)).view(np.uint32))


def test_below_bf16_paths_run_fp32_and_warn():
    """Capped under avx512_bf16, bf16 precision runs the fp32 kernels, with a warning."""
    x, w, b, dy = _inputs(ODD[1])
    N, C, H, W, K, R, st, pad = ODD[1]
    old = (_core.max_isa(), _core.precision())
    try:
        resnet_cpp.set_max_isa("avx512")
        _core.set_precision("fp32")
        fp32 = _ours(ODD[1], x, w, b, dy)
        with pytest.warns(RuntimeWarning, match=r"precision 'bf16' needs AVX512-BF16"):
            resnet_cpp.set_precision("bf16")
        assert resnet_cpp.precision() == "bf16" and not resnet_cpp.bf16_active()
        assert _core.impl_name("conv2d_forward", N, H, W, C, K, R, R, st, pad).startswith("direct:")
        for a, e in zip(_ours(ODD[1], x, w, b, dy), fp32):
            np.testing.assert_array_equal(a, e)
        assert "runs fp32" in resnet_cpp.build_info()["precision"]
    finally:
        resnet_cpp.set_max_isa(old[0])
        _core.set_precision(old[1])


def test_use_precision_restores():
    """The context manager sets and restores; it warns exactly where bf16 cannot run."""
    old = resnet_cpp.precision()
    with warnings.catch_warnings(record=True) as log:
        warnings.simplefilter("always")
        with resnet_cpp.use_precision("bf16"):
            assert resnet_cpp.precision() == "bf16"
            assert resnet_cpp.bf16_active() == bool(BF16_PATHS)
    assert resnet_cpp.precision() == old
    assert [str(w.message)[:32] for w in log] == (
        [] if BF16_PATHS else ["precision 'bf16' needs AVX512-BF"])


def test_precision_names_are_checked():
    with pytest.raises(ValueError, match=r"^precision: expected 'fp32' or 'bf16', got 'fp16'"):
        resnet_cpp.set_precision("fp16")
    with pytest.raises(ValueError, match=r"^precision: expected 'fp32' or 'bf16'"):
        _core.set_precision("bfloat16")
    with pytest.raises(TypeError, match=r"^x: expected dtype float32"):
        _core.round_to_bf16(np.zeros(3))


def test_precision_from_environment():
    """RESNET_CPP_PRECISION sets the default at import; a bad value falls back to fp32;
    bf16 under a cap without it warns at import."""
    code = "import resnet_cpp; print(resnet_cpp.precision())"
    for env, want in (("bf16", "bf16"), ("fp32", "fp32"), ("bogus", "fp32")):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env={**os.environ, "RESNET_CPP_PRECISION": env}, check=True)
        assert out.stdout.strip() == want
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "RESNET_CPP_PRECISION": "bf16",
                              "RESNET_CPP_MAX_ISA": "avx512"})
    assert "RuntimeWarning: precision 'bf16' needs AVX512-BF16" in out.stderr
