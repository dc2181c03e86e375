"""Every public array function of ``resnet_cpp._core`` and ``resnet_cpp.functional``, as data.

A :class:`Case` is one valid call: its keyword arguments (small random float32 arrays, with
every output passed explicitly), which of them the call writes, its float64 reference
(tests/reference.py) and, where a scalar sets an output's size, the arguments that ask for
more memory than any machine has. test_boundary.py runs every case through the boundary
rules (aliasing, memory, values changed by another thread, concurrent calls) and
test_fuzz.py mutates their arguments with hypothesis; test_every_public_function_has_a_case
keeps the table complete.

A builder takes ``pick(name, lo, hi)``, which chooses each size or flag (a seeded generator
in test_boundary.py, hypothesis in test_fuzz.py), and a NumPy generator for the values.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

import reference as ref
from resnet_cpp import _core
from resnet_cpp import functional as F
from tolerance import BACKWARD, FORWARD, assert_close

Pick = Callable[[str, int, int], int]
f32 = np.float32


@dataclass
class Case:
    """One valid call of ``fn(**args)``.

    writes: the parameters the call writes (outputs and in-place buffers); rw: those of them
    whose old values it also reads. expect(args) gives the reference results from the
    arguments as they were before the call; got(result, args) the same results from the
    return value and the arguments after it. huge: (argument overrides, the output they make
    larger than any memory). indices: parameters whose integer values the kernel indexes
    with, and their bound. spread: extra absolute tolerance as a fraction of max|reference|
    (Winograd rounds like the whole sum, see test_conv.check_all).
    """

    name: str
    fn: Callable
    args: dict
    writes: tuple = ()
    rw: tuple = ()
    expect: Callable[[dict], list] = lambda a: []
    got: Callable[[Any, dict], list] = lambda r, a: [r]
    tol: dict = field(default_factory=lambda: dict(FORWARD))
    huge: tuple | None = None
    indices: dict = field(default_factory=dict)
    spread: float = 0.0

    def check(self, result, args_after: dict, args_before: dict) -> None:
        """Assert the results equal the reference (computed from args_before). Where the
        reference is NaN or infinite (a negative variance, say), the result must be too."""
        got = self.got(result, args_after)
        # A scalar the binding accepted (True for 1, a 0-d array) as the type it converted to;
        # one the call ignored (momentum in eval mode) as it is.
        for k, v in list(args_before.items()):
            if type(self.args.get(k)) in (bool, int, float):
                try:
                    args_before[k] = type(self.args[k])(v)
                except (TypeError, ValueError):
                    pass
        with np.errstate(all="ignore"):
            want = self.expect(args_before)
        assert len(got) == len(want), self.name
        for i, (g, w) in enumerate(zip(got, want)):
            name = f"{self.name} result {i}"
            if w is None:
                assert g is None, f"{name} should be None"
                continue
            g, w = np.asarray(g, np.float64), np.asarray(w, np.float64)
            assert g.shape == w.shape, f"{name}: shape {g.shape} != reference {w.shape}"
            finite = np.isfinite(w)
            assert np.array_equal(g[~finite], w[~finite], equal_nan=True), f"{name}: NaN/inf differ"
            t = dict(self.tol)
            t["atol"] = max(t["atol"], self.spread * float(np.max(np.abs(w[finite]), initial=0.0)))
            assert_close(g[finite], w[finite], **t, name=name)


def rnd(rng, *shape) -> np.ndarray:
    return rng.standard_normal(shape).astype(f32)


def nhwc(a):
    return None if a is None else np.asarray(a).transpose(0, 2, 3, 1)


def nchw(a):
    return None if a is None else np.asarray(a).transpose(0, 3, 1, 2)


def oihw(w_rsck):
    return np.asarray(w_rsck).transpose(3, 2, 0, 1)


def rsck(w_oihw):
    return np.asarray(w_oihw).transpose(2, 3, 1, 0)


def empty(*shape, dtype=f32) -> np.ndarray:
    return np.full(shape, np.nan, dtype) if dtype == f32 else np.full(shape, -1, dtype)


def _conv_geometry(pick: Pick):
    """N, H, W, C, K, R, S, stride, pad, P, Q of a small convolution (P, Q >= 1)."""
    R, S = pick("R", 1, 3), pick("S", 1, 3)
    pad = pick("pad", 0, min(R, S) - 1)
    stride = pick("stride", 1, 2)
    H, W = pick("H", max(1, R - 2 * pad), 7), pick("W", max(1, S - 2 * pad), 7)
    N, C, K = pick("N", 1, 2), pick("C", 1, 5), pick("K", 1, 6)
    P, Q = (H + 2 * pad - R) // stride + 1, (W + 2 * pad - S) // stride + 1
    return N, H, W, C, K, R, S, stride, pad, P, Q


def _act(pick: Pick, rng, lo: int = 1):
    """A small NHWC activation (N*H*W >= lo)."""
    N, H, W, C = pick("N", lo, 3), pick("H", 1, 5), pick("W", 1, 5), pick("C", 1, 19)
    return rnd(rng, N, H, W, C)


def _masked(dy, keep):
    """dy where keep, else 0, even where dy is NaN (PyTorch's threshold_backward; reference.py
    multiplies by the mask, which only differs for a non-finite dy)."""
    return np.where(keep, np.asarray(dy, np.float64), 0.0)


def _bn_relu_mask(x, gamma, beta, mean, rstd):
    """Where the fused ReLU passes dy: the pre-activation, in float32 as the kernel computes it."""
    pre = (x - mean) * (gamma * rstd) + beta
    return pre > 0


# ============================================================================ _core


def core_conv2d_forward(pick, rng):
    N, H, W, C, K, R, S, st, pad, P, Q = _conv_geometry(pick)
    b = rnd(rng, K) if pick("bias", 0, 1) else None
    return Case("_core.conv2d_forward", _core.conv2d_forward,
                dict(x=rnd(rng, N, H, W, C), w=rnd(rng, R, S, C, K), b=b, stride=st, pad=pad,
                     out=empty(N, P, Q, K)), writes=("out",),
                expect=lambda a: [nhwc(ref.conv2d_forward(nchw(a["x"]), oihw(a["w"]), a["b"],
                                                          a["stride"], a["pad"]))],
                spread=2e-5)


def core_conv2d_backward_data(pick, rng):
    N, H, W, C, K, R, S, st, pad, P, Q = _conv_geometry(pick)

    def expect(a):
        n, p, q, k = a["dy"].shape
        x = np.zeros((n, a["w"].shape[2], a["H"], a["W"]))
        return [nhwc(ref.conv2d_backward(nchw(a["dy"]), x, oihw(a["w"]), a["stride"],
                                         a["pad"])[0])]

    # stride 2^20 keeps dy small while H, W = 2^30 ask for a 2^60 * C float dx.
    huge = (dict(dy=np.zeros((1, 1024, 1024, K), f32), H=1 << 30, W=1 << 30, stride=1 << 20,
                 pad=0, out=None), "out")
    return Case("_core.conv2d_backward_data", _core.conv2d_backward_data,
                dict(dy=rnd(rng, N, P, Q, K), w=rnd(rng, R, S, C, K), H=H, W=W, stride=st,
                     pad=pad, out=empty(N, H, W, C)), writes=("out",), expect=expect,
                tol=dict(BACKWARD), huge=huge, spread=2e-5)


def core_conv2d_backward_weight(pick, rng):
    N, H, W, C, K, R, S, st, pad, P, Q = _conv_geometry(pick)
    bias = bool(pick("bias", 0, 1))

    def expect(a):
        x, dy = nchw(a["x"]), nchw(a["dy"])
        w = np.zeros((dy.shape[1], x.shape[1], a["R"], a["S"]))
        _, dw, db = ref.conv2d_backward(dy, x, w, a["stride"], a["pad"])
        return [rsck(dw), db if a["with_bias"] else None]

    # A 2^16 x 2^16 kernel over one padded pixel: dw (R,S,64,64) is 2^44 floats.
    huge = (dict(x=np.zeros((1, 1, 1, 64), f32), dy=np.zeros((1, 1, 1, 64), f32), R=1 << 16,
                 S=1 << 16, stride=1 << 16, pad=(1 << 16) - 1, dw_out=None, db_out=None),
            "dw_out")
    return Case("_core.conv2d_backward_weight", _core.conv2d_backward_weight,
                dict(x=rnd(rng, N, H, W, C), dy=rnd(rng, N, P, Q, K), R=R, S=S, stride=st,
                     pad=pad, with_bias=bias, dw_out=empty(R, S, C, K),
                     db_out=empty(K) if bias else None),
                writes=("dw_out", "db_out"), expect=expect, got=lambda r, a: list(r),
                tol=dict(BACKWARD), huge=huge, spread=2e-5)


def _bn_forward_args(pick, rng, train: bool):
    x = _act(pick, rng, lo=2 if train else 1)
    C = x.shape[-1]
    residual = rnd(rng, *x.shape) if pick("residual", 0, 1) else None
    return dict(x=x, gamma=rnd(rng, C), beta=rnd(rng, C), running_mean=rnd(rng, C),
                running_var=np.abs(rnd(rng, C)) + f32(0.5), relu=bool(pick("relu", 0, 1)),
                out=empty(*x.shape), residual=residual)


def _bn_finish(y, a):
    if a["residual"] is not None:
        y = y + nchw(np.asarray(a["residual"], np.float64))
    return nhwc(np.maximum(y, 0) if a["relu"] else y)


def core_batch_norm_forward_train(pick, rng):
    args = _bn_forward_args(pick, rng, train=True)
    args.update(momentum=0.1, eps=1e-5)

    def expect(a):
        x = nchw(a["x"])
        y, mean, rstd = ref.batch_norm_train_forward(x, a["gamma"], a["beta"], a["eps"])
        rm, rv = ref.batch_norm_running_update(a["running_mean"], a["running_var"], x,
                                               a["momentum"])
        return [_bn_finish(y, a), mean, rstd, rm, rv]

    return Case("_core.batch_norm_forward_train", _core.batch_norm_forward_train, args,
                writes=("out", "running_mean", "running_var"),
                rw=("running_mean", "running_var"), expect=expect,
                got=lambda r, a: [*r, a["running_mean"], a["running_var"]], tol=dict(BACKWARD))


def core_batch_norm_forward_eval(pick, rng):
    args = _bn_forward_args(pick, rng, train=False)
    args.update(eps=1e-5)

    def expect(a):
        y = ref.batch_norm_eval_forward(nchw(a["x"]), a["gamma"], a["beta"], a["running_mean"],
                                        a["running_var"], a["eps"])
        return [_bn_finish(y, a)]

    return Case("_core.batch_norm_forward_eval", _core.batch_norm_forward_eval, args,
                writes=("out",), expect=expect)


def _bn_backward_ref(dy, x, gamma, beta, mean, rstd, relu, train, add):
    """dx, dgamma, dbeta of batch norm over NHWC float64 (the kernel's documented math)."""
    dy = np.asarray(dy, np.float64)
    if relu:
        dy = _masked(dy, _bn_relu_mask(x, gamma, beta, mean, rstd))
    if train:
        dx, dg, db = ref.batch_norm_backward(nchw(dy), nchw(x), gamma, mean, rstd)
        dx = nhwc(dx)
    else:
        r = np.asarray(rstd, np.float64)
        xhat = (x - np.asarray(mean, np.float64)) * r
        dx, dg, db = dy * gamma * r, (dy * xhat).sum(axis=(0, 1, 2)), dy.sum(axis=(0, 1, 2))
    return [dx if add is None else dx + add, dg, db]


def core_batch_norm_backward(pick, rng):
    x = _act(pick, rng, lo=2)
    C = x.shape[-1]
    train, relu = bool(pick("train", 0, 1)), bool(pick("relu", 0, 1))
    # The batch statistics, as the forward caches them.
    mean = x.mean(axis=(0, 1, 2), dtype=np.float64).astype(f32)
    rstd = (1 / np.sqrt(x.var(axis=(0, 1, 2), dtype=np.float64) + 1e-5)).astype(f32)

    def expect(a):
        return _bn_backward_ref(a["dy"], a["x"], a["gamma"], a["beta"], a["mean"], a["rstd"],
                                a["relu"], a["train"], a["add"])

    return Case("_core.batch_norm_backward", _core.batch_norm_backward,
                dict(dy=rnd(rng, *x.shape), x=x, gamma=rnd(rng, C), mean=mean, rstd=rstd,
                     beta=rnd(rng, C) if relu or pick("beta", 0, 1) else None, relu=relu,
                     train=train, out=empty(*x.shape),
                     add=rnd(rng, *x.shape) if pick("add", 0, 1) else None),
                writes=("out",), expect=expect, got=lambda r, a: list(r), tol=dict(BACKWARD))


# Synchronized BN's halves (the per-channel sums are reduced across processes in between).


def _bn_batch_stats(x):
    """The batch mean and rstd of an NHWC activation, float32, as the forward caches them."""
    mean = x.mean(axis=(0, 1, 2), dtype=np.float64).astype(f32)
    rstd = (1 / np.sqrt(x.var(axis=(0, 1, 2), dtype=np.float64) + 1e-5)).astype(f32)
    return mean, rstd


def core_batch_norm_stats(pick, rng):
    x = _act(pick, rng)

    def expect(a):
        d = np.asarray(a["x"], np.float64) - np.asarray(a["pivot"], np.float64)
        return [d.sum(axis=(0, 1, 2)), (d * d).sum(axis=(0, 1, 2))]

    return Case("_core.batch_norm_stats", _core.batch_norm_stats,
                dict(x=x, pivot=rnd(rng, x.shape[-1])), expect=expect, got=lambda r, a: list(r))


def core_batch_norm_finalize(pick, rng):
    x = _act(pick, rng, lo=2)
    C, count = x.shape[-1], x.size // x.shape[-1]
    pivot = rnd(rng, C)
    d = x.astype(np.float64) - pivot
    args = dict(s1=d.sum(axis=(0, 1, 2)), s2=(d * d).sum(axis=(0, 1, 2)), pivot=pivot,
                count=float(count), running_mean=rnd(rng, C),
                running_var=np.abs(rnd(rng, C)) + f32(0.5), momentum=0.1, eps=1e-5)

    def expect(a):
        n, m = a["count"], a["momentum"]
        mean = np.asarray(a["pivot"], np.float64) + a["s1"] / n
        var = a["s2"] / n - (a["s1"] / n) ** 2
        rm = (1 - m) * np.asarray(a["running_mean"], np.float64) + m * mean
        rv = (1 - m) * np.asarray(a["running_var"], np.float64) + m * var * n / (n - 1)
        return [mean, 1 / np.sqrt(var + a["eps"]), rm, rv]

    return Case("_core.batch_norm_finalize", _core.batch_norm_finalize, args,
                writes=("running_mean", "running_var"), rw=("running_mean", "running_var"),
                expect=expect, got=lambda r, a: [*r, a["running_mean"], a["running_var"]],
                tol=dict(BACKWARD))


def core_batch_norm_apply(pick, rng):
    args = _bn_forward_args(pick, rng, train=False)
    mean, rstd = _bn_batch_stats(args["x"])
    args.update(mean=mean, rstd=rstd)
    del args["running_mean"], args["running_var"]

    def expect(a):
        x = np.asarray(a["x"], np.float64)
        y = (x - a["mean"]) * (np.asarray(a["gamma"], np.float64) * a["rstd"]) + a["beta"]
        return [_bn_finish(nchw(y), a)]

    return Case("_core.batch_norm_apply", _core.batch_norm_apply, args, writes=("out",),
                expect=expect)


def _bn_backward_operands(pick, rng):
    x = _act(pick, rng, lo=2)
    C = x.shape[-1]
    relu = bool(pick("relu", 0, 1))
    mean, rstd = _bn_batch_stats(x)
    return dict(dy=rnd(rng, *x.shape), x=x, gamma=rnd(rng, C), mean=mean, rstd=rstd,
                beta=rnd(rng, C) if relu or pick("beta", 0, 1) else None, relu=relu)


def _bn_backward_sums(a):
    """sdy, sdyx: the sums of dy' and dy' * (x - mean), dy' ReLU-masked as the kernel does."""
    dy = np.asarray(a["dy"], np.float64)
    if a["relu"]:
        dy = _masked(dy, _bn_relu_mask(a["x"], a["gamma"], a["beta"], a["mean"], a["rstd"]))
    return dy, dy.sum(axis=(0, 1, 2)), (dy * (a["x"] - np.asarray(a["mean"], np.float64))).sum(
        axis=(0, 1, 2))


def core_batch_norm_backward_reduce(pick, rng):
    def expect(a):
        _, sdy, sdyx = _bn_backward_sums(a)
        return [sdy, sdyx, sdyx * a["rstd"], sdy]

    return Case("_core.batch_norm_backward_reduce", _core.batch_norm_backward_reduce,
                _bn_backward_operands(pick, rng), expect=expect, got=lambda r, a: list(r),
                tol=dict(BACKWARD))


def core_batch_norm_backward_apply(pick, rng):
    args = _bn_backward_operands(pick, rng)
    _, sdy, sdyx = _bn_backward_sums(args)
    x = args["x"]
    args.update(sdy=sdy, sdyx=sdyx, count=float(x.size // x.shape[-1]), out=empty(*x.shape),
                add=rnd(rng, *x.shape) if pick("add", 0, 1) else None)

    def expect(a):
        dy, _, _ = _bn_backward_sums(a)
        n, r = a["count"], np.asarray(a["rstd"], np.float64)
        xm = np.asarray(a["x"], np.float64) - a["mean"]
        dx = a["gamma"] * r * (dy - a["sdy"] / n - xm * r * r * a["sdyx"] / n)
        return [dx if a["add"] is None else dx + a["add"]]

    return Case("_core.batch_norm_backward_apply", _core.batch_norm_backward_apply, args,
                writes=("out",), expect=expect, tol=dict(BACKWARD))


def core_round_to_bf16(pick, rng):
    return Case("_core.round_to_bf16", _core.round_to_bf16,
                dict(x=rnd(rng, pick("n", 1, 40))), expect=lambda a: [ref.bf16_round(a["x"])])


def _any_shape(pick, rng):
    return rnd(rng, *[pick(f"d{i}", 1, 6) for i in range(pick("ndim", 1, 4))])


def core_relu_forward(pick, rng):
    x = _any_shape(pick, rng)
    return Case("_core.relu_forward", _core.relu_forward, dict(x=x, out=empty(*x.shape)),
                writes=("out",), expect=lambda a: [ref.relu_forward(a["x"])])


def _masked_backward(name, fn):
    def build(pick, rng):
        y = _any_shape(pick, rng)
        return Case(name, fn, dict(dy=rnd(rng, *y.shape), y=y, out=empty(*y.shape)),
                    writes=("out",), expect=lambda a: [_masked(a["dy"], np.asarray(a["y"]) > 0)])
    return build


def _add(name, fn, relu):
    def build(pick, rng):
        a = _any_shape(pick, rng)
        return Case(name, fn, dict(a=a, b=rnd(rng, *a.shape), out=empty(*a.shape)),
                    writes=("out",),
                    expect=lambda k: [ref.add_relu_forward(k["a"], k["b"]) if relu
                                      else np.add(k["a"], k["b"], dtype=np.float64)])
    return build


def core_shortcut_a_forward(pick, rng):
    x = _act(pick, rng)
    N, H, W, C = x.shape
    st, K = pick("stride", 1, 3), C + pick("extra", 0, 5)
    Ho, Wo = (H - 1) // st + 1, (W - 1) // st + 1
    # channels_out 2^31 - 1 over 64x64 pixels: 2^43 floats.
    huge = (dict(x=np.zeros((1, 64, 64, 1), f32), channels_out=2**31 - 1, stride=1, out=None), "out")
    return Case("_core.shortcut_a_forward", _core.shortcut_a_forward,
                dict(x=x, channels_out=K, stride=st, out=empty(N, Ho, Wo, K)), writes=("out",),
                expect=lambda a: [nhwc(ref.shortcut_a_forward(nchw(a["x"]), a["channels_out"],
                                                              a["stride"]))], huge=huge)


def core_shortcut_a_backward(pick, rng):
    N, H, W, C = pick("N", 1, 2), pick("H", 1, 6), pick("W", 1, 6), pick("C", 1, 6)
    st, K = pick("stride", 1, 3), C + pick("extra", 0, 5)
    acc = bool(pick("accumulate", 0, 1))
    dy = rnd(rng, N, (H - 1) // st + 1, (W - 1) // st + 1, K)

    def expect(a):
        dx = nhwc(ref.shortcut_a_backward(nchw(a["dy"]), (a["dy"].shape[0], a["channels_in"],
                                                          a["H"], a["W"]), a["stride"]))
        return [dx + a["out"] if a["accumulate"] else dx]

    huge = (dict(dy=np.zeros((1, 1, 1, 4), f32), channels_in=4, H=2**31 - 1, W=2**31 - 1,
                 stride=2**31 - 1, out=None, accumulate=False), "out")
    return Case("_core.shortcut_a_backward", _core.shortcut_a_backward,
                dict(dy=dy, channels_in=C, H=H, W=W, stride=st,
                     out=rnd(rng, N, H, W, C) if acc else empty(N, H, W, C), accumulate=acc),
                writes=("out",), rw=("out",) if acc else (), expect=expect, huge=huge)


def core_nchw_to_nhwc(pick, rng):
    x = _act(pick, rng)
    return Case("_core.nchw_to_nhwc", _core.nchw_to_nhwc,
                dict(x=x, out=empty(*np.shape(nhwc(x)))), writes=("out",),
                expect=lambda a: [nhwc(a["x"])])


def core_nhwc_to_nchw(pick, rng):
    x = _act(pick, rng)
    return Case("_core.nhwc_to_nchw", _core.nhwc_to_nchw,
                dict(x=x, out=empty(*np.shape(nchw(x)))), writes=("out",),
                expect=lambda a: [nchw(a["x"])])


def _pool_geometry(pick):
    k = pick("k", 1, 3)
    pad, st = pick("pad", 0, k // 2), pick("stride", 1, 2)
    H, W = pick("H", max(1, k - 2 * pad), 6), pick("W", max(1, k - 2 * pad), 6)
    return k, st, pad, H, W, (H + 2 * pad - k) // st + 1, (W + 2 * pad - k) // st + 1


def core_max_pool2d_forward(pick, rng):
    k, st, pad, H, W, P, Q = _pool_geometry(pick)
    N, C = pick("N", 1, 2), pick("C", 1, 19)

    def expect(a):
        x = nchw(a["x"])
        return [nhwc(ref.max_pool2d_forward(x, a["k"], a["stride"], a["pad"])),
                nhwc(ref.max_pool2d_argmax(x, a["k"], a["stride"], a["pad"]))]

    return Case("_core.max_pool2d_forward", _core.max_pool2d_forward,
                dict(x=rnd(rng, N, H, W, C), k=k, stride=st, pad=pad, out=empty(N, P, Q, C),
                     argmax_out=empty(N, P, Q, C, dtype=np.int32)),
                writes=("out", "argmax_out"), expect=expect, got=lambda r, a: list(r))


def _scatter(dy, argmax, H, W):
    """dx (N,H,W,C): each dy element added at its argmax position h*W + w (the definition)."""
    N, P, Q, C = dy.shape
    dx = np.zeros((N, H * W, C))
    n, _, _, c = np.indices(dy.shape)
    np.add.at(dx, (n.ravel(), np.asarray(argmax).ravel(), c.ravel()), np.ravel(dy))
    return dx.reshape(N, H, W, C)


def core_max_pool2d_backward(pick, rng):
    k, st, pad, H, W, P, Q = _pool_geometry(pick)
    N, C = pick("N", 1, 2), pick("C", 1, 19)
    _, argmax = _core.max_pool2d_forward(rnd(rng, N, H, W, C), k, st, pad)
    huge = (dict(dy=np.zeros((1, 1, 1, 64), f32), argmax=np.zeros((1, 1, 1, 64), np.int32),
                 H=2**15, W=2**15, out=None), "out")  # 2^36 floats
    huge[0].update(k=2**15, stride=2**15, pad=0)  # one window: dy (1, 1, 1, 64)
    return Case("_core.max_pool2d_backward", _core.max_pool2d_backward,
                dict(dy=rnd(rng, N, P, Q, C), argmax=argmax, H=H, W=W, k=k, stride=st, pad=pad,
                     out=empty(N, H, W, C)),
                writes=("out",), expect=lambda a: [_scatter(a["dy"], a["argmax"], a["H"], a["W"])],
                huge=huge, indices={"argmax": H * W})


def core_global_avg_pool_forward(pick, rng):
    x = _act(pick, rng)
    return Case("_core.global_avg_pool_forward", _core.global_avg_pool_forward,
                dict(x=x, out=empty(x.shape[0], x.shape[3])), writes=("out",),
                expect=lambda a: [ref.global_avg_pool_forward(nchw(a["x"]))])


def core_global_avg_pool_backward(pick, rng):
    N, C, H, W = pick("N", 1, 3), pick("C", 1, 19), pick("H", 1, 5), pick("W", 1, 5)
    huge = (dict(dy=np.zeros((1, 64), f32), H=2**31 - 1, W=2**31 - 1, out=None), "out")
    return Case("_core.global_avg_pool_backward", _core.global_avg_pool_backward,
                dict(dy=rnd(rng, N, C), H=H, W=W, out=empty(N, H, W, C)), writes=("out",),
                expect=lambda a: [nhwc(ref.global_avg_pool_backward(
                    a["dy"], (a["dy"].shape[0], a["dy"].shape[1], a["H"], a["W"])))], huge=huge)


def core_linear_forward(pick, rng):
    N, Fi, O = pick("N", 1, 5), pick("F", 1, 20), pick("O", 1, 20)
    return Case("_core.linear_forward", _core.linear_forward,
                dict(x=rnd(rng, N, Fi), w=rnd(rng, O, Fi),
                     b=rnd(rng, O) if pick("bias", 0, 1) else None, out=empty(N, O)),
                writes=("out",), expect=lambda a: [ref.linear_forward(a["x"], a["w"], a["b"])])


def core_linear_backward(pick, rng):
    N, Fi, O = pick("N", 1, 5), pick("F", 1, 20), pick("O", 1, 20)
    need_dx, bias = bool(pick("need_dx", 0, 1)), bool(pick("bias", 0, 1))

    def expect(a):
        dx, dw, db = ref.linear_backward(a["dy"], a["x"], a["w"])
        return [dx if a["need_dx"] else None, dw, db if a["with_bias"] else None]

    return Case("_core.linear_backward", _core.linear_backward,
                dict(dy=rnd(rng, N, O), x=rnd(rng, N, Fi), w=rnd(rng, O, Fi), need_dx=need_dx,
                     with_bias=bias, dx_out=empty(N, Fi) if need_dx else None,
                     dw_out=empty(O, Fi), db_out=empty(O) if bias else None),
                writes=("dx_out", "dw_out", "db_out"), expect=expect,
                got=lambda r, a: list(r), tol=dict(BACKWARD))


def core_softmax_cross_entropy(pick, rng):
    N, K = pick("N", 1, 6), pick("K", 1, 12)
    dtype = np.int64 if pick("int64", 0, 1) else np.int32
    ls = [0.0, 0.1][pick("smoothing", 0, 1)]

    def expect(a):
        z, y, s = a["logits"], a["labels"], a["label_smoothing"]
        return [ref.cross_entropy_forward(z, y, s), ref.cross_entropy_backward(z, y, s)]

    return Case("_core.softmax_cross_entropy", _core.softmax_cross_entropy,
                dict(logits=rnd(rng, N, K), labels=rng.integers(0, K, N).astype(dtype),
                     label_smoothing=ls, dlogits_out=empty(N, K)),
                writes=("dlogits_out",), expect=expect, got=lambda r, a: list(r),
                indices={"labels": K})


def core_sgd_step(pick, rng):
    p = _any_shape(pick, rng)
    momentum = [0.0, 0.9][pick("momentum", 0, 1)]
    args = dict(param=p, grad=rnd(rng, *p.shape),
                momentum_buf=rnd(rng, *p.shape) if momentum else None, lr=0.1,
                momentum=momentum, weight_decay=[0.0, 1e-2][pick("wd", 0, 1)],
                nesterov=bool(momentum and pick("nesterov", 0, 1)))

    def expect(a):
        p, buf = ref.sgd_step(a["param"], a["grad"], a["momentum_buf"], a["lr"], a["momentum"],
                              a["weight_decay"], a["nesterov"])
        return [p, buf if a["momentum"] else a["momentum_buf"]]

    return Case("_core.sgd_step", _core.sgd_step, args, writes=("param", "momentum_buf"),
                rw=("param", "momentum_buf"), expect=expect,
                got=lambda r, a: [a["param"], a["momentum_buf"]])


def core_adam_step(pick, rng):
    p = _any_shape(pick, rng)
    args = dict(param=p, grad=rnd(rng, *p.shape), m=rnd(rng, *p.shape),
                v=np.abs(rnd(rng, *p.shape)), step=pick("step", 1, 5), lr=1e-2, beta1=0.9,
                beta2=0.999, eps=1e-8, weight_decay=[0.0, 1e-2][pick("wd", 0, 1)],
                decoupled=bool(pick("decoupled", 0, 1)))
    keys = ("param", "grad", "m", "v", "step", "lr", "beta1", "beta2", "eps", "weight_decay",
            "decoupled")
    return Case("_core.adam_step", _core.adam_step, args, writes=("param", "m", "v"),
                rw=("param", "m", "v"), expect=lambda a: list(ref.adam_step(*[a[k] for k in keys])),
                got=lambda r, a: [a["param"], a["m"], a["v"]])


def _crop_flip_reference(x, padding, flip, seed, channels_last):
    """Each image: the zero-padded crop (maybe mirrored) that crop_flip_params chooses."""
    xc = nchw(x) if channels_last else np.asarray(x)
    N, C, H, W = xc.shape
    out = np.empty(xc.shape, np.float64)
    for i in range(N):
        oy, ox, flipped = _core.crop_flip_params(seed, i, padding, flip)
        img = np.pad(xc[i], ((0, 0), (padding, padding), (padding, padding)))[:, oy:oy + H, ox:ox + W]
        out[i] = img[:, :, ::-1] if flipped else img
    return nhwc(out) if channels_last else out


def core_random_crop_flip(pick, rng):
    x = _act(pick, rng)
    return Case("_core.random_crop_flip", _core.random_crop_flip,
                dict(x=x, padding=pick("padding", 0, 3), flip=bool(pick("flip", 0, 1)),
                     seed=pick("seed", 0, 2**62), channels_last=bool(pick("nhwc", 0, 1)),
                     out=empty(*x.shape)), writes=("out",),
                expect=lambda a: [_crop_flip_reference(a["x"], a["padding"], a["flip"], a["seed"],
                                                       a["channels_last"])])


CORE = [core_conv2d_forward, core_conv2d_backward_data, core_conv2d_backward_weight,
        core_batch_norm_forward_train, core_batch_norm_forward_eval, core_batch_norm_backward,
        core_batch_norm_stats, core_batch_norm_finalize, core_batch_norm_apply,
        core_batch_norm_backward_reduce, core_batch_norm_backward_apply, core_round_to_bf16,
        core_relu_forward, _masked_backward("_core.relu_backward", _core.relu_backward),
        _add("_core.add_forward", _core.add_forward, relu=False),
        _add("_core.add_relu_forward", _core.add_relu_forward, relu=True),
        _masked_backward("_core.add_relu_backward", _core.add_relu_backward),
        core_shortcut_a_forward, core_shortcut_a_backward, core_nchw_to_nhwc, core_nhwc_to_nchw,
        core_max_pool2d_forward, core_max_pool2d_backward, core_global_avg_pool_forward,
        core_global_avg_pool_backward, core_linear_forward, core_linear_backward,
        core_softmax_cross_entropy, core_sgd_step, core_adam_step, core_random_crop_flip]


# ============================================================================ functional
# NCHW by default; "layout" picks NHWC for the ops that have it. Backward ops get their
# cache from a forward call in the builder.


def _layout(pick):
    return ["NCHW", "NHWC"][pick("layout", 0, 1)]


def _to(layout):
    """NCHW -> the layout (a view)."""
    return (lambda a: a) if layout == "NCHW" else nhwc


def _from(layout):
    """The layout -> NCHW (a view)."""
    return (lambda a: a) if layout == "NCHW" else nchw


def _in(layout, rng, *nchw_shape):
    return np.ascontiguousarray(_to(layout)(rnd(rng, *nchw_shape)))


def _same_as_core(core_builder, name, fn):
    """The functional op takes the same keyword arguments as its _core kernel."""
    def build(pick, rng):
        c = core_builder(pick, rng)
        c.name, c.fn = name, fn
        return c
    return build


def fn_conv2d(pick, rng):
    N, H, W, C, K, R, S, st, pad, P, Q = _conv_geometry(pick)
    lay = _layout(pick)

    def expect(a):
        y = ref.conv2d_forward(_from(a["layout"])(a["x"]), a["w"], a["b"], a["stride"], a["padding"])
        return [_to(a["layout"])(y)]

    return Case("functional.conv2d", F.conv2d,
                dict(x=_in(lay, rng, N, C, H, W), w=rnd(rng, K, C, R, S),
                     b=rnd(rng, K) if pick("bias", 0, 1) else None, stride=st, padding=pad,
                     layout=lay, out=empty(*np.shape(_to(lay)(np.empty((N, K, P, Q)))))),
                writes=("out",), expect=expect, got=lambda r, a: [r[0]], spread=2e-5)


def fn_conv2d_backward(pick, rng):
    N, H, W, C, K, R, S, st, pad, P, Q = _conv_geometry(pick)
    lay = _layout(pick)
    _, cache = F.conv2d(_in(lay, rng, N, C, H, W), rnd(rng, K, C, R, S),
                        rnd(rng, K) if pick("bias", 0, 1) else None, st, pad, layout=lay)
    need_dx = bool(pick("need_dx", 0, 1))

    def expect(a):
        c = a["cache"]  # x NHWC, w RSCK
        dx, dw, db = ref.conv2d_backward(_from(c.layout)(a["dy"]), nchw(c.x), oihw(c.w), c.stride,
                                         c.padding)
        return [_to(c.layout)(dx) if a["need_dx"] else None, dw, db if c.with_bias else None]

    return Case("functional.conv2d_backward", F.conv2d_backward,
                dict(dy=_in(lay, rng, N, K, P, Q), cache=cache, need_dx=need_dx,
                     dx_out=empty(N, H, W, C) if need_dx and lay == "NHWC" else None),
                writes=("dx_out",), expect=expect, got=lambda r, a: list(r), tol=dict(BACKWARD),
                spread=2e-5)


def fn_batch_norm2d(pick, rng):
    training, lay = bool(pick("training", 0, 1)), _layout(pick)
    a = _bn_forward_args(pick, rng, train=training)
    to = _to(lay)
    args = dict(x=np.ascontiguousarray(to(nchw(a["x"]))), gamma=a["gamma"], beta=a["beta"],
                running_mean=a["running_mean"], running_var=a["running_var"], training=training,
                momentum=0.1, eps=1e-5, relu=a["relu"], layout=lay,
                out=np.ascontiguousarray(to(nchw(a["out"]))),
                residual=None if a["residual"] is None else np.ascontiguousarray(to(nchw(a["residual"]))))

    def expect(k):
        x = _from(k["layout"])(k["x"])
        if k["training"]:
            y = ref.batch_norm_train_forward(x, k["gamma"], k["beta"], k["eps"])[0]
            rm, rv = ref.batch_norm_running_update(k["running_mean"], k["running_var"], x, k["momentum"])
        else:
            y = ref.batch_norm_eval_forward(x, k["gamma"], k["beta"], k["running_mean"],
                                            k["running_var"], k["eps"])
            rm, rv = k["running_mean"], k["running_var"]
        if k["residual"] is not None:
            y = y + _from(k["layout"])(k["residual"])
        y = np.maximum(y, 0) if k["relu"] else y
        return [_to(k["layout"])(y), rm, rv]

    return Case("functional.batch_norm2d", F.batch_norm2d, args,
                writes=("out", "running_mean", "running_var"),
                rw=("running_mean", "running_var"), expect=expect,
                got=lambda r, k: [r[0], k["running_mean"], k["running_var"]], tol=dict(BACKWARD))


def fn_batch_norm2d_backward(pick, rng):
    training, relu, lay = bool(pick("training", 0, 1)), bool(pick("relu", 0, 1)), _layout(pick)
    x = _act(pick, rng, lo=2)
    N, H, W, C = x.shape
    res = rnd(rng, *x.shape) if pick("residual", 0, 1) else None
    to = _to(lay)
    _, cache = F.batch_norm2d(np.ascontiguousarray(to(nchw(x))), rnd(rng, C), rnd(rng, C),
                              np.zeros(C, f32), np.ones(C, f32), training=training, relu=relu,
                              layout=lay, residual=None if res is None else
                              np.ascontiguousarray(to(nchw(res))))

    def expect(a):
        c, frm = a["cache"], _from(a["cache"].layout)
        dy = nhwc(frm(np.asarray(a["dy"], np.float64)))
        relu = c.relu
        if c.residual and c.relu:  # masked by the output, whose sign includes the residual
            dy, relu = _masked(dy, c.y > 0), False
        add = None if a["add"] is None else nhwc(frm(a["add"]))
        out = _bn_backward_ref(dy, c.x, c.gamma, c.beta, c.mean, c.rstd, relu, c.training, add)
        out[0] = _to(c.layout)(nchw(out[0]))
        return out + ([_to(c.layout)(nchw(dy))] if c.residual else [])

    shape = np.shape(to(np.empty((N, C, H, W))))
    return Case("functional.batch_norm2d_backward", F.batch_norm2d_backward,
                dict(dy=rnd(rng, *shape), cache=cache, out=empty(*shape),
                     add=rnd(rng, *shape) if pick("add", 0, 1) else None),
                writes=("out",), expect=expect, got=lambda r, a: list(r), tol=dict(BACKWARD))


def fn_relu(pick, rng):
    c = core_relu_forward(pick, rng)
    return Case("functional.relu", F.relu, c.args, writes=("out",), expect=c.expect,
                got=lambda r, a: [r[0]])


def _fn_masked_backward(name, fn):
    def build(pick, rng):
        y = _any_shape(pick, rng)
        return Case(name, fn, dict(dy=rnd(rng, *y.shape), cache=F.ReluCache(y)),
                    expect=lambda a: [_masked(a["dy"], np.asarray(a["cache"].y) > 0)])
    return build


def fn_add_relu(pick, rng):
    c = _add("", None, relu=True)(pick, rng)
    return Case("functional.add_relu", F.add_relu, c.args, writes=("out",), expect=c.expect,
                got=lambda r, a: [r[0]])


def fn_shortcut_a(pick, rng):
    c = core_shortcut_a_forward(pick, rng)
    return Case("functional.shortcut_a", F.shortcut_a, c.args, writes=("out",),
                expect=c.expect, got=lambda r, a: [r[0]], huge=c.huge)


def fn_shortcut_a_backward(pick, rng):
    c = core_shortcut_a_backward(pick, rng)
    a = c.args
    args = dict(dy=a["dy"], cache=F.ShortcutACache(a["H"], a["W"], a["channels_in"], a["stride"]), out=a["out"],
                accumulate=a["accumulate"])

    def expect(k):
        H, W, C, st = k["cache"]
        return c.expect(dict(dy=k["dy"], channels_in=C, H=H, W=W, stride=st, out=k["out"],
                             accumulate=k["accumulate"]))

    return Case("functional.shortcut_a_backward", F.shortcut_a_backward, args, writes=("out",),
                rw=c.rw, expect=expect)


def fn_max_pool2d(pick, rng):
    k, st, pad, H, W, P, Q = _pool_geometry(pick)
    N, C, lay = pick("N", 1, 2), pick("C", 1, 19), _layout(pick)

    def expect(a):
        y = ref.max_pool2d_forward(_from(a["layout"])(a["x"]), a["kernel_size"], a["stride"],
                                   a["padding"])
        return [_to(a["layout"])(y)]

    return Case("functional.max_pool2d", F.max_pool2d,
                dict(x=_in(lay, rng, N, C, H, W), kernel_size=k, stride=st, padding=pad,
                     layout=lay, out=empty(*np.shape(_to(lay)(np.empty((N, C, P, Q)))))),
                writes=("out",), expect=expect, got=lambda r, a: [r[0]])


def fn_max_pool2d_backward(pick, rng):
    k, st, pad, H, W, P, Q = _pool_geometry(pick)
    N, C, lay = pick("N", 1, 2), pick("C", 1, 19), _layout(pick)
    _, cache = F.max_pool2d(_in(lay, rng, N, C, H, W), k, st, pad, layout=lay)

    def expect(a):
        argmax, H, W, _, _, _, layout = a["cache"]
        return [_to(layout)(nchw(_scatter(nhwc(_from(layout)(a["dy"])), argmax, H, W)))]

    return Case("functional.max_pool2d_backward", F.max_pool2d_backward,
                dict(dy=_in(lay, rng, N, C, P, Q), cache=cache), expect=expect)


def fn_global_avg_pool2d(pick, rng):
    N, C, H, W, lay = pick("N", 1, 3), pick("C", 1, 19), pick("H", 1, 5), pick("W", 1, 5), _layout(pick)
    return Case("functional.global_avg_pool2d", F.global_avg_pool2d,
                dict(x=_in(lay, rng, N, C, H, W), layout=lay),
                expect=lambda a: [ref.global_avg_pool_forward(_from(a["layout"])(a["x"]))],
                got=lambda r, a: [r[0]])


def fn_global_avg_pool2d_backward(pick, rng):
    N, C, H, W, lay = pick("N", 1, 3), pick("C", 1, 19), pick("H", 1, 5), pick("W", 1, 5), _layout(pick)

    def expect(a):
        H, W, layout = a["cache"]
        dy = a["dy"]
        return [_to(layout)(ref.global_avg_pool_backward(dy, (dy.shape[0], dy.shape[1], H, W)))]

    return Case("functional.global_avg_pool2d_backward", F.global_avg_pool2d_backward,
                dict(dy=rnd(rng, N, C), cache=F.AvgPoolCache(H, W, lay)), expect=expect)


def fn_linear(pick, rng):
    c = core_linear_forward(pick, rng)
    return Case("functional.linear", F.linear, c.args, writes=("out",), expect=c.expect,
                got=lambda r, a: [r[0]])


def fn_linear_backward(pick, rng):
    N, Fi, O = pick("N", 1, 5), pick("F", 1, 20), pick("O", 1, 20)
    bias = bool(pick("bias", 0, 1))

    def expect(a):
        x, w, with_bias = a["cache"]
        dx, dw, db = ref.linear_backward(a["dy"], x, w)
        return [dx if a["need_dx"] else None, dw, db if with_bias else None]

    return Case("functional.linear_backward", F.linear_backward,
                dict(dy=rnd(rng, N, O), cache=F.LinearCache(rnd(rng, N, Fi), rnd(rng, O, Fi), bias),
                     need_dx=bool(pick("need_dx", 0, 1))),
                expect=expect, got=lambda r, a: list(r), tol=dict(BACKWARD))


def fn_cross_entropy(pick, rng):
    c = core_softmax_cross_entropy(pick, rng)
    a = c.args
    return Case("functional.cross_entropy", F.cross_entropy,
                dict(logits=a["logits"], labels=a["labels"], label_smoothing=a["label_smoothing"]),
                expect=c.expect, got=lambda r, a: [r[0], r[1].dlogits], indices=c.indices)


def fn_cross_entropy_backward(pick, rng):
    N, K = pick("N", 1, 6), pick("K", 1, 12)
    logits, labels = rnd(rng, N, K), rng.integers(0, K, N)
    _, cache = F.cross_entropy(logits, labels)
    return Case("functional.cross_entropy_backward", F.cross_entropy_backward,
                dict(cache=cache), expect=lambda a: [a["cache"].dlogits])


def fn_random_crop_flip(pick, rng):
    c = core_random_crop_flip(pick, rng)
    a = c.args
    args = dict(x=a["x"], padding=a["padding"], flip=a["flip"], seed=a["seed"],
                layout="NHWC" if a["channels_last"] else "NCHW", out=a["out"])
    return Case("functional.random_crop_flip", F.random_crop_flip, args, writes=("out",),
                expect=lambda k: [_crop_flip_reference(k["x"], k["padding"], k["flip"], k["seed"],
                                                       k["layout"] == "NHWC")])


FUNCTIONAL = [
    fn_conv2d, fn_conv2d_backward, fn_batch_norm2d, fn_batch_norm2d_backward, fn_relu,
    _fn_masked_backward("functional.relu_backward", F.relu_backward),
    _same_as_core(_add("", None, relu=False), "functional.add", F.add), fn_add_relu,
    _fn_masked_backward("functional.add_relu_backward", F.add_relu_backward),
    fn_shortcut_a, fn_shortcut_a_backward,
    _same_as_core(core_nchw_to_nhwc, "functional.to_nhwc", F.to_nhwc),
    _same_as_core(core_nhwc_to_nchw, "functional.to_nchw", F.to_nchw),
    fn_max_pool2d, fn_max_pool2d_backward, fn_global_avg_pool2d, fn_global_avg_pool2d_backward,
    fn_linear, fn_linear_backward, fn_cross_entropy, fn_cross_entropy_backward,
    _same_as_core(core_sgd_step, "functional.sgd_step", F.sgd_step),
    _same_as_core(core_adam_step, "functional.adam_step", F.adam_step),
    fn_random_crop_flip,
]

BUILDERS = CORE + FUNCTIONAL


def seeded_pick(seed: int) -> Pick:
    """A pick that draws every size and flag from a seeded generator."""
    g = np.random.default_rng(seed)
    return lambda name, lo, hi: int(g.integers(lo, hi + 1))


def build(builder, seed: int = 0) -> Case:
    return builder(seeded_pick(seed), np.random.default_rng(seed + 1))
