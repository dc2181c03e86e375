"""Transfer learning on Fashion-MNIST: pretrain on five classes, fine-tune on the other five
with 100 images per class, against training from scratch on those same 500 images.

    apt-get install -y dataset-fashion-mnist          # full data in /usr/share/datasets
    python3 benchmarks/transfer_fmnist.py --out runs/transfer --threads 2
    python3 benchmarks/transfer_fmnist.py --out /tmp/t --smoke   # a few steps, checks the commands

Task A: T-shirt/top, Trouser, Pullover, Dress, Coat (labels 0-4): all 30,000 training
images, its 5,000 test images. Task B: Sandal, Shirt, Sneaker, Bag, Ankle boot (labels
5-9): 100 training images per class (seed 0), evaluated on all 5,000 of its test images.
The script writes both tasks as ``.npz`` datasets, then runs ``resnet-cpp train`` (each
command is printed before it runs) and prints the table of B test accuracies:

1. pretrain ResNet-20 on A (the README's Fashion-MNIST recipe: 15 epochs, cosine, wd 5e-4);
2. fine-tune it on B: ``--init-from`` A's checkpoint, ``--new-head``, every layer trained
   at lr 0.01 (the pretrained normalization is kept);
3. the linear probe: the same with ``--freeze-trunk --freeze-bn`` at lr 0.1;
4. from scratch on B: same epochs and batch size, the recipe's lr 0.1.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys

import numpy as np
from machine import machine_line

A_CLASSES, B_CLASSES = range(0, 5), range(5, 10)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="directory for the datasets and runs")
    p.add_argument("--data-dir", default=None, help="Fashion-MNIST IDX files (default: "
                   "/usr/share/datasets/fashion-mnist)")
    p.add_argument("--per-class", type=int, default=100, help="task B training images per class")
    p.add_argument("--pretrain-epochs", type=int, default=15)
    p.add_argument("--finetune-epochs", type=int, default=40)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--smoke", action="store_true",
                   help="tiny data and 2 steps per run: checks that every command works")
    return p.parse_args(argv)


def task(ds, classes, rng, per_class=None, cap=None):
    """(images, labels 0..4, names) of the given classes; per_class: a random sample of each."""
    keep = []
    for c in classes:
        idx = np.flatnonzero(ds.labels == c)
        if per_class is not None:
            idx = np.sort(rng.choice(idx, per_class, replace=False))
        keep.append(idx[:cap])
    idx = np.concatenate(keep)
    return ds.raw[idx], ds.labels[idx] - classes[0], [ds.classes[c] for c in classes]


def write_task(path, train, test):
    (xtr, ytr, names), (xte, yte, _) = train, test
    np.savez(path, x_train=xtr, y_train=ytr, x_test=xte, y_test=yte, classes=np.array(names))
    return path


def run(cmd, smoke, threads):
    """Run `resnet-cpp train ...` (as python -m resnet_cpp) and return its final record."""
    cmd = cmd + (["--threads", str(threads)] if threads else [])
    if smoke:
        cmd += ["--max-steps", "2", "--no-progress"]
    print("$ resnet-cpp " + " ".join(shlex.quote(c) for c in cmd), flush=True)
    subprocess.run([sys.executable, "-m", "resnet_cpp", *cmd], check=True)
    out = cmd[cmd.index("--out") + 1]
    with open(os.path.join(out, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f][-1]


def main(argv=None):
    from resnet_cpp.data import load_dataset

    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    train, test = load_dataset("fashion-mnist", args.data_dir)
    rng = np.random.default_rng(0)
    cap = 64 if args.smoke else None  # smoke: 64 images per class at most
    a = write_task(os.path.join(args.out, "task_a.npz"), task(train, A_CLASSES, rng, cap=cap),
                   task(test, A_CLASSES, rng, cap=cap))
    per_class = min(args.per_class, cap or args.per_class)
    b_test = task(test, B_CLASSES, rng, cap=cap)
    b = write_task(os.path.join(args.out, "task_b.npz"),
                   task(train, B_CLASSES, rng, per_class=per_class), b_test)
    runs = os.path.join(args.out, "runs")
    ft = ["--epochs", str(args.finetune_epochs), "--batch-size", "64", "--schedule", "cosine",
          "--seed", "0"]
    pre = run(["train", "--dataset", "npz", "--data-dir", a, "--model", "resnet20",
               "--epochs", str(args.pretrain_epochs), "--schedule", "cosine",
               "--weight-decay", "5e-4", "--warmup-epochs", "1", "--seed", "0",
               "--out", os.path.join(runs, "pretrain_a")], args.smoke, args.threads)
    init = os.path.join(runs, "pretrain_a", "last.npz")
    rows = [
        ("fine-tune (all layers, lr 0.01)", ["--init-from", init, "--new-head", "--lr", "0.01"],
         "finetune_b"),
        ("linear probe (frozen trunk and BN)", ["--init-from", init, "--new-head",
                                                "--freeze-trunk", "--freeze-bn"], "probe_b"),
        ("from scratch", ["--model", "resnet20"], "scratch_b"),
    ]
    results = {"pretrain on A (test on A)": pre["test_acc"]}
    for name, extra, out in rows:
        rec = run(["train", "--dataset", "npz", "--data-dir", b, *extra, *ft,
                   "--out", os.path.join(runs, out)], args.smoke, args.threads)
        results[name] = rec["test_acc"]
    machine = machine_line(args.threads)  # the runs' threads: --threads, else the default
    print(f"\n{machine}\ntask B: {per_class} training images per class, "
          f"{len(b_test[1])} test images\n")
    print("| run | test accuracy |\n|---|---:|")
    for name, acc in results.items():
        print(f"| {name} | {100 * acc:.2f}% |")
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"machine": machine, "test_accuracy": results}, f, indent=1)


if __name__ == "__main__":
    main()
