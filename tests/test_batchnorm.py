"""Batch norm (train/eval, fused ReLU) against the float64 reference, on every ISA path.

Parity runs through the functional API in both layouts and through the raw NHWC _core
functions. BN uses the BACKWARD tolerance everywhere (its statistics are reductions over
N*H*W terms). The fused-ReLU backward recomputes its mask from x; the reference masks dy with
OUR y, so a value rounding to either side of 0 cannot make the comparison flaky, and
test_relu_mask_matches_forward checks the recomputed mask against y > 0 bit for bit.
"""
from __future__ import annotations

import threading

import numpy as np
import pytest

from errors import raises_arg
import reference as ref
from resnet_cpp import _core
from resnet_cpp.functional import batch_norm2d, batch_norm2d_backward
from tolerance import BACKWARD, assert_close

# Kernel tests run on each entry of this op's implementation list (conftest.impl_threads).
pytestmark = pytest.mark.impls("batch_norm_forward_train")

# (N, C, H, W): tails (C not a multiple of 8/16, N=1 with H*W > 1), both kernel walks
# (pattern period lcm(C, 16) <= 64 floats: C=3; longer: C=5, 17, 33; page-long rows taken two
# at a time: C=65, 1024), big enough odd shapes that 2 threads split rows whose count is not
# a multiple of the 16 rows in a period, ResNet-20 stages at N=8 and a ResNet-50 stage-3 shape.
ODD = [(1, 3, 7, 7), (2, 5, 9, 9), (1, 17, 7, 7), (3, 33, 9, 7), (2, 65, 7, 7), (1, 1024, 3, 3),
       (4, 17, 23, 25), (8, 5, 31, 29)]
RESNET = [(8, 16, 32, 32), (8, 32, 16, 16), (8, 64, 8, 8), (2, 256, 14, 14)]


def _params(rng, C):
    gamma = rng.uniform(0.5, 1.5, C).astype(np.float32)
    beta = rng.standard_normal(C).astype(np.float32)
    rm = (0.1 * rng.standard_normal(C)).astype(np.float32)
    rv = rng.uniform(0.5, 2.0, C).astype(np.float32)
    return gamma, beta, rm, rv


def _nhwc(a):
    return np.ascontiguousarray(np.moveaxis(a, 1, -1))


def _nchw(a):
    return np.ascontiguousarray(np.moveaxis(a, -1, 1))


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("shape", ODD + RESNET, ids=str)
def test_train_functional(impl_threads, rng, shape, layout, relu):
    N, C, H, W = shape
    # Offset mean: checks the statistics do not cancel catastrophically.
    x = (rng.standard_normal(shape) * 2 + 3).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    gamma, beta, rm, rv = _params(rng, C)
    rm_ref, rv_ref = ref.batch_norm_running_update(rm, rv, x, momentum=0.1)
    y_ref, mean_ref, rstd_ref = ref.batch_norm_train_forward(x, gamma, beta)
    if relu:
        y_ref = ref.relu_forward(y_ref)

    to = _nhwc if layout == "NHWC" else (lambda a: a)
    y, cache = batch_norm2d(to(x), gamma, beta, rm, rv, training=True, relu=relu, layout=layout)
    back = _nchw if layout == "NHWC" else (lambda a: a)
    assert_close(back(y), y_ref, **BACKWARD, name="y")
    assert_close(cache.mean, mean_ref, **BACKWARD, name="mean")
    assert_close(cache.rstd, rstd_ref, **BACKWARD, name="rstd")
    assert_close(rm, rm_ref, **BACKWARD, name="running_mean")
    assert_close(rv, rv_ref, **BACKWARD, name="running_var")

    dx, dgamma, dbeta = batch_norm2d_backward(to(dy), cache)
    dy_eff = ref.relu_backward(dy, back(y)) if relu else dy
    dx_ref, dgamma_ref, dbeta_ref = ref.batch_norm_backward(dy_eff, x, gamma, mean_ref, rstd_ref)
    assert_close(back(dx), dx_ref, **BACKWARD, name="dx")
    assert_close(dgamma, dgamma_ref, **BACKWARD, name="dgamma")
    assert_close(dbeta, dbeta_ref, **BACKWARD, name="dbeta")


@pytest.mark.impls("batch_norm_forward_eval")
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("shape", [(1, 5, 9, 9), (2, 17, 7, 7), (8, 32, 16, 16)], ids=str)
def test_eval_functional(impl_threads, rng, shape, layout, relu):
    C = shape[1]
    x = rng.standard_normal(shape).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    gamma, beta, rm, rv = _params(rng, C)
    rm0, rv0 = rm.copy(), rv.copy()
    to = _nhwc if layout == "NHWC" else (lambda a: a)
    back = _nchw if layout == "NHWC" else (lambda a: a)

    y, cache = batch_norm2d(to(x), gamma, beta, rm, rv, training=False, relu=relu, layout=layout)
    y_ref = ref.batch_norm_eval_forward(x, gamma, beta, rm, rv)
    if relu:
        y_ref = ref.relu_forward(y_ref)
    assert_close(back(y), y_ref, **BACKWARD, name="y")
    assert np.array_equal(rm, rm0) and np.array_equal(rv, rv0), "eval must not touch running stats"

    dx, dgamma, dbeta = batch_norm2d_backward(to(dy), cache)
    dy_eff = ref.relu_backward(dy, back(y)) if relu else dy
    dx_ref, dgamma_ref, dbeta_ref = ref.batch_norm_eval_backward(dy_eff, x, gamma, rm, rv)
    assert_close(back(dx), dx_ref, **BACKWARD, name="dx")
    assert_close(dgamma, dgamma_ref, **BACKWARD, name="dgamma")
    assert_close(dbeta, dbeta_ref, **BACKWARD, name="dbeta")


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("shape", ODD + RESNET[:1], ids=str)
def test_residual_functional(impl_threads, rng, shape, layout, relu, training):
    """relu?(bn(x) + residual): the block join, against the reference ops composed."""
    C = shape[1]
    x = (rng.standard_normal(shape) * 2 + 3).astype(np.float32)
    res = rng.standard_normal(shape).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    gamma, beta, rm, rv = _params(rng, C)
    y_ref, back_ref = ref.batch_norm_join(x, res, gamma, beta, rm, rv, relu, training)
    to = _nhwc if layout == "NHWC" else (lambda a: a)
    back = _nchw if layout == "NHWC" else (lambda a: a)

    y, cache = batch_norm2d(to(x), gamma, beta, rm.copy(), rv.copy(), training=training,
                            relu=relu, layout=layout, residual=to(res))
    assert_close(back(y), y_ref, **BACKWARD, name="y")
    dx, dgamma, dbeta, dres = batch_norm2d_backward(to(dy), cache)
    dx_ref, dg_ref, db_ref, d_ref = back_ref(dy, back(y))  # our mask, see module doc
    assert_close(back(dres), d_ref, **BACKWARD, name="dresidual")
    assert_close(back(dx), dx_ref, **BACKWARD, name="dx")
    assert_close(dgamma, dg_ref, **BACKWARD, name="dgamma")
    assert_close(dbeta, db_ref, **BACKWARD, name="dbeta")


@pytest.mark.parametrize("shape", [(2, 7, 7, 17), (4, 8, 8, 16), (1, 3, 3, 1024)], ids=str)
def test_residual_equals_unfused_bitwise(impl_threads, rng, shape):
    """The fused join rounds like bn then add_relu, and may write over its residual."""
    C = shape[-1]
    x = rng.standard_normal(shape).astype(np.float32)
    res = rng.standard_normal(shape).astype(np.float32)
    gamma, beta, rm, rv = _params(rng, C)
    z, _, _ = _core.batch_norm_forward_train(x, gamma, beta, rm.copy(), rv.copy(), 0.1, 1e-5,
                                             False)
    want = _core.add_relu_forward(z, res)
    out = res.copy()
    y, _, _ = _core.batch_norm_forward_train(x, gamma, beta, rm.copy(), rv.copy(), 0.1, 1e-5,
                                             True, out=out, residual=out)
    assert y is out and np.array_equal(y, want)
    ze = _core.batch_norm_forward_eval(x, gamma, beta, rm, rv, 1e-5, False)
    ye = _core.batch_norm_forward_eval(x, gamma, beta, rm, rv, 1e-5, True, residual=res)
    assert np.array_equal(ye, _core.add_relu_forward(ze, res))


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", [(1, 7, 7, 3), (3, 9, 7, 33), (2, 3, 3, 1024), (8, 32, 32, 16)],
                         ids=str)
def test_relu_mask_matches_forward(impl_threads, rng, shape, training):
    """The backward's recomputed ReLU mask is exactly the forward's y > 0: the fused backward
    equals a plain backward of dy * (y > 0) bit for bit."""
    C = shape[-1]
    x = rng.standard_normal(shape).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    gamma, beta, rm, rv = _params(rng, C)
    beta[:] = 0  # centered pre-activations: about half of the mask is off
    y, cache = batch_norm2d(x, gamma, beta, rm, rv, training=training, relu=True, layout="NHWC")
    fused = _core.batch_norm_backward(dy, x, gamma, cache.mean, cache.rstd, beta=beta,
                                      relu=True, train=training)
    plain = _core.batch_norm_backward(np.where(y > 0, dy, 0).astype(np.float32), x, gamma,
                                      cache.mean, cache.rstd, train=training)
    for name, a, b in zip(["dx", "dgamma", "dbeta"], fused, plain):
        assert np.array_equal(a, b), name


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("shape", [(1, 7, 7, 3), (3, 9, 7, 33), (2, 3, 3, 1024), (8, 16, 16, 32)],
                         ids=str)
def test_backward_add_equals_separate_add(impl_threads, rng, shape, relu, training):
    """add=: dx = bn'(dy) + add in one pass, bit for bit the separate add; out=dy still works."""
    C = shape[-1]
    x = rng.standard_normal(shape).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    other = rng.standard_normal(shape).astype(np.float32)
    gamma, beta, rm, rv = _params(rng, C)
    _, cache = batch_norm2d(x, gamma, beta, rm, rv, training=training, relu=relu, layout="NHWC")
    dx, dg, db = batch_norm2d_backward(dy, cache)
    d = dy.copy()
    got, dg2, db2 = batch_norm2d_backward(d, cache, out=d, add=other)
    assert got is d
    assert np.array_equal(got, _core.add_forward(dx, other))
    assert np.array_equal(dg, dg2) and np.array_equal(db, db2)
    # NCHW: add is given in the caller's layout
    _, cache = batch_norm2d(_nchw(x), gamma, beta, rm, rv, training=training, relu=relu)
    got = batch_norm2d_backward(_nchw(dy), cache, add=_nchw(other))[0]
    assert np.array_equal(got, _nchw(_core.add_forward(dx, other)))


def test_backward_in_place(impl_threads, rng):
    """out=dy: dx overwrites dy with the same bits as a fresh dx (train and eval, ReLU)."""
    shape = (4, 9, 9, 17)
    x = rng.standard_normal(shape).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    gamma, beta, rm, rv = _params(rng, 17)
    for training in (True, False):
        y, cache = batch_norm2d(x, gamma, beta, rm.copy(), rv.copy(), training=training,
                                relu=True, layout="NHWC")
        want = batch_norm2d_backward(dy, cache)
        d = dy.copy()
        got = batch_norm2d_backward(d, cache, out=d)
        assert got[0] is d
        for a, b in zip(got, want):
            assert np.array_equal(a, b)


def test_statistics_and_gradients_into_given_arrays(rng):
    """mean_out/rstd_out (train and eval) and dgamma_out/dbeta_out receive the results."""
    x = rng.standard_normal((3, 5, 5, 7)).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    gamma, beta, rm, rv = _params(rng, 7)
    mean, rstd, dg, db = (np.full(7, np.nan, np.float32) for _ in range(4))
    _, m1, r1 = _core.batch_norm_forward_train(x, gamma, beta, rm.copy(), rv.copy())
    _, m2, r2 = _core.batch_norm_forward_train(x, gamma, beta, rm.copy(), rv.copy(),
                                               mean_out=mean, rstd_out=rstd)
    assert m2 is mean and r2 is rstd
    assert np.array_equal(mean, m1) and np.array_equal(rstd, r1)
    _core.batch_norm_forward_eval(x, gamma, beta, rm, rv, 1e-5, mean_out=mean, rstd_out=rstd)
    assert np.array_equal(mean, rm)
    assert np.array_equal(rstd, (1 / np.sqrt(rv.astype(np.float64) + 1e-5)).astype(np.float32))
    want = _core.batch_norm_backward(dy, x, gamma, m1, r1)
    got = _core.batch_norm_backward(dy, x, gamma, m1, r1, dgamma_out=dg, dbeta_out=db)
    assert got[1] is dg and got[2] is db
    for a, b in zip(got, want):
        assert np.array_equal(a, b)
    with pytest.raises(ValueError, match=r"^rstd_out: expected shape \(7,\)"):
        _core.batch_norm_forward_eval(x, gamma, beta, rm, rv, rstd_out=np.zeros(6, np.float32))


@pytest.mark.parametrize("shape", [(1, 9, 9, 3), (2, 7, 7, 17), (8, 8, 8, 64)], ids=str)
def test_core_raw_nhwc_and_2d(impl_threads, rng, shape):
    """The raw kernels on NHWC input, also flattened to (M, C), with out= buffers."""
    C = shape[-1]
    x = rng.standard_normal(shape).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    gamma, beta, rm, rv = _params(rng, C)
    y_ref, mean_ref, rstd_ref = ref.batch_norm_train_forward(_nchw(x), gamma, beta)
    y_ref = ref.relu_forward(y_ref)
    for xin, dyin in [(x, dy), (x.reshape(-1, C), dy.reshape(-1, C))]:
        out = np.full(xin.shape, np.nan, np.float32)
        y, mean, rstd = _core.batch_norm_forward_train(
            xin, gamma, beta, rm.copy(), rv.copy(), 0.1, 1e-5, True, out=out)
        assert y is out
        assert_close(_nchw(y.reshape(shape)), y_ref, **BACKWARD, name="y")
        assert_close(mean, mean_ref, **BACKWARD, name="mean")
        assert_close(rstd, rstd_ref, **BACKWARD, name="rstd")
        dout = np.full(xin.shape, np.nan, np.float32)
        dx, dgamma, dbeta = _core.batch_norm_backward(dyin, xin, gamma, mean, rstd, beta=beta,
                                                      relu=True, train=True, out=dout)
        assert dx is dout
        dy_eff = ref.relu_backward(_nchw(dy), _nchw(y.reshape(shape)))
        dx_ref, dgamma_ref, dbeta_ref = ref.batch_norm_backward(dy_eff, _nchw(x), gamma,
                                                                mean_ref, rstd_ref)
        assert_close(_nchw(dx.reshape(shape)), dx_ref, **BACKWARD, name="dx")
        assert_close(dgamma, dgamma_ref, **BACKWARD, name="dgamma")
        assert_close(dbeta, dbeta_ref, **BACKWARD, name="dbeta")

        ye = _core.batch_norm_forward_eval(xin, gamma, beta, rm, rv, 1e-5, False)
        ye_ref = ref.batch_norm_eval_forward(_nchw(x), gamma, beta, rm, rv)
        assert_close(_nchw(ye.reshape(shape)), ye_ref, **BACKWARD, name="y_eval")


def test_running_stats_momentum(rng):
    """momentum 0 leaves running stats alone; momentum 1 replaces them by the batch stats."""
    x = rng.standard_normal((2, 5, 3, 3)).astype(np.float32)
    gamma, beta, rm, rv = _params(rng, 5)
    rm0, rv0 = rm.copy(), rv.copy()
    batch_norm2d(x, gamma, beta, rm, rv, momentum=0.0)
    assert np.array_equal(rm, rm0) and np.array_equal(rv, rv0)
    batch_norm2d(x, gamma, beta, rm, rv, momentum=1.0)
    m = x.astype(np.float64).mean(axis=(0, 2, 3))
    v = x.astype(np.float64).var(axis=(0, 2, 3), ddof=1)
    assert_close(rm, m, **BACKWARD, name="running_mean")
    assert_close(rv, v, **BACKWARD, name="running_var")


def _dyadic(rng, shape):
    """Multiples of 1/8 in [-2, 2]: every sum and product below is exact in float32."""
    return (rng.integers(-16, 17, shape) / 8.0).astype(np.float32)


def test_dyadic_bitwise_across_impls(rng):
    """Where the math is exact, every implementation and thread count gives the same bits.

    Train statistics (exact float sums, exact float64 combine) and running stats; eval
    forward/backward with rstd = 2 exactly (rv + eps = 1/4) and power-of-two gammas.
    """
    from conftest import THREADS, cap, isa_of, runnable_impls

    shape = (4, 8, 8, 17)  # NHWC, M = 256 (a power of two: mean and var are exact)
    C = shape[-1]
    x = _dyadic(rng, shape)
    dy = _dyadic(rng, shape)
    gamma = (2.0 ** rng.integers(-2, 3, C)).astype(np.float32)
    beta = _dyadic(rng, C)
    rm = _dyadic(rng, C)
    eps = 2.0 ** -20
    rv = np.full(C, 0.25 - eps, np.float32)
    y_eval_ref = (x - rm) * (gamma * 2) + beta  # exact in float32
    results = []
    for impl in runnable_impls("batch_norm_forward_train"):
        for t in THREADS:
            with cap(isa_of(impl), t):
                rmt, rvt = rm.copy(), rv.copy()
                _, mean, rstd = _core.batch_norm_forward_train(x, gamma, beta, rmt, rvt, 0.5,
                                                               eps, False)
                ye = _core.batch_norm_forward_eval(x, gamma, beta, rm, rv, eps, True)
                re = np.full(C, 2.0, np.float32)
                dxe, dge, dbe = _core.batch_norm_backward(dy, x, gamma, rm, re, beta=beta,
                                                          relu=True, train=False)
            results.append((impl, t, [mean, rstd, rmt, rvt, ye, dxe, dge, dbe]))
    impl0, t0, first = results[0]
    assert np.array_equal(first[4], np.maximum(y_eval_ref, 0))
    assert np.array_equal(first[5], np.where(first[4] > 0, dy * gamma * 2, 0))
    for impl, t, arrays in results[1:]:
        for name, a, b in zip(["mean", "rstd", "rm", "rv", "y_eval", "dx", "dgamma", "dbeta"],
                              arrays, first):
            assert np.array_equal(a, b), f"{name}: {impl}-t{t} differs from {impl0}-t{t0}"


def test_deterministic_for_thread_count(impl_threads, rng):
    x = rng.standard_normal((8, 16, 16, 32)).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    gamma, beta, rm, rv = _params(rng, 32)
    runs = []
    for _ in range(2):
        y, m, r = _core.batch_norm_forward_train(x, gamma, beta, rm.copy(), rv.copy(), 0.1,
                                                 1e-5, True)
        runs.append((y, m, r) + _core.batch_norm_backward(dy, x, gamma, m, r, beta=beta,
                                                          relu=True))
    for a, b in zip(*runs):
        assert np.array_equal(a, b)


def test_thread_safety(rng):
    """Four Python threads run BN concurrently on different inputs (the GIL is released)."""
    shapes = [(4, 16, 16, 16), (2, 9, 9, 5), (4, 8, 8, 64), (1, 7, 7, 3)]
    jobs = []
    for s in shapes:
        x = rng.standard_normal(s).astype(np.float32)
        dy = rng.standard_normal(s).astype(np.float32)
        g, b, rm, rv = _params(rng, s[-1])
        jobs.append((x, dy, g, b, rm, rv))

    def run(x, dy, g, b, rm, rv):
        y, m, r = _core.batch_norm_forward_train(x, g, b, rm.copy(), rv.copy(), 0.1, 1e-5, True)
        return (y, m, r) + _core.batch_norm_backward(dy, x, g, m, r, beta=b, relu=True)

    expected = [run(*j) for j in jobs]
    got = [None] * len(jobs)
    errors = []

    def worker(i):
        try:
            for _ in range(20):
                res = run(*jobs[i])
                for a, e in zip(res, expected[i]):
                    assert np.array_equal(a, e)
            got[i] = True
        except Exception as exc:  # surfaced below: pytest cannot see other threads' raises
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert all(got)


# ---------------------------------------------------------------- bad inputs

def _bn_args(C=4, shape=(2, 3, 3, 4)):
    x = np.zeros(shape, np.float32)
    p = [np.ones(C, np.float32) for _ in range(4)]
    return x, *p


def _ro(a):
    a = a.copy()
    a.flags.writeable = False
    return a


def _bad_cases():
    x, g, b, rm, rv = _bn_args()
    m, r = np.zeros(4, np.float32), np.ones(4, np.float32)
    T, E = _core.batch_norm_forward_train, _core.batch_norm_forward_eval
    B = _core.batch_norm_backward
    return {
        # forward_train
        "train x dtype": (lambda: T(x.astype(np.float64), g, b, rm, rv), TypeError, "x"),
        "train x ndim": (lambda: T(x[0], g, b, rm, rv), ValueError, "x"),
        "train x list": (lambda: T(x.tolist(), g, b, rm, rv), TypeError, "x"),
        "train gamma C": (lambda: T(x, np.ones(5, np.float32), b, rm, rv), ValueError, "gamma"),
        "train beta C": (lambda: T(x, g, np.ones(3, np.float32), rm, rv), ValueError, "beta"),
        "train x noncontig": (lambda: T(x[:, :, ::2], g, b, rm, rv), ValueError, "x"),
        "train rm readonly": (lambda: T(x, g, b, _ro(rm), rv), ValueError, "running_mean"),
        "train rv readonly": (lambda: T(x, g, b, rm, _ro(rv)), ValueError, "running_var"),
        "train rv dtype": (lambda: T(x, g, b, rm, rv.astype(np.float64)), TypeError, "running_var"),
        "train out readonly": (lambda: T(x, g, b, rm, rv, out=_ro(x)), ValueError, "out"),
        "train out shape": (lambda: T(x, g, b, rm, rv, out=x[:1].copy()), ValueError, "out"),
        "train eps 0": (lambda: T(x, g, b, rm, rv, 0.1, 0.0), ValueError, "eps"),
        "train eps nan": (lambda: T(x, g, b, rm, rv, 0.1, float("nan")), ValueError, "eps"),
        "train momentum <0": (lambda: T(x, g, b, rm, rv, -0.1), ValueError, "momentum"),
        "train momentum >1": (lambda: T(x, g, b, rm, rv, 1.5), ValueError, "momentum"),
        "train empty batch": (lambda: T(x[:0], g, b, rm, rv), ValueError, "x"),
        "train one value": (lambda: T(x[:1, :1, :1], g, b, rm, rv), ValueError, "x"),
        "train residual shape": (lambda: T(x, g, b, rm, rv, residual=x[:1].copy()), ValueError,
                                 "residual"),
        "train residual dtype": (lambda: T(x, g, b, rm, rv, residual=x.astype(np.float64)),
                                 TypeError, "residual"),
        # forward_eval
        "eval x dtype": (lambda: E(x.astype(np.float16), g, b, rm, rv), TypeError, "x"),
        "eval x ndim": (lambda: E(x[None], g, b, rm, rv), ValueError, "x"),
        "eval rm C": (lambda: E(x, g, b, np.ones(2, np.float32), rv), ValueError, "running_mean"),
        "eval rv noncontig": (lambda: E(x, g, b, rm, np.ones(8, np.float32)[::2]), ValueError,
                              "running_var"),
        "eval out readonly": (lambda: E(x, g, b, rm, rv, out=_ro(x)), ValueError, "out"),
        "eval eps <0": (lambda: E(x, g, b, rm, rv, -1e-5), ValueError, "eps"),
        "eval empty batch": (lambda: E(x[:, :0], g, b, rm, rv), ValueError, "x"),
        "eval residual noncontig": (lambda: E(x, g, b, rm, rv, residual=np.zeros(
            (2, 3, 6, 4), np.float32)[:, :, ::2]), ValueError, "residual"),
        # backward
        "bwd dy shape": (lambda: B(x[:1].copy(), x, g, m, r), ValueError, "dy"),
        "bwd dy dtype": (lambda: B(x.astype(np.float64), x, g, m, r), TypeError, "dy"),
        "bwd x ndim": (lambda: B(x, x[0], g, m, r), ValueError, "x"),
        "bwd gamma C": (lambda: B(x, x, np.ones(3, np.float32), m, r), ValueError, "gamma"),
        "bwd mean C": (lambda: B(x, x, g, np.ones(5, np.float32), r), ValueError, "mean"),
        "bwd rstd dtype": (lambda: B(x, x, g, m, r.astype(np.int32)), TypeError, "rstd"),
        "bwd relu no beta": (lambda: B(x, x, g, m, r, relu=True), ValueError, "beta"),
        "bwd add shape": (lambda: B(x, x, g, m, r, add=x[:1].copy()), ValueError, "add"),
        "bwd add dtype": (lambda: B(x, x, g, m, r, add=x.astype(np.float64)), TypeError, "add"),
        "bwd beta C": (lambda: B(x, x, g, m, r, beta=np.ones(3, np.float32), relu=True),
                       ValueError, "beta"),
        "bwd beta dtype": (lambda: B(x, x, g, m, r, beta=b.astype(np.float64), relu=True),
                           TypeError, "beta"),
        "bwd out readonly": (lambda: B(x, x, g, m, r, out=_ro(x)), ValueError, "out"),
        "bwd empty batch": (lambda: B(x[:0], x[:0], g, m, r), ValueError, "x"),
        # functional
        "functional layout": (lambda: batch_norm2d(np.zeros((2, 4, 3, 3), np.float32), g, b, rm,
                                                   rv, layout="NWHC"), ValueError, "layout"),
        "functional NCHW C": (lambda: batch_norm2d(np.zeros((2, 3, 3, 4), np.float32), g, b, rm,
                                                   rv), ValueError, "gamma"),
        "functional eval rv": (lambda: batch_norm2d(np.zeros((2, 4, 3, 3), np.float32), g, b, rm,
                                                    rv[:2], training=False), ValueError,
                               "running_var"),
    }


_CASES = _bad_cases()


@pytest.mark.parametrize("case", list(_CASES))
def test_bad_inputs(case):
    fn, exc, name = _CASES[case]
    with raises_arg(exc, name):
        fn()


def test_one_value_eval_ok():
    """Eval mode and the backward are defined for N*H*W == 1 (only training needs > 1)."""
    x = np.full((1, 1, 1, 3), 2.0, np.float32)
    g, b, rm, rv = (np.ones(3, np.float32) for _ in range(4))
    y = _core.batch_norm_forward_eval(x, g, b, rm, rv)
    assert_close(y, ref.batch_norm_eval_forward(_nchw(x), g, b, rm, rv).transpose(0, 2, 3, 1),
                 **BACKWARD, name="y")
