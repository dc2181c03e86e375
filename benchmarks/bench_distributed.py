"""Data-parallel training over MPI on this machine, and the cost model for N machines.

    python3 benchmarks/bench_distributed.py                  # ResNet-20, global batch 128
    python3 benchmarks/bench_distributed.py --model resnet56 --sync-bn --json
    python3 benchmarks/bench_distributed.py --table          # the README's scaling table

Runs the real training loop (``rc.train.fit``, synthetic 32x32 images, SGD, no
augmentation) at one global batch in four configurations, each a fresh process (group):

    1 rank  x 1 thread,  global batch B       the baseline
    1 rank  x 1 thread,  batch B/2            one rank's share of the 2-rank step
    2 ranks x 1 thread,  B/2 per rank         mpirun --oversubscribe -n 2 (needs Open MPI)
    1 rank  x 2 threads, global batch B       the same two cores used by OpenMP instead

and reports steps/s, images/s and, for 2 ranks, the time in the gradient Allreduce per step
(inside the step, so including the wait for the slower rank) and the Allreduce alone
(after a barrier, median of 50: pure transport). The cost model predicts the 2-rank step
as the B/2 step plus the modelled Allreduce, and prints prediction beside measurement.

Cost model (ring allreduce, no overlap): every step each of N ranks sends and receives
2 (N-1)/N x G bytes (G = 4 bytes x parameters) and waits 2 (N-1) link latencies a, so

    T_step(N) = T_compute + 2 (N-1)/N x G / bandwidth + 2 (N-1) a
    efficiency(N) = T_compute / T_step(N)     (weak scaling: fixed batch per rank)

Synchronized BN adds two small allreduces per BN layer, about 2 x L x 2 log2(N) a for
L BN layers (latency-bound: recursive doubling).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np
from machine import machine_line

HERE = os.path.dirname(os.path.abspath(__file__))

# --table: (model, per-node batch, per-node step time in s on the 2-core Zen 4 VM of the
# README's tables, precise default convolutions). ResNet-20/56: 1124 and 367 img/s at batch
# 128; ResNet-50 at 224x224: 6.5 img/s at batch 8 (README, Benchmarks), taken for batch 32.
TABLE_MODELS = (("resnet20", 128, 128 / 1124), ("resnet56", 128, 128 / 367),
                ("resnet50", 32, 32 / 6.5))
# Links: (name, bytes/s, latency a in s): 10 GbE over TCP, 100 Gb/s RDMA (InfiniBand/RoCE).
LINKS = (("10 Gb/s", 10e9 / 8, 30e-6), ("100 Gb/s", 100e9 / 8, 3e-6))
NODES = (2, 4, 8, 16, 32, 64)


def allreduce_seconds(nbytes: float, n: int, bandwidth: float, latency: float) -> float:
    """Ring allreduce of nbytes over n ranks."""
    if n < 2:
        return 0.0
    return 2 * (n - 1) / n * nbytes / bandwidth + 2 * (n - 1) * latency


def num_parameters(model: str) -> int:
    import resnet_cpp as rc

    return rc.models.create(model, num_classes=1000 if model == "resnet50" else 10
                            ).num_parameters()


def print_table(node_speedup: float) -> None:
    """Efficiency per model, link and node count; node_speedup divides the compute time
    (a node that many times faster than the 2-core VM)."""
    print("| model (batch per node) | gradient MB/step | compute s/step | link | "
          + " | ".join(f"{n} nodes" for n in NODES) + " |")
    print("|---|---:|---:|---|" + "---:|" * len(NODES))
    for model, batch, t_c in TABLE_MODELS:
        g, t_c = 4 * (num_parameters(model) + 2), t_c / node_speedup
        for link, bw, lat in LINKS:
            eff = [t_c / (t_c + allreduce_seconds(g, n, bw, lat)) for n in NODES]
            print(f"| {model} ({batch}) | {g / 1e6:.1f} | {t_c:.3f} | {link} | "
                  + " | ".join(f"{100 * e:.1f}%" for e in eff) + " |")


# --------------------------------------------------------------------------- worker


def worker(a: argparse.Namespace) -> None:
    """One configuration: fit() for warmup + steps steps; rank 0 prints a JSON line."""
    import resnet_cpp as rc

    ranks = rc.distributed.world_size
    rng = np.random.default_rng(0)
    n = a.batch * (a.warmup + a.steps)
    data = rc.data.Dataset(rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8),
                           rng.integers(0, 10, n), [str(i) for i in range(10)], "synthetic")
    stamps, in_allreduce = [], []

    def on_step(t) -> None:
        stamps.append(time.perf_counter())
        in_allreduce.append(t.dp.allreduce_seconds if t.dp is not None else 0.0)

    rc.train.fit(rc.models.create(a.model, num_classes=10, seed=0), data, epochs=1,
                 batch_size=a.batch // ranks, lr=0.05, schedule="constant", seed=0,
                 threads=a.threads, augment=False, sync_bn=a.sync_bn, on_step=on_step,
                 progress=False, verbose=False)
    w = a.warmup
    step_s = (stamps[-1] - stamps[w - 1]) / (len(stamps) - w)
    row = {"ranks": ranks, "threads": a.threads, "global_batch": a.batch,
           "steps_per_s": 1 / step_s, "images_per_s": a.batch / step_s,
           "allreduce_ms_in_step": 1e3 * (in_allreduce[-1] - in_allreduce[w - 1]) /
           (len(stamps) - w), "sync_bn": a.sync_bn}
    if ranks > 1:  # the transport alone, each rank entering together
        group = rc.distributed.init()
        model_params = rc.models.create(a.model, num_classes=10).num_parameters()
        for name, size in (("allreduce_ms_alone", model_params + 2), ("latency_ms", 2)):
            buf, times = np.zeros(size, np.float32), []
            for _ in range(50):
                group.barrier()
                t0 = time.perf_counter()
                group.allreduce(buf)
                times.append(time.perf_counter() - t0)
            row[name] = 1e3 * statistics.median(times)
        row["gradient_bytes"] = 4 * (model_params + 2)
    if rc.distributed.is_main():
        print(json.dumps(row), flush=True)


# --------------------------------------------------------------------------- driver


def run_config(a: argparse.Namespace, ranks: int, threads: int, batch: int) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--model", a.model,
           "--batch", str(batch), "--threads", str(threads), "--steps", str(a.steps),
           "--warmup", str(a.warmup)] + (["--sync-bn"] if a.sync_bn else [])
    if ranks > 1:
        cmd = ["mpirun", "--allow-run-as-root", "--oversubscribe", "-n", str(ranks)] + cmd
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMPI_", "PMI_"))}
    env["OMP_NUM_THREADS"] = str(threads)
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stdout}{r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resnet20")
    p.add_argument("--batch", type=int, default=128, help="global batch (even)")
    p.add_argument("--steps", type=int, default=20, help="timed steps")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--sync-bn", action="store_true")
    p.add_argument("--json", action="store_true", help="one JSON line per configuration")
    p.add_argument("--table", action="store_true", help="print the cost model's table")
    p.add_argument("--node-speedup", type=float, default=1.0,
                   help="--table: nodes this many times faster than the 2-core VM")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        return worker(a)
    if a.table:
        return print_table(a.node_speedup)
    if a.batch % 2 or a.warmup < 1:
        raise SystemExit("--batch must be even and --warmup >= 1")
    rows = [("1 rank x 1 thread", run_config(a, 1, 1, a.batch)),
            ("1 rank x 1 thread, half batch", run_config(a, 1, 1, a.batch // 2)),
            ("2 ranks x 1 thread", run_config(a, 2, 1, a.batch)),
            ("1 rank x 2 threads", run_config(a, 1, 2, a.batch))]
    if a.json:
        for name, row in rows:
            print(json.dumps({"config": name, "model": a.model, **row,
                              "machine": machine_line(row["threads"])}))
        return
    base = rows[0][1]["steps_per_s"]
    print(machine_line("1 or 2"))  # threads per process, by configuration (below)
    print(f"{a.model}, global batch {a.batch}{', synchronized BN' if a.sync_bn else ''}, "
          f"{a.steps} steps after {a.warmup} warm-up")
    print("| configuration | steps/s | images/s | vs 1x1 | allreduce ms/step (in step) |")
    print("|---|---:|---:|---:|---:|")
    for name, row in rows:
        ar = f"{row['allreduce_ms_in_step']:.2f}" if row["ranks"] > 1 else "-"
        print(f"| {name} | {row['steps_per_s']:.2f} | {row['images_per_s']:.0f} | "
              f"{row['steps_per_s'] / base:.2f}x | {ar} |")
    two, half = rows[2][1], rows[1][1]
    # Calibrate the formula on this machine's transport (shared memory): latency from a
    # 2-float allreduce, bandwidth from the gradient's.
    lat = two["latency_ms"] / 1e3 / 2
    bw = two["gradient_bytes"] / max(two["allreduce_ms_alone"] / 1e3 - 2 * lat, 1e-9)
    predicted = 1 / half["steps_per_s"] + allreduce_seconds(two["gradient_bytes"], 2, bw, lat)
    print(f"\nAllreduce alone: {two['allreduce_ms_alone']:.3f} ms for "
          f"{two['gradient_bytes'] / 1e6:.2f} MB, {two['latency_ms']:.3f} ms for 8 bytes "
          f"(a = {1e6 * lat:.1f} us, bandwidth {bw / 1e9:.2f} GB/s)")
    print(f"2-rank step: predicted {1e3 * predicted:.1f} ms (half-batch step "
          f"{1e3 / half['steps_per_s']:.1f} ms + allreduce), measured "
          f"{1e3 / two['steps_per_s']:.1f} ms; the allreduce is "
          f"{100 * two['allreduce_ms_in_step'] * two['steps_per_s'] / 1e3:.1f}% of the step, "
          "the most that overlapping it with the backward could save")


if __name__ == "__main__":
    main()
