"""Where float32 error comes from: each conv pass x algorithm x ResNet layer, and whole models.

    python benchmarks/precision.py --layers              # per-layer table (ResNet-20, ResNet-18)
    python benchmarks/precision.py --models --seeds 5    # model-level table (needs torch)

Per layer (``--layers``): realistic float32 operands (x = relu of a standard normal, as
after BN-ReLU; He-normal weights; dy with zero mean per channel, as BN's backward gives),
one call per pass and algorithm, against tests/reference.py in float64. Columns:
  elem      max |err| / max |ref| of the pass's output (y, dx or dW)
  after     the error after the reduction that follows, relative (2-norm over channels):
            forward -> the next BN's batch mean and variance of y;
            backward-data -> the previous BN-ReLU's backward sums sum(dz), sum(dz * xhat)
            with dz = dx * (xhat > 0);
            backward-weight -> dW itself (a reduction over N*P*Q), 2-norm relative.
  norm      forward only: max |err| / std of the channel, i.e. the error of the next BN's
            normalized value, which is what decides a ReLU mask near 0.

Per model (``--models``): tests/model_precision.py's measurement (our float32 model and
PyTorch float32 against float64 PyTorch, given the same branch decisions); prints for every
model, mode and algorithm setting the worst ratio of our error to PyTorch's (floor 1e-6) and
the number of ReLU/max-pool decisions that differ from the float64 run.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
sys.path.insert(0, os.path.join(HERE, "..", "python"))

import reference as R  # noqa: E402
from machine import machine_line  # noqa: E402
import resnet_cpp as rc  # noqa: E402
from resnet_cpp import _core  # noqa: E402

# (net, C, K, H=W, k, stride, pad, batch): every distinct conv of ResNet-20 (batch 8) and
# ResNet-18 at 224x224 (batch 2, which keeps the float64 reference affordable).
LAYERS = [
    ("resnet20", 3, 16, 32, 3, 1, 1, 8),
    ("resnet20", 16, 16, 32, 3, 1, 1, 8),
    ("resnet20", 16, 32, 32, 3, 2, 1, 8),
    ("resnet20", 16, 32, 32, 1, 2, 0, 8),
    ("resnet20", 32, 32, 16, 3, 1, 1, 8),
    ("resnet20", 32, 64, 16, 3, 2, 1, 8),
    ("resnet20", 64, 64, 8, 3, 1, 1, 8),
    ("resnet18", 3, 64, 224, 7, 2, 3, 2),
    ("resnet18", 64, 64, 56, 3, 1, 1, 2),
    ("resnet18", 64, 128, 56, 3, 2, 1, 2),
    ("resnet18", 64, 128, 56, 1, 2, 0, 2),
    ("resnet18", 128, 128, 28, 3, 1, 1, 2),
    ("resnet18", 128, 256, 28, 3, 2, 1, 2),
    ("resnet18", 256, 256, 14, 3, 1, 1, 2),
    ("resnet18", 256, 512, 14, 3, 2, 1, 2),
    ("resnet18", 512, 512, 7, 3, 1, 1, 2),
]
ALGOS = ("direct", "winograd2", "winograd4")
PASSES = ("forward", "backward_data", "backward_weight")


def _rel(a, ref) -> float:
    return float(np.linalg.norm(np.asarray(a, np.float64) - ref) / np.linalg.norm(ref))


def _elem(a, ref) -> float:
    return float(np.abs(np.asarray(a, np.float64) - ref).max() / np.abs(ref).max())


def layer_operands(C, K, H, k, stride, pad, N, rng):
    """NCHW float32 x, xhat (the BN input behind x), OIHW w and dy, as in training."""
    xhat = rng.standard_normal((N, C, H, H))
    x = np.maximum(xhat, 0.0).astype(np.float32)
    w = (rng.standard_normal((K, C, k, k)) * np.sqrt(2.0 / (k * k * K))).astype(np.float32)
    P = (H + 2 * pad - k) // stride + 1
    dy = rng.standard_normal((N, K, P, P))
    dy = (dy - dy.mean(axis=(0, 2, 3), keepdims=True)).astype(np.float32)
    return xhat, x, w, dy


def layer_errors(C, K, H, k, stride, pad, N, seed=0) -> dict:
    """{(pass, algo): (elem, after, norm)} for one layer shape."""
    rng = np.random.default_rng(seed)
    xhat, x, w, dy = layer_operands(C, K, H, k, stride, pad, N, rng)
    y_ref = R.conv2d_forward(x, w, None, stride, pad)
    dx_ref, dw_ref, _ = R.conv2d_backward(dy, x, w, stride, pad)
    mask = xhat > 0

    def stats(y):  # the next BN's batch statistics
        return np.concatenate([y.mean(axis=(0, 2, 3)), y.var(axis=(0, 2, 3))])

    def bn_sums(dx):  # the previous BN-ReLU's backward reductions
        dz = np.asarray(dx, np.float64) * mask
        return np.concatenate([dz.sum(axis=(0, 2, 3)), (dz * xhat).sum(axis=(0, 2, 3))])

    x_nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    dy_nhwc = np.ascontiguousarray(dy.transpose(0, 2, 3, 1))
    w_rsck = np.ascontiguousarray(w.transpose(2, 3, 1, 0))
    std = y_ref.std(axis=(0, 2, 3))[None, :, None, None]
    out = {}
    for algo in ALGOS:
        rc.set_conv_algorithm(algo)
        if _core.impl_name("conv2d_forward", N, H, H, C, K, k, k, stride, pad).split(":")[0] != algo:
            continue  # not run for this layer (Winograd: 3x3 stride 1, SIMD paths only)
        y = _core.conv2d_forward(x_nhwc, w_rsck, None, stride, pad).transpose(0, 3, 1, 2)
        out["forward", algo] = (_elem(y, y_ref), _rel(stats(np.asarray(y, np.float64)), stats(y_ref)),
                                float((np.abs(y - y_ref) / std).max()))
        dx = _core.conv2d_backward_data(dy_nhwc, w_rsck, H, H, stride, pad).transpose(0, 3, 1, 2)
        out["backward_data", algo] = (_elem(dx, dx_ref), _rel(bn_sums(dx), bn_sums(dx_ref)), None)
        dw, _ = _core.conv2d_backward_weight(x_nhwc, dy_nhwc, k, k, stride, pad, False)
        dw = dw.transpose(3, 2, 0, 1)
        out["backward_weight", algo] = (_elem(dw, dw_ref), _rel(dw, dw_ref), None)
    return out


def print_layers(seeds: int) -> None:
    print(f"{machine_line()}; worst over {seeds} seed(s)")
    print("| net | layer | pass | direct elem / after | F(2x2) elem / after | F(4x4) elem / after "
          "| fwd norm (d / F2 / F4) |")
    print("|---|---|---|---|---|---|---|")
    for net, C, K, H, k, stride, pad, N in LAYERS:
        worst: dict = {}
        for seed in range(seeds):
            for key, vals in layer_errors(C, K, H, k, stride, pad, N, seed).items():
                old = worst.get(key)
                worst[key] = vals if old is None else tuple(
                    None if v is None else max(v, o) for v, o in zip(vals, old))
        name = f"{C}->{K} {H}x{H} {k}x{k} s{stride} b{N}"
        for p in PASSES:
            cells = []
            for algo in ALGOS:
                v = worst.get((p, algo))
                cells.append("-" if v is None else f"{v[0]:.1e} / {v[1]:.1e}")
            norm = " / ".join(f"{worst[p, a][2]:.1e}" for a in ALGOS if (p, a) in worst) \
                if p == "forward" else ""
            print(f"| {net} | {name} | {p} | " + " | ".join(cells) + f" | {norm} |", flush=True)


def print_models(labels, seeds: int, algos) -> None:
    import torch

    import model_precision as mp

    torch.set_num_threads(rc.num_threads())
    print(machine_line())
    print("worst ratio ours/PyTorch-fp32 error (floor 1e-6) over outputs and parameter "
          "gradients, and decisions flipped against float64, summed over seeds")
    print("| model | mode | PyTorch fp32 max err / flips | " +
          " | ".join(algos) + " |")
    print("|---|---|---|" + "---|" * len(algos))
    for label in labels:
        for train in (True, False):
            worst = {a: 0.0 for a in algos}
            flips = {a: 0 for a in algos + ("torch",)}
            torch_max = 0.0
            t0 = time.perf_counter()
            for seed in range(seeds):
                r = mp.measure(label, seed, train, algos)
                tor = r["torch"]["errors"]
                torch_max = max(torch_max, max(tor.values()))
                flips["torch"] += r["torch"]["flips"]
                for a in algos:
                    e = r[a]["errors"]
                    worst[a] = max(worst[a], max(e[k] / max(tor[k], 1e-6) for k in tor))
                    flips[a] += r[a]["flips"]
            cells = " | ".join(f"{worst[a]:.1f}x / {flips[a]}" for a in algos)
            print(f"| {label} | {'train' if train else 'eval'} | {torch_max:.1e} / "
                  f"{flips['torch']} | {cells} |  ({time.perf_counter() - t0:.0f} s)", flush=True)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layers", action="store_true", help="per-layer, per-pass table")
    p.add_argument("--models", action="store_true", help="model-level table (needs torch)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--model", action="append", help="model label (default: all of "
                   "tests/model_precision.py's MODELS)")
    p.add_argument("--algos", default="direct,winograd2,auto,fast",
                   help="';'-separated algorithm settings for --models")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args(argv)
    rc.set_num_threads(a.threads)
    if not (a.layers or a.models):
        p.error("choose --layers and/or --models")
    before = rc.conv_algorithm()
    try:
        if a.layers:
            print_layers(a.seeds)
        if a.models:
            import model_precision as mp
            print_models(a.model or list(mp.MODELS), a.seeds, tuple(a.algos.split(";")))
    finally:
        rc.set_conv_algorithm(before)


if __name__ == "__main__":
    main()
