"""Inference beside the deployment anchor: resnet_cpp, onnxruntime (CPU) and PyTorch eager.

    python3 benchmarks/bench_infer.py            # ResNet-50 224x224, ResNet-20 32x32; batch 1, 32
    python3 benchmarks/bench_infer.py --model resnet20 --batch 1,32 --repeats 5 --threads 2
    python3 benchmarks/bench_infer.py --json     # one JSON line per model, batch and side

For each model: ours with BN statistics and affine parameters set away from their defaults
(as after training), in eval mode; its PyTorch twin (resnet_cpp.models.torch_twin: the same
weights) exported with torch.onnx.export (TorchScript exporter, opset 17, dynamic batch) and
run by onnxruntime's CPUExecutionProvider (all graph optimizations, intra_op_num_threads =
--threads, inter_op_num_threads = 1). Before timing, every side's logits on the timed batch
are compared with onnxruntime's: the max abs difference is printed, and one above
PARITY_REL x max |logits| stops the script (exit status 1).

Sides, timed in one process, interleaved (each repeat runs every side once, in turn):

    resnet_cpp        model.eval()(x): the eval forward, BN a pass of its own
    resnet_cpp_fused  model.fuse()(x): BN folded into the convolutions, the deployment path
                      (what resnet_cpp.io.export_onnx writes)
    onnxruntime       session.run on the NCHW batch
    torch_cl          PyTorch eager, channels_last model and input, torch.inference_mode()

Each side gets --warmup calls, then each repeat times a loop of calls lasting at least
MIN_REPEAT_S (ResNet-20 at batch 1 takes about a millisecond a call); reported: the median
ms per batch over --repeats, the spread (max - min), images/s, and the ratio to onnxruntime
(onnxruntime's ms / the side's ms: above 1 is faster than onnxruntime).
"""
from __future__ import annotations

import argparse
import io
import json
import math
import statistics
import time
import warnings
from typing import Callable, NamedTuple

import numpy as np
from bench_train import time_steps
from machine import machine_line

# name -> (input size, classes): ImageNet ResNet-50 and CIFAR ResNet-20 (v1, shortcut A).
MODELS = {"resnet50": (224, 1000), "resnet20": (32, 10)}
SIDES = ("resnet_cpp", "resnet_cpp_fused", "onnxruntime", "torch_cl")
# Logits may differ from onnxruntime's by this fraction of the largest |logit|. Float32 with
# different summation orders, Winograd on our side and BN folded differently on each side:
# measured up to 7e-7 (ResNet-50 at 224x224, batch 2); the export tests use 1e-5 too.
PARITY_REL = 1e-5
MIN_REPEAT_S = 0.2


def _models(text: str) -> list[str]:
    names = text.split(",")
    unknown = [m for m in names if m not in MODELS]
    if unknown:
        raise argparse.ArgumentTypeError(f"expected a comma list of {', '.join(MODELS)}, "
                                         f"got {', '.join(unknown)}")
    return names


def _batches(text: str) -> list[int]:
    try:
        sizes = [int(b) for b in text.split(",")]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"expected a comma list of positive integers, "
                                         f"got {text!r}")
    return sizes


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=_models, default=list(MODELS),
                   help=f"comma list of {', '.join(MODELS)} (default: both)")
    p.add_argument("--batch", type=_batches, default=[1, 32], help="comma list of batch sizes")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats (median and spread)")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls per side first")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", action="store_true",
                   help="one JSON line per model, batch and side")
    a = p.parse_args(argv)
    if a.repeats < 1 or a.warmup < 0 or a.threads < 1:
        p.error("--repeats and --threads must be >= 1, --warmup >= 0")
    return a


class Prepared(NamedTuple):
    """One model on every side: ours (eval mode), its PyTorch twin and the twin's export
    loaded in onnxruntime."""

    model: object
    twin: object
    session: object


def trained_looking(name: str, seed: int = 0):
    """Our model in eval mode, every BN's statistics and affine parameters randomized (at
    their initial values eval-mode BN is nearly the identity and folding it tests little)."""
    import resnet_cpp as rc

    model = rc.models.create(name, num_classes=MODELS[name][1], seed=seed)
    rng = np.random.default_rng(seed)
    for m in model.modules():
        if isinstance(m, rc.nn.BatchNorm2d):
            c = m.num_features
            m.running_mean[...] = rng.normal(0, 0.2, c)
            m.running_var[...] = rng.uniform(0.5, 2.0, c)
            m.weight.data[...] = rng.uniform(0.5, 1.5, c)
            m.bias.data[...] = rng.normal(0, 0.2, c)
    return model.eval()


def prepare(name: str, threads: int, seed: int = 0) -> Prepared:
    """Build ours, its twin, and an onnxruntime session of the twin's ONNX export."""
    import onnxruntime as ort
    import torch

    import resnet_cpp as rc

    model = trained_looking(name, seed)
    twin = rc.models.torch_twin(model, torch.float32)
    size = MODELS[name][0]
    buf = io.BytesIO()
    with warnings.catch_warnings():
        # dynamo=False: the TorchScript exporter, which needs no onnxscript (not in the
        # extras); quiet its deprecation notice and its note that option-A shortcuts'
        # strided slices are not constant-folded (they slice activations, not constants)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", "Constant folding - Only steps=1", UserWarning)
        torch.onnx.export(twin, (torch.zeros(1, 3, size, size),), buf, dynamo=False,
                          opset_version=17, input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(buf.getvalue(), opts, providers=["CPUExecutionProvider"])
    return Prepared(model, twin.to(memory_format=torch.channels_last), session)


def side_calls(prep: Prepared, x: np.ndarray) -> dict[str, Callable[[], np.ndarray]]:
    """Each side as a call on the batch x (N, 3, H, W) returning its logits (N, classes)."""
    import torch

    fused = prep.model.fuse()
    x_cl = torch.from_numpy(x).contiguous(memory_format=torch.channels_last)

    def torch_cl():
        with torch.inference_mode():
            return prep.twin(x_cl).numpy()

    calls = {"resnet_cpp": lambda: prep.model(x), "resnet_cpp_fused": lambda: fused(x),
             "onnxruntime": lambda: prep.session.run(None, {"input": x})[0],
             "torch_cl": torch_cl}
    return {k: calls[k] for k in SIDES}


def check_parity(calls: dict[str, Callable[[], np.ndarray]]) -> tuple[dict[str, float], float]:
    """Max |logits - onnxruntime's| per side and the bound; SystemExit naming every side
    above the bound."""
    want = calls["onnxruntime"]().astype(np.float64)
    bound = PARITY_REL * float(np.abs(want).max())
    diffs = {k: float(np.abs(fn().astype(np.float64) - want).max()) for k, fn in calls.items()}
    bad = [f"{k} by {d:.3g}" for k, d in diffs.items() if not d <= bound]
    if bad:
        raise SystemExit(f"parity: logits differ from onnxruntime's: {', '.join(bad)} "
                         f"(bound {bound:.3g} = {PARITY_REL:g} x max |logits|)")
    return diffs, bound


def time_sides(calls: dict[str, Callable], repeats: int, warmup: int) -> dict[str, dict]:
    """Per side: ms per batch of every repeat, interleaved, and the calls per repeat."""
    loops = {}
    for k, fn in calls.items():
        for _ in range(warmup):
            fn()
        t0 = time.perf_counter()
        fn()
        loops[k] = max(1, math.ceil(MIN_REPEAT_S / (time.perf_counter() - t0)))
    ms = {k: [] for k in calls}
    for _ in range(repeats):  # interleaved: each repeat runs every side once
        for k, fn in calls.items():
            ms[k].append(1e3 * time_steps(fn, loops[k]))
    return {k: dict(ms=v, calls_per_repeat=loops[k]) for k, v in ms.items()}


def measure(a: argparse.Namespace, name: str, prep: Prepared, batch: int) -> list[dict]:
    """Parity, then timing, of every side on one batch: one row per side."""
    size = MODELS[name][0]
    x = np.random.default_rng(1).standard_normal((batch, 3, size, size), dtype=np.float32)
    calls = side_calls(prep, x)
    diffs, bound = check_parity(calls)
    if not a.json:
        print(f"{name} batch {batch}: max |logits - onnxruntime's| "
              + ", ".join(f"{k} {d:.2g}" for k, d in diffs.items() if k != "onnxruntime")
              + f" (bound {bound:.2g})", flush=True)
    timed = time_sides(calls, a.repeats, a.warmup)
    ort_ms = statistics.median(timed["onnxruntime"]["ms"])
    rows = []
    for k, t in timed.items():
        med = statistics.median(t["ms"])
        rows.append(dict(model=name, image=size, batch=batch, side=k, ms=med,
                         spread_ms=max(t["ms"]) - min(t["ms"]), img_s=1e3 * batch / med,
                         vs_onnxruntime=ort_ms / med, max_abs_diff=diffs[k],
                         parity_bound=bound, calls_per_repeat=t["calls_per_repeat"]))
    return rows


def print_table(rows: list[dict]) -> None:
    """One markdown row per model and batch (the README's table), a column per side."""
    cols = {"resnet_cpp": "resnet_cpp eval", "resnet_cpp_fused": "resnet_cpp fused",
            "onnxruntime": "onnxruntime", "torch_cl": "PyTorch channels_last"}
    print("| model, batch | " + " | ".join(cols.values())
          + " | ours / onnxruntime (eval, fused) |")
    print("|---|" + "---:|" * (len(cols) + 1))
    for i in range(0, len(rows), len(SIDES)):
        by = {r["side"]: r for r in rows[i:i + len(SIDES)]}
        r0 = by["onnxruntime"]
        cells = [f"{by[k]['ms']:.2f} ms ({by[k]['spread_ms']:.2f}), {by[k]['img_s']:.1f} img/s"
                 for k in cols]
        ratio = ", ".join(f"{by[k]['vs_onnxruntime']:.2f}x"
                          for k in ("resnet_cpp", "resnet_cpp_fused"))
        label = f"{r0['model'].replace('resnet', 'ResNet-')} {r0['image']}x{r0['image']}"
        print(f"| {label}, {r0['batch']} | " + " | ".join(cells) + f" | {ratio} |")


def main(argv=None) -> None:
    a = parse_args(argv)
    import onnxruntime as ort
    import torch

    import resnet_cpp as rc

    rc.set_num_threads(a.threads)
    torch.set_num_threads(a.threads)
    head = dict(machine=machine_line(a.threads), resnet_cpp=rc.__version__,
                torch=torch.__version__, onnxruntime=ort.__version__, threads=a.threads,
                repeats=a.repeats)
    if not a.json:
        print(f"{head['machine']} | resnet_cpp {rc.__version__}, torch {torch.__version__}, "
              f"onnxruntime {ort.__version__}", flush=True)
    rows = []
    for name in a.model:
        prep = prepare(name, a.threads)
        for batch in a.batch:
            for r in measure(a, name, prep, batch):
                rows.append(r)
                if a.json:
                    print(json.dumps({**head, **r}), flush=True)
    if not a.json:
        print(f"median of {a.repeats} repeats, ms per batch (spread: max - min), images/s; "
              "ours / onnxruntime: onnxruntime's ms / ours (above 1: ours faster)")
        print_table(rows)


if __name__ == "__main__":
    main()
