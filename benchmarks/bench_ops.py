"""Per-op microbenchmarks: our kernels per ISA path and thread count vs PyTorch.

Each case is validated against a float64 NumPy computation on a small slice before timing,
warmed up, then timed as the median of --repeats calls. Output: a readable table, or JSON
lines with --json. % of peak uses a measured FMA peak (_core.fma_peak_gflops) for the
same ISA and thread count unless --peak is given.

    PYTHONPATH=python python3 benchmarks/bench_ops.py                  # all cases, all ISAs
    PYTHONPATH=python python3 benchmarks/bench_ops.py --isa avx512 --threads 1,2 --filter s2
    PYTHONPATH=python python3 benchmarks/bench_ops.py --json --no-torch
    PYTHONPATH=python python3 benchmarks/bench_ops.py --algo direct,auto --filter conv
    PYTHONPATH=python python3 benchmarks/bench_ops.py --net resnet18 --batch 16 --filter conv
    PYTHONPATH=python python3 benchmarks/bench_ops.py --precision fp32,bf16 --filter conv

The "impl" column says which implementation ran (_core.impl_name: algorithm and ISA path;
for convolutions direct, winograd2 = F(2x2,3x3), winograd4 = F(4x4,3x3), direct_bf16 =
bf16 operands); GFLOP/s always counts direct-convolution FLOPs, so Winograd rows can
exceed the FMA peak (and % of peak is of the fp32 FMA peak: bf16 rows may reach 200%).
With --precision bf16 the PyTorch side runs bf16 tensors too, and validation allows bf16's
rounding (1e-2 instead of 1e-4).

Adding an op: append Case objects to CASES (see conv_cases); a case builds, for a batch
size, our callable, a validation callable and optionally PyTorch callables per layout.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
from machine import machine_line

import resnet_cpp
from resnet_cpp import _core


@dataclass
class Bound:
    """A case instantiated for one batch size."""

    ours: Callable[[], object]                 # the timed call
    validate: Callable[[], float]              # max relative error on a slice vs float64
    torch: dict                                # layout name -> timed torch callable
    flops: float                               # per call (0 for memory-bound ops)
    bytes: float = 0.0                         # memory traffic per call (memory-bound ops)
    impl: Callable[[], str] = lambda: "-"      # the implementation the call runs now


@dataclass
class Case:
    name: str                                  # e.g. "conv 16->16 32x32 3x3 s1"
    op: str                                    # e.g. "fwd", "bwd_data", "bwd_weight"
    build: Callable[[int, Optional[object]], Bound]   # (batch, torch module or None)
    per_algo: bool = False                     # runs per conv algorithm and precision setting


# ------------------------------------------------------------------------ convolution

def _ref_conv_nhwc(x, w, b, st, pad):
    """float64 y (N,P,Q,K) from x (N,H,W,C), w (R,S,C,K)."""
    x, w = x.astype(np.float64), w.astype(np.float64)
    R, S = w.shape[:2]
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    P = (x.shape[1] + 2 * pad - R) // st + 1
    Q = (x.shape[2] + 2 * pad - S) // st + 1
    y = np.zeros((x.shape[0], P, Q, w.shape[3]))
    for r in range(R):
        for s in range(S):
            y += xp[:, r:r + st * P:st, s:s + st * Q:st] @ w[r, s]
    return y if b is None else y + b


def _ref_conv_grads_nhwc(x, w, dy, st, pad):
    """float64 (dx, dw) for the conv above."""
    x, w, dy = x.astype(np.float64), w.astype(np.float64), dy.astype(np.float64)
    R, S = w.shape[:2]
    N, H, W, _ = x.shape
    P, Q = dy.shape[1:3]
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    dxp = np.zeros_like(xp)
    dw = np.zeros_like(w)
    for r in range(R):
        for s in range(S):
            win = (slice(None), slice(r, r + st * P, st), slice(s, s + st * Q, st))
            dw[r, s] = np.einsum("npqc,npqk->ck", xp[win], dy)
            dxp[win] += dy @ w[r, s].T
    return dxp[:, pad:pad + H, pad:pad + W], dw


def _relerr(a, r):
    return float(np.max(np.abs(a - r)) / (np.max(np.abs(r)) + 1e-30))


def conv_case(C, K, H, R, st, pad, op, bf16=False):
    P = (H + 2 * pad - R) // st + 1
    name = f"conv {C}->{K} {H}x{H} {R}x{R} s{st}"

    def build(N, torch):
        g = np.random.default_rng(0)
        x = g.standard_normal((N, H, H, C)).astype(np.float32)
        w = (g.standard_normal((R, R, C, K)) * np.sqrt(2 / (C * R * R))).astype(np.float32)
        b = g.standard_normal(K).astype(np.float32)
        dy = g.standard_normal((N, P, P, K)).astype(np.float32)
        flops = 2.0 * N * P * P * K * C * R * R
        n = min(N, 2)
        if op == "fwd":
            out = np.empty((N, P, P, K), np.float32)
            ours = lambda: _core.conv2d_forward(x, w, b, st, pad, out)  # noqa: E731
            validate = lambda: _relerr(_core.conv2d_forward(x[:n], w, b, st, pad),  # noqa: E731
                                       _ref_conv_nhwc(x[:n], w, b, st, pad))
        elif op == "bwd_data":
            out = np.empty_like(x)
            ours = lambda: _core.conv2d_backward_data(dy, w, H, H, st, pad, out)  # noqa: E731
            validate = lambda: _relerr(  # noqa: E731
                _core.conv2d_backward_data(dy[:n], w, H, H, st, pad),
                _ref_conv_grads_nhwc(x[:n], w, dy[:n], st, pad)[0])
        else:
            dw_out, db_out = np.empty_like(w), np.empty_like(b)
            ours = lambda: _core.conv2d_backward_weight(  # noqa: E731
                x, dy, R, R, st, pad, True, dw_out, db_out)
            validate = lambda: _relerr(  # noqa: E731
                _core.conv2d_backward_weight(x[:n], dy[:n], R, R, st, pad, False)[0],
                _ref_conv_grads_nhwc(x[:n], w, dy[:n], st, pad)[1])
        tfns = {}
        if torch is not None:
            for layout in ("nchw", "channels_last"):
                fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
                tx = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).contiguous(memory_format=fmt)
                tw = torch.from_numpy(w.transpose(3, 2, 0, 1).copy()).contiguous(memory_format=fmt)
                tb = torch.from_numpy(b)
                tdy = torch.from_numpy(dy.transpose(0, 3, 1, 2).copy()).contiguous(memory_format=fmt)
                if bf16:
                    tx, tw, tb, tdy = (t.to(torch.bfloat16) for t in (tx, tw, tb, tdy))
                cb = torch.ops.aten.convolution_backward
                if op == "fwd":
                    f = lambda tx=tx, tw=tw, tb=tb: torch.nn.functional.conv2d(  # noqa: E731
                        tx, tw, tb, st, pad)
                elif op == "bwd_data":
                    f = lambda tx=tx, tw=tw, tdy=tdy: cb(  # noqa: E731
                        tdy, tx, tw, None, [st, st], [pad, pad], [1, 1], False, [0, 0], 1,
                        [True, False, False])
                else:
                    f = lambda tx=tx, tw=tw, tdy=tdy: cb(  # noqa: E731
                        tdy, tx, tw, [K], [st, st], [pad, pad], [1, 1], False, [0, 0], 1,
                        [False, True, True])
                tfns[layout] = f
        pass_ = {"fwd": "forward", "bwd_data": "backward_data", "bwd_weight": "backward_weight"}[op]
        impl = lambda: _core.impl_name(f"conv2d_{pass_}", N, H, H, C, K, R, R, st, pad)  # noqa: E731
        return Bound(ours, validate, tfns, flops, impl=impl)

    return Case(name, op, build, per_algo=True)


# ResNet-20 (CIFAR-10) conv layers: stem, three stages, the stride-2 transitions and the
# 1x1 projection shortcuts (option B).
RESNET20_CONVS = [
    (3, 16, 32, 3, 1, 1),
    (16, 16, 32, 3, 1, 1),
    (16, 32, 32, 3, 2, 1),
    (16, 32, 32, 1, 2, 0),
    (32, 32, 16, 3, 1, 1),
    (32, 64, 16, 3, 2, 1),
    (32, 64, 16, 1, 2, 0),
    (64, 64, 8, 3, 1, 1),
]


# ResNet-18 (ImageNet, 224x224) 3x3 layers: one per stage and the first stride-2 one.
RESNET18_CONVS = [
    (64, 64, 56, 3, 1, 1),
    (64, 128, 56, 3, 2, 1),
    (128, 128, 28, 3, 1, 1),
    (256, 256, 14, 3, 1, 1),
    (512, 512, 7, 3, 1, 1),
]


# ResNet-50 (ImageNet, 224x224): the stem, then per stage the bottleneck's 1x1 reduce, 3x3
# (stride 2 where a stage starts) and 1x1 expand, and the first stage's projection.
RESNET50_CONVS = [
    (3, 64, 224, 7, 2, 3),
    (256, 64, 56, 1, 1, 0),
    (64, 64, 56, 3, 1, 1),
    (64, 256, 56, 1, 1, 0),
    (256, 512, 56, 1, 2, 0),
    (128, 128, 56, 3, 2, 1),
    (512, 128, 28, 1, 1, 0),
    (128, 512, 28, 1, 1, 0),
    (256, 256, 14, 3, 1, 1),
    (1024, 256, 14, 1, 1, 0),
    (512, 512, 7, 3, 1, 1),
    (2048, 512, 7, 1, 1, 0),
    (512, 2048, 7, 1, 1, 0),
]
NETS = {"resnet20": RESNET20_CONVS, "resnet18": RESNET18_CONVS, "resnet50": RESNET50_CONVS}


def conv_cases(net="resnet20", bf16=False):
    shapes = NETS[net]
    return [conv_case(*shape, op, bf16) for shape in shapes for op in ("fwd", "bwd_data", "bwd_weight")]


# ------------------------------------------------------------------------ batch norm

def bn_case(C, H, op):
    """Batch norm + ReLU over NHWC (N,H,H,C), the fused kernels a ResNet block runs.

    Bytes per call count one read or write of each tensor per pass (T = N*H*H*C*4):
    train forward = statistics pass (1T) + apply pass (2T); eval forward 2T; train backward
    with the ReLU mask recomputed from x = reduction pass over dy, x (2T) + dx pass (3T).
    """
    name = f"bn+relu {H}x{H}x{C}"

    def build(N, torch):
        g = np.random.default_rng(0)
        x = g.standard_normal((N, H, H, C)).astype(np.float32)
        dy = g.standard_normal((N, H, H, C)).astype(np.float32)
        gamma = g.uniform(0.5, 1.5, C).astype(np.float32)
        beta = g.standard_normal(C).astype(np.float32)
        rm, rv = np.zeros(C, np.float32), np.ones(C, np.float32)
        T = x.nbytes
        n = min(N, 2)
        _, mean, rstd = _core.batch_norm_forward_train(x, gamma, beta, rm.copy(), rv.copy(), 0.1, 1e-5, True)
        out = np.empty_like(x)

        def ref_fwd(xs):  # float64, NHWC, biased variance
            xs = xs.astype(np.float64)
            m, v = xs.mean(axis=(0, 1, 2)), xs.var(axis=(0, 1, 2))
            return np.maximum((xs - m) / np.sqrt(v + 1e-5) * gamma + beta, 0)

        if op == "fwd_train":
            ours = lambda: _core.batch_norm_forward_train(x, gamma, beta, rm, rv, 0.1, 1e-5, True, out)  # noqa: E731
            validate = lambda: _relerr(  # noqa: E731
                _core.batch_norm_forward_train(x[:n], gamma, beta, rm.copy(), rv.copy(), 0.1, 1e-5, True)[0],
                ref_fwd(x[:n]))
            nbytes = 3 * T
        elif op == "fwd_eval":
            ours = lambda: _core.batch_norm_forward_eval(x, gamma, beta, rm, rv, 1e-5, True, out)  # noqa: E731
            validate = lambda: _relerr(  # noqa: E731
                _core.batch_norm_forward_eval(x[:n], gamma, beta, rm, rv, 1e-5, True),
                np.maximum((x[:n].astype(np.float64) - rm) / np.sqrt(rv.astype(np.float64) + 1e-5) * gamma + beta, 0))
            nbytes = 2 * T
        else:
            ours = lambda: _core.batch_norm_backward(dy, x, gamma, mean, rstd, beta, True, True, out)  # noqa: E731

            def validate():
                ys, ms, rs = _core.batch_norm_forward_train(x[:n], gamma, beta, rm.copy(), rv.copy(), 0.1, 1e-5, True)
                dx = _core.batch_norm_backward(dy[:n], x[:n], gamma, ms, rs, beta, True, True)[0]
                xs, d = x[:n].astype(np.float64), dy[:n] * (ys > 0)
                xhat = (xs - xs.mean(axis=(0, 1, 2))) / np.sqrt(xs.var(axis=(0, 1, 2)) + 1e-5)
                m = xs.size // C
                ref = gamma / np.sqrt(xs.var(axis=(0, 1, 2)) + 1e-5) * (
                    d - d.sum(axis=(0, 1, 2)) / m - xhat * (d * xhat).sum(axis=(0, 1, 2)) / m)
                return _relerr(dx, ref)
            nbytes = 5 * T
        tfns = {}
        if torch is not None:
            F = torch.nn.functional
            tg, tb = torch.from_numpy(gamma), torch.from_numpy(beta)
            for layout in ("nchw", "channels_last"):
                fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
                tx = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).contiguous(memory_format=fmt)
                tdy = torch.from_numpy(dy.transpose(0, 3, 1, 2).copy()).contiguous(memory_format=fmt)
                trm, trv = torch.zeros(C), torch.ones(C)
                if op == "fwd_train":
                    f = lambda tx=tx, trm=trm, trv=trv: F.relu(  # noqa: E731
                        F.batch_norm(tx, trm, trv, tg, tb, True, 0.1, 1e-5))
                elif op == "fwd_eval":
                    f = lambda tx=tx, trm=trm, trv=trv: F.relu(  # noqa: E731
                        F.batch_norm(tx, trm, trv, tg, tb, False, 0.1, 1e-5))
                else:
                    ty, tm_, tr_ = torch.ops.aten.native_batch_norm(tx, tg, tb, trm, trv, True, 0.1, 1e-5)
                    ty = F.relu(ty)

                    def f(tx=tx, tdy=tdy, ty=ty, tm_=tm_, tr_=tr_, trm=trm, trv=trv):
                        d = torch.ops.aten.threshold_backward(tdy, ty, 0.0)
                        return torch.ops.aten.native_batch_norm_backward(
                            d, tx, tg, trm, trv, tm_, tr_, True, 1e-5, [True, True, True])
                tfns[layout] = f
        kernel = {"fwd_train": "batch_norm_forward_train", "fwd_eval": "batch_norm_forward_eval",
                  "bwd_train": "batch_norm_backward"}[op]
        return Bound(ours, validate, tfns, 0.0, nbytes, impl=lambda: _core.impl_name(kernel))

    return Case(name, op, build)


# ResNet-20's three activation shapes (per stage).
RESNET20_BN = [(16, 32), (32, 16), (64, 8)]


def bn_cases():
    return [bn_case(C, H, op) for C, H in RESNET20_BN for op in ("fwd_train", "bwd_train", "fwd_eval")]




# ------------------------------------------------------------------------ runner

def time_call(fn, repeats: int, warmup: int, clock=time.perf_counter, div: int = 1,
                stat=statistics.median) -> float:
    """Median (or stat) seconds per call. With clock=time.process_time it is CPU seconds / div
    (threads), and each sample loops the call until >= 50 ms so tick-based accounting of
    the other threads' CPU time averages out."""
    for _ in range(warmup):
        fn()
    t0 = clock()
    fn()
    once = max(clock() - t0, 1e-6)
    inner = 1 if clock is time.perf_counter else max(1, int(0.05 / once + 0.999))
    ts = []
    for _ in range(repeats):
        t0 = clock()
        for _ in range(inner):
            fn()
        ts.append((clock() - t0) / div / inner)
    return stat(ts)


def measure_peak(threads: int, cpu_time: bool) -> float:
    """FMA peak (GFLOP/s) of the active ISA on `threads` threads, on the same clock as the
    timings: with cpu_time, per CPU second of each thread (a loaded machine then still shows
    the core's peak)."""
    w0, c0 = time.perf_counter(), time.process_time()
    g = _core.fma_peak_gflops(30_000_000)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    return g * wall * threads / cpu if cpu_time and cpu > 0 else g


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--isa", default="all",
                    help="comma list of scalar,avx2,avx512,avx512_bf16 or 'all' (avx512_bf16 runs "
                         "avx512's fp32 kernels, so 'all' omits it unless bf16 is measured)")
    ap.add_argument("--threads", default="1,2", help="comma list of thread counts")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--filter", default="", help="only cases whose 'name op' contains this")
    ap.add_argument("--net", default="resnet20", choices=sorted(NETS),
                    help="layer shapes of the conv cases")
    ap.add_argument("--algo", default="auto",
                    help="comma list of conv algorithms: auto,direct,winograd2,winograd4")
    ap.add_argument("--precision", default="fp32",
                    help="comma list of conv precisions: fp32,bf16 (bf16 only on bf16 ISA paths)")
    ap.add_argument("--peak", type=float, default=0.0,
                    help="GFLOP/s peak per thread instead of measuring (e.g. 115)")
    ap.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparison")
    ap.add_argument("--json", action="store_true", help="one JSON object per line")
    ap.add_argument("--stat", choices=["median", "min"], default="median",
                    help="min: best of the repeats (less sensitive to other load on the machine)")
    ap.add_argument("--cpu-time", action="store_true",
                    help="time with process CPU time / threads (robust on a shared, loaded "
                         "machine; assumes every thread is busy for the whole call)")
    args = ap.parse_args(argv)

    order = ["scalar", "avx2", "avx512", "avx512_bf16"]
    best = order.index(_core.detected_isa())
    runnable = [i for i in _core.compiled_isas() if order.index(i) <= best]
    precisions = args.precision.split(",")
    if args.isa == "all" and "bf16" not in precisions:
        runnable = [i for i in runnable if order.index(i) <= order.index("avx512")]
    isas = runnable if args.isa == "all" else [i for i in args.isa.split(",") if i in runnable]
    threads = [int(t) for t in args.threads.split(",")]
    torch = None
    if not args.no_torch:
        try:
            import torch  # noqa: F401  (benchmark extra only)
        except ImportError:
            print("torch not installed: no PyTorch comparison", file=sys.stderr)
    cases = {p: [c for c in conv_cases(args.net, p == "bf16") + bn_cases()
                 if args.filter in f"{c.name} {c.op}"] for p in precisions}
    algos = args.algo.split(",")
    old_isa, old_threads, old_algo = _core.max_isa(), _core.num_threads(), _core.conv_algorithm()
    old_precision = _core.precision()

    def clock(t):
        stat = min if args.stat == "min" else statistics.median
        return (time.process_time, t, stat) if args.cpu_time else (time.perf_counter, 1, stat)

    header = (f"{'case':<28}{'op':<11}{'isa':<12}{'impl':<24}{'thr':>3}{'ms':>9}{'GFLOP/s':>9}{'%peak':>7}"
              f"{'GB/s':>7}{'torch NCHW':>11}{'torch CL':>10}{'speedup':>8}")
    machine = machine_line(args.threads)  # before the ISA cap moves: the machine's best path
    if not args.json:
        print(machine)
        print(f"# batch {args.batch}, {args.stat} of {args.repeats}"
              f"{' (CPU time / threads)' if args.cpu_time else ''}; speedup = best torch ms / our ms")
        print(header)
    try:
        for t in threads:
            resnet_cpp.set_num_threads(t)
            torch_ms: dict = {}
            if torch is not None:
                torch.set_num_threads(t)
            for isa, algo_name, prec in ((i, a, p) for i in isas for a in algos for p in precisions):
                resnet_cpp.set_max_isa(isa)
                resnet_cpp.set_conv_algorithm(algo_name)
                _core.set_precision(prec)
                if prec == "bf16" and not _core.bf16_active():
                    continue  # this path would run fp32
                peak = args.peak * t if args.peak else measure_peak(t, args.cpu_time)
                for case in cases[prec]:
                    if not case.per_algo and (algo_name, prec) != (algos[0], precisions[0]):
                        continue  # not a convolution: timed once per ISA
                    bound = case.build(args.batch, torch)
                    impl = bound.impl()
                    err = bound.validate()
                    if not err < (1e-2 if prec == "bf16" else 1e-4):
                        raise SystemExit(f"{case.name} {case.op} {isa}: validation failed, rel err {err:.2e}")
                    reps = max(1, args.repeats // 3) if isa == "scalar" else args.repeats
                    sec = time_call(bound.ours, reps, args.warmup, *clock(t))
                    key = (case.name, case.op, prec)
                    if torch is not None and key not in torch_ms:
                        torch_ms[key] = {k: 1e3 * time_call(f, args.repeats, args.warmup, *clock(t))
                                         for k, f in bound.torch.items()}
                    tm = torch_ms.get(key, {})
                    gf = bound.flops / sec * 1e-9 if bound.flops else None
                    gbs = bound.bytes / sec * 1e-9 if bound.bytes else None
                    row = dict(case=case.name, op=case.op, isa=isa, impl=impl, threads=t, batch=args.batch,
                               ms=1e3 * sec, gflops=gf, peak_gflops=peak, gb_per_s=gbs,
                               pct_peak=100 * gf / peak if gf else None, max_rel_err=err,
                               torch_nchw_ms=tm.get("nchw"), torch_cl_ms=tm.get("channels_last"),
                               machine=machine)
                    best_t = min(tm.values()) if tm else None
                    row["speedup_vs_torch"] = best_t / row["ms"] if best_t else None
                    if args.json:
                        print(json.dumps(row), flush=True)
                    else:
                        f = lambda v, w, p: f"{v:>{w}.{p}f}" if v is not None else " " * (w - 1) + "-"  # noqa: E731
                        print(f"{case.name:<28}{case.op:<11}{isa:<12}{impl:<24}{t:>3}{row['ms']:>9.2f}{f(gf, 9, 1)}"
                              f"{f(row['pct_peak'], 7, 1)}{f(gbs, 7, 0)}{f(row['torch_nchw_ms'], 11, 2)}"
                              f"{f(row['torch_cl_ms'], 10, 2)}{f(row['speedup_vs_torch'], 8, 2)}",
                              flush=True)
    finally:
        resnet_cpp.set_max_isa(old_isa)
        resnet_cpp.set_num_threads(old_threads)
        resnet_cpp.set_conv_algorithm(old_algo)
        _core.set_precision(old_precision)
    return 0


if __name__ == "__main__":
    sys.exit(main())
