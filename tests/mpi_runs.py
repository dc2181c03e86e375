"""Training runs that tests/test_distributed.py launches, under ``mpirun -n N`` or as one
plain process (the reference), with the same tiny data and model:

    python3 tests/mpi_runs.py suite OUT
        the runs the equivalence and resume tests compare, in one launch: OUT/sgd and
        OUT/adam (5 steps, global batch 128, synchronized BN), OUT/resume (the first of
        2 epochs, then stopped)
    python3 tests/mpi_runs.py fail OUT --how kill|raise --at STEP
        rank 1 dies (SIGKILL) or raises at global step STEP of a long run
    python3 tests/mpi_runs.py audit CLI ARGS
        `resnet-cpp CLI ARGS` in-process; each rank records every file it opens for
        writing, renames or deletes, and prints them as "rank R writes: [...]"

Only rank 0 writes OUT (checkpoints, metrics); a single process is rank 0.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys

import numpy as np

import resnet_cpp as rc

CLASSES = [str(i) for i in range(10)]


def tiny_data(n: int = 512, seed: int = 1) -> rc.data.Dataset:
    """n random 3x8x8 uint8 images; the label is a function of the image, so it can be
    learned (the mean of channel 0, bucketed)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, 3, 8, 8), dtype=np.uint8)
    y = np.clip((x[:, 0].mean(axis=(1, 2)) - 96) / 64 * 10, 0, 9).astype(np.int64)
    return rc.data.Dataset(x, y, CLASSES, "tiny")


def tiny_model():
    return rc.models.CifarResNet(8, num_classes=10, seed=0)


def run(out: str, *, optimizer: str = "sgd", batch: int, steps: int | None, epochs: int,
        resume: bool = False, sync_bn: bool = False, threads: int = 1, augment: bool = False,
        distributed: bool | None = None):
    """fit() of the tiny model on the tiny data, with a global batch of `batch`
    (per rank: batch / ranks) and a cosine schedule."""
    ranks = rc.distributed.world_size if distributed is not False else 1
    lr = 0.05 if optimizer == "sgd" else 1e-3
    return rc.train.fit(tiny_model(), tiny_data(), tiny_data(100, seed=2), epochs=epochs,
                        batch_size=batch // ranks, optimizer=optimizer, lr=lr,
                        schedule="cosine", seed=0, threads=threads, out_dir=out,
                        resume=resume, max_steps=steps, sync_bn=sync_bn, augment=augment,
                        distributed=distributed, progress=False, verbose=False)


# The runs of `suite`: (name, settings). 512 images at a global batch of 128: 4 steps/epoch.
SUITE = (("sgd", dict(optimizer="sgd", steps=5, epochs=2)),
         ("adam", dict(optimizer="adam", steps=5, epochs=2)),
         ("resume", dict(optimizer="sgd", steps=4, epochs=2)))


def cmd_suite(a: argparse.Namespace) -> None:
    for name, kw in SUITE:
        run(os.path.join(a.out, name), batch=128, sync_bn=True, **kw)


def cmd_fail(a: argparse.Namespace) -> None:
    def on_step(trainer) -> None:
        if trainer.dp.rank == 1 and trainer.global_step == a.at:
            if a.how == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            raise ValueError("bad data in this rank's shard (injected)")

    rc.train.fit(tiny_model(), tiny_data(), epochs=1000, batch_size=32, seed=0, threads=1,
                 out_dir=a.out, on_step=on_step, progress=False)


def cmd_audit(a: argparse.Namespace) -> None:
    from resnet_cpp import cli, distributed

    writes = []

    def hook(event: str, args: tuple) -> None:
        if event == "open" and args[1] is not None and \
                (not isinstance(args[1], str) or set(args[1]) & set("wax+")):
            writes.append(str(args[0]))
        elif event in ("os.rename", "os.replace", "os.remove", "os.mkdir"):
            writes.append(f"{event} {args[0]}")

    sys.addaudithook(hook)
    code = cli.main(a.cli)
    print(f"rank {distributed.rank} writes: {writes}", flush=True)
    sys.exit(code)


def main() -> None:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("suite")
    t.add_argument("out")
    f = sub.add_parser("fail")
    f.add_argument("out")
    f.add_argument("--how", choices=("kill", "raise"), required=True)
    f.add_argument("--at", type=int, required=True)
    u = sub.add_parser("audit")
    u.add_argument("cli", nargs=argparse.REMAINDER)
    a = p.parse_args()
    {"suite": cmd_suite, "fail": cmd_fail, "audit": cmd_audit}[a.cmd](a)


if __name__ == "__main__":
    main()
