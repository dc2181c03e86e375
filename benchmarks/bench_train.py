"""One training (or inference) step of a named ResNet: resnet_cpp beside PyTorch.

    python benchmarks/bench_train.py --model resnet20 --batch 128 --threads 2 --vs-torch
    python benchmarks/bench_train.py --model resnet56 --version 2 --width keras --vs-torch
    python benchmarks/bench_train.py --model resnet18 --batch 16 --image 224 --vs-torch
    python benchmarks/bench_train.py --model resnet20 --mode infer --vs-torch
    python benchmarks/bench_train.py --model resnet20 --profile   # ms per _core function
    python benchmarks/bench_train.py --model resnet20 --precision both --vs-torch   # fp32 and bf16
    python benchmarks/bench_train.py --device cuda --model resnet56 --vs-torch   # on a GPU

A step is forward, loss, backward and an SGD update (momentum 0.9, weight decay 1e-4) on a
fixed random batch, after warm-up. With --vs-torch the same architecture is built in PyTorch
and run in the same process, alternating with ours repeat by repeat, in NCHW and in
channels_last; the ratio is against PyTorch's faster layout. --precision bf16 runs our bf16
convolutions (resnet_cpp.set_precision) beside PyTorch's bf16 autocast in channels_last, and
--precision both runs fp32 and bf16 side by side (bf16 rows are compared with PyTorch's bf16,
and "bf16 vs our fp32" is printed). Peak memory (RSS) of each side
is measured in a child process that imports only that side. % of peak uses the FP32 FMA peak
measured by a probe on this machine (resnet_cpp._core.fma_peak_gflops), not a datasheet.

--device cuda: our step is the training loop's (resnet_cpp.train.device_step.CudaTrainStep: the
batch copied from pinned memory on a copy stream, the step replayed as a CUDA graph unless
--no-cuda-graph, the loss read back once), in FP32 and with TF32 GEMMs; PyTorch runs eager
with cuDNN (benchmark mode) in FP32 and TF32, NCHW and channels_last, its batch also copied
from pinned memory and its loss read each step. Ratios compare like with like: our FP32
against PyTorch's best FP32 side, our TF32 against its best TF32 side. No RSS or % of peak.
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

CIFAR_MODELS = {"resnet20", "resnet32", "resnet44", "resnet56", "resnet110"}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resnet20")
    p.add_argument("--version", type=int, default=1, choices=[1, 2])
    p.add_argument("--width", default="keras", choices=["paper", "keras"], help="v2 preset")
    p.add_argument("--shortcut", default="A", choices=["A", "B"], help="v1 CIFAR shortcut")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--image", type=int, default=None, help="input size (default 32, or 224 for ImageNet models)")
    p.add_argument("--classes", type=int, default=None)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--no-cuda-graph", action="store_true", help="--device cuda: eager steps")
    p.add_argument("--mode", default="train", choices=["train", "infer"])
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=7, help="timed repeats (median and spread)")
    p.add_argument("--steps", type=int, default=2, help="steps per repeat")
    p.add_argument("--vs-torch", action="store_true")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "both"],
                   help="our convolutions' precision (bf16: beside PyTorch bf16 autocast)")
    p.add_argument("--no-rss", action="store_true", help="skip the child-process RSS measurement")
    p.add_argument("--json", action="store_true", help="print one JSON line per row")
    p.add_argument("--profile", action="store_true",
                   help="only our step: wall ms per _core function per step, over --repeats steps")
    p.add_argument("--_rss-child", dest="rss_child", default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    imagenet = a.model not in CIFAR_MODELS and a.version == 1 and a.model in {
        "resnet18", "resnet34", "resnet50", "resnet101", "resnet152"}
    a.imagenet = imagenet
    a.image = a.image or (224 if imagenet else 32)
    a.classes = a.classes or (1000 if imagenet else 10)
    if a.device == "cuda":
        a.no_rss = True
    return a


# ------------------------------------------------------------------ resnet_cpp side

def build_ours(a):
    import resnet_cpp as rc
    from resnet_cpp import models

    kw = dict(num_classes=a.classes, in_channels=3)
    if not a.imagenet:
        kw.update(shortcut=a.shortcut) if a.version == 1 else kw.update(width=a.width)
    model = models.create(a.model, version=a.version, **kw)
    return rc, model


def ours_step_fn(a, rc, model, x, y, precision="fp32"):
    """One step in the given conv precision (set on every call: the setting is process-wide
    and the sides alternate)."""
    from resnet_cpp import nn, optim

    if a.mode == "infer":
        model.eval()

        def infer():
            rc._core.set_precision(precision)
            model(x)
        return infer
    model.train()
    crit = nn.CrossEntropyLoss()
    opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)

    def step():
        rc._core.set_precision(precision)
        logits = model(x)
        crit(logits, y)
        opt.zero_grad()
        model.backward(crit.backward(), need_dx=False)
        opt.step()
    return step


def ours_cuda_step_fn(a, model, x, y, tf32):
    """Our step on the GPU, as fit() runs it; TF32 is switched on around each call."""
    from resnet_cpp import _cuda, cuda, nn, optim
    from resnet_cpp.train.device_step import CudaTrainStep

    model.to("cuda")

    def with_tf32(fn):
        def call():
            _cuda.set_tf32(tf32)
            try:
                return fn()
            finally:
                _cuda.set_tf32(False)
        return call

    if a.mode == "infer":
        model.eval()
        xd = cuda.to_device(x)
        return with_tf32(lambda: (model(xd), _cuda.synchronize()))
    model.train()
    opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    step = CudaTrainStep(model, nn.CrossEntropyLoss(check_labels=False), opt,
                         cuda_graph=not a.no_cuda_graph).__enter__()  # open for the process
    xp, yp = _cuda.pinned_empty(x.shape), _cuda.pinned_empty(y.shape, "int64")
    xp[...], yp[...] = x, y
    return with_tf32(lambda: step.step(xp, yp))


def count_macs(model, x) -> int:
    """Multiply-adds of one forward, from the shapes each Conv2d/Linear sees."""
    from resnet_cpp.nn import layers

    total = [0]
    conv_fwd, lin_fwd = layers.Conv2d.forward, layers.Linear.forward

    def conv(self, inp):
        out = conv_fwd(self, inp)
        K, C, R, S = self.weight.shape
        total[0] += out.size // K * K * C * R * S
        return out

    def lin(self, inp):
        out = lin_fwd(self, inp)
        total[0] += out.size * self.weight.data.shape[1]
        return out

    layers.Conv2d.forward, layers.Linear.forward = conv, lin
    try:
        model.eval()
        model(x)
    finally:
        layers.Conv2d.forward, layers.Linear.forward = conv_fwd, lin_fwd
    return total[0] // x.shape[0]


# ------------------------------------------------------------------ PyTorch side

def build_torch(a):
    import torch
    from torch import nn

    class ShortcutA(nn.Module):
        """Parameter-free: subsample by 2 and zero-pad the new channels (He 2015, option A)."""

        def __init__(self, cin, cout):
            super().__init__()
            self.pad = cout - cin

        def forward(self, x):
            x = x[:, :, ::2, ::2]
            return nn.functional.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))

    class Basic(nn.Module):
        def __init__(self, cin, cout, stride, shortcut):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.short = nn.Identity()
            if stride != 1 or cin != cout:
                self.short = ShortcutA(cin, cout) if shortcut == "A" else nn.Sequential(
                    nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            h = torch.relu(self.bn1(self.conv1(x)))
            return torch.relu(self.bn2(self.conv2(h)) + self.short(x))

    class PreActBottleneck(nn.Module):
        """Keras cifar10_resnet v2 unit: [BN-ReLU]-1x1-BN-ReLU-3x3-BN-ReLU-1x1, biased convs."""

        def __init__(self, cin, mid, cout, stride, first_of_net, project):
            super().__init__()
            self.pre = nn.Identity() if first_of_net else nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU())
            self.body = nn.Sequential(
                nn.Conv2d(cin, mid, 1, stride), nn.BatchNorm2d(mid), nn.ReLU(),
                nn.Conv2d(mid, mid, 3, 1, 1), nn.BatchNorm2d(mid), nn.ReLU(),
                nn.Conv2d(mid, cout, 1))
            self.short = nn.Conv2d(cin, cout, 1, stride) if project else nn.Identity()

        def forward(self, x):
            return self.body(self.pre(x)) + self.short(x)

    if a.imagenet:
        return _torch_imagenet(a, torch, nn)
    depth = int(a.model.removeprefix("resnet"))
    if a.version == 1:
        n = (depth - 2) // 6
        layers = [nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU()]
        cin = 16
        for stage, cout in enumerate([16, 32, 64]):
            for i in range(n):
                stride = 2 if stage > 0 and i == 0 else 1
                layers.append(Basic(cin, cout, stride, a.shortcut))
                cin = cout
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, a.classes)]
        return nn.Sequential(*layers)
    if a.width != "keras":
        raise SystemExit("--vs-torch builds the v2 'keras' preset only")
    n = (depth - 2) // 9
    layers = [nn.Conv2d(3, 16, 3, 1, 1), nn.BatchNorm2d(16), nn.ReLU()]
    cin, mid = 16, 16
    for stage in range(3):
        cout = mid * 4 if stage == 0 else mid * 2
        for i in range(n):
            stride = 2 if stage > 0 and i == 0 else 1
            layers.append(PreActBottleneck(cin, mid, cout, stride, stage == 0 and i == 0, i == 0))
            cin = cout
        mid = cout
    layers += [nn.BatchNorm2d(cin), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
               nn.Linear(cin, a.classes)]
    return nn.Sequential(*layers)


def _torch_imagenet(a, torch, nn):
    class Block(nn.Module):
        def __init__(self, cin, mid, stride, bottleneck):
            super().__init__()
            cout = mid * 4 if bottleneck else mid
            if bottleneck:
                self.body = nn.Sequential(
                    nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(),
                    nn.Conv2d(mid, mid, 3, stride, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(),
                    nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout))
            else:
                self.body = nn.Sequential(
                    nn.Conv2d(cin, mid, 3, stride, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(),
                    nn.Conv2d(mid, mid, 3, 1, 1, bias=False), nn.BatchNorm2d(mid))
            self.short = nn.Identity()
            if stride != 1 or cin != cout:
                self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            self.cout = cout

        def forward(self, x):
            return torch.relu(self.body(x) + self.short(x))

    cfg = {"resnet18": ([2, 2, 2, 2], False), "resnet34": ([3, 4, 6, 3], False),
           "resnet50": ([3, 4, 6, 3], True), "resnet101": ([3, 4, 23, 3], True),
           "resnet152": ([3, 8, 36, 3], True)}[a.model]
    layers = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1)]
    cin = 64
    for stage, blocks in enumerate(cfg[0]):
        mid = 64 * 2 ** stage
        for i in range(blocks):
            b = Block(cin, mid, 2 if stage > 0 and i == 0 else 1, cfg[1])
            layers.append(b)
            cin = b.cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, a.classes)]
    return nn.Sequential(*layers)


def torch_cuda_step_fn(a, torch, model, x, y, channels_last, tf32):
    """PyTorch eager on the GPU (cuDNN, benchmark mode): the batch copied from pinned memory
    and the loss read back each step, as our side does."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    torch.backends.cudnn.benchmark = True
    model = model.cuda().to(memory_format=fmt)
    xp, yp = x.pin_memory(), y.pin_memory()

    def precision():
        torch.backends.cudnn.allow_tf32 = tf32
        torch.backends.cuda.matmul.allow_tf32 = tf32

    if a.mode == "infer":
        model.eval()
        xd = xp.cuda().contiguous(memory_format=fmt)

        def infer():
            precision()
            with torch.no_grad():
                model(xd)
            torch.cuda.synchronize()
        return infer
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    crit = torch.nn.CrossEntropyLoss()

    def step():
        precision()
        xd = xp.cuda(non_blocking=True).contiguous(memory_format=fmt)
        opt.zero_grad(set_to_none=False)
        loss = crit(model(xd), yp.cuda(non_blocking=True))
        loss.backward()
        opt.step()
        loss.item()
    return step


def torch_step_fn(a, torch, model, x, y, channels_last, bf16=False):
    """fp32, or bf16 autocast (bf16 convolutions, fp32 master weights), as a user runs it."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    x = x.contiguous(memory_format=fmt)
    autocast = lambda: torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)  # noqa: E731
    if a.mode == "infer":
        model.eval()

        def infer():
            with torch.no_grad(), autocast():
                model(x)
        return infer
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    crit = torch.nn.CrossEntropyLoss()

    def step():
        opt.zero_grad(set_to_none=False)
        with autocast():
            loss = crit(model(x), y)
        loss.backward()
        opt.step()
    return step


# ------------------------------------------------------------------ timing

def time_steps(fn, steps):
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - t0) / steps


def rss_child(a, side):
    """Peak RSS (MiB) of a fresh process that builds and runs one side only."""
    args = [sys.executable, __file__, "--_rss-child", side, "--model", a.model, "--version", str(a.version),
            "--width", a.width, "--shortcut", a.shortcut, "--batch", str(a.batch), "--image", str(a.image),
            "--classes", str(a.classes), "--threads", str(a.threads), "--mode", a.mode,
            "--precision", a.precision]
    out = subprocess.run(args, capture_output=True, text=True)
    if out.returncode != 0:
        return float("nan")
    return float(out.stdout.strip().splitlines()[-1])


def run_rss_child(a):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((a.batch, 3, a.image, a.image), dtype=np.float32)
    y = rng.integers(0, a.classes, a.batch)
    if a.rss_child.startswith("resnet_cpp"):
        rc, model = build_ours(a)
        rc.set_num_threads(a.threads)
        fn = ours_step_fn(a, rc, model, x, y, "bf16" if a.rss_child.endswith("bf16") else "fp32")
    else:
        import torch
        torch.set_num_threads(a.threads)
        model = build_torch(a)
        fn = torch_step_fn(a, torch, model, torch.from_numpy(x), torch.from_numpy(y),
                           a.rss_child != "torch_nchw", a.rss_child == "torch_bf16_cl")
    for _ in range(3):
        fn()
    # VmHWM, not getrusage's ru_maxrss: Linux keeps ru_maxrss across execve, so a child
    # would report its parent's peak if that was higher.
    with open("/proc/self/status") as f:
        hwm_kib = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    print(hwm_kib / 1024)


def profile_ours(a, x, y):
    """Wall time of each _core function per step (every binding wrapped in a timer)."""
    import collections

    rc, model = build_ours(a)
    rc.set_num_threads(a.threads)
    rc.set_precision("bf16" if a.precision == "bf16" else "fp32")
    spent = collections.defaultdict(float)

    def timed(name, f):
        def call(*args, **kw):
            t0 = time.perf_counter()
            try:
                return f(*args, **kw)
            finally:
                spent[name] += time.perf_counter() - t0
        return call

    core = rc._core
    originals = {n: getattr(core, n) for n in dir(core)
                 if not n.startswith("_") and callable(getattr(core, n))}
    for n, f in originals.items():
        setattr(core, n, timed(n, f))
    try:
        step = ours_step_fn(a, rc, model, x, y, rc.precision())
        for _ in range(a.warmup):
            step()
        spent.clear()
        total = time_steps(step, a.repeats) * a.repeats
    finally:
        for n, f in originals.items():
            setattr(core, n, f)
    per_step = 1e3 / a.repeats
    print(machine_line(a.threads))
    print(f"{a.model} {a.mode} batch {a.batch} threads {a.threads} {rc.precision()}: "
          f"{total * per_step:.1f} ms per step (mean of {a.repeats})")
    inside = 0.0
    for n, t in sorted(spent.items(), key=lambda kv: -kv[1]):
        inside += t
        print(f"{n:<32}{t * per_step:>8.2f} ms{100 * t / total:>6.1f}%")
    rest = total - inside
    print(f"{'outside _core (Python, NumPy)':<32}{rest * per_step:>8.2f} ms{100 * rest / total:>6.1f}%")
    return 0


def cuda_sides(a, model, x, y):
    """Our FP32 and TF32 steps and, with --vs-torch, PyTorch's in both precisions and layouts."""
    _, model_tf32 = build_ours(a)
    model_tf32.load_state_dict(model.state_dict())
    sides = {"resnet_cpp_fp32": ours_cuda_step_fn(a, model, x, y, False),
             "resnet_cpp_tf32": ours_cuda_step_fn(a, model_tf32, x, y, True)}
    if a.vs_torch:
        import torch
        if not torch.cuda.is_available():
            raise SystemExit("--vs-torch --device cuda: this torch has no CUDA "
                             "(pip install a CUDA build of torch)")
        torch.manual_seed(0)
        tx, ty = torch.from_numpy(x), torch.from_numpy(y)
        for prec in ("fp32", "tf32"):
            for layout, cl in (("nchw", False), ("cl", True)):
                sides[f"torch_{layout}_{prec}"] = torch_cuda_step_fn(
                    a, torch, build_torch(a), tx, ty, cl, prec == "tf32")
    return sides


def main(argv=None):
    a = parse_args(argv)
    if a.rss_child:
        return run_rss_child(a)
    os.environ.setdefault("OMP_NUM_THREADS", str(a.threads))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((a.batch, 3, a.image, a.image), dtype=np.float32)
    y = rng.integers(0, a.classes, a.batch)
    if a.profile:
        return profile_ours(a, x, y)

    rc, model = build_ours(a)
    rc.set_num_threads(a.threads)
    macs = count_macs(model, x[:2])
    flop_per_img = 2 * macs * (3 if a.mode == "train" else 1)
    fp32, bf16 = a.precision in ("fp32", "both"), a.precision in ("bf16", "both")
    if a.device == "cuda":
        sides = cuda_sides(a, model, x, y)
        peak = float("nan")
    else:
        peak = rc._core.fma_peak_gflops(300_000_000 // max(1, a.threads))
        if bf16:
            rc.set_precision("bf16")  # warns where it would run fp32
            rc.set_precision("fp32")
        sides = {}
        if fp32:
            sides["resnet_cpp"] = ours_step_fn(a, rc, model, x, y)
        if bf16:
            sides["resnet_cpp_bf16"] = ours_step_fn(a, rc, build_ours(a)[1], x, y, "bf16")
    if a.vs_torch and a.device == "cpu":
        import torch
        torch.set_num_threads(a.threads)
        torch.manual_seed(0)
        tx, ty = torch.from_numpy(x), torch.from_numpy(y)
        if fp32:
            sides["torch_nchw"] = torch_step_fn(a, torch, build_torch(a), tx, ty, False)
            sides["torch_cl"] = torch_step_fn(a, torch, build_torch(a), tx, ty, True)
        if bf16:
            sides["torch_bf16_cl"] = torch_step_fn(a, torch, build_torch(a), tx, ty, True, True)

    for fn in sides.values():
        for _ in range(a.warmup):
            fn()
    times = {k: [] for k in sides}
    for _ in range(a.repeats):  # interleaved: each repeat runs every side once
        for k, fn in sides.items():
            times[k].append(time_steps(fn, a.steps))

    rc.set_precision("fp32")
    rss = {k: rss_child(a, k) for k in sides} if not a.no_rss else {}

    title = (f"{a.model} v{a.version} {a.mode} batch {a.batch} {a.image}x{a.image} "
             f"threads {a.threads} | {flop_per_img / 1e6:.0f} MFLOP/img | "
             f"measured FMA peak {peak:.0f} GFLOP/s ({rc.active_isa()})")
    if a.device == "cuda":
        from resnet_cpp import cuda
        title = (f"{a.model} v{a.version} {a.mode} batch {a.batch} {a.image}x{a.image} | "
                 f"{flop_per_img / 1e6:.0f} MFLOP/img | {cuda.device_summary()} | "
                 f"CUDA graph {'off' if a.no_cuda_graph else 'on'}")
    rows = []
    for k, ts in times.items():
        med = statistics.median(ts)
        rows.append(dict(side=k, ms=med * 1e3, spread_ms=(max(ts) - min(ts)) * 1e3,
                         img_s=a.batch / med, gflops=flop_per_img * a.batch / med / 1e9,
                         pct_peak=100 * flop_per_img * a.batch / med / 1e9 / peak,
                         rss_mib=rss.get(k, float("nan"))))
    if a.vs_torch and a.device == "cuda":
        for r in rows:  # like with like: FP32 sides against FP32, TF32 against TF32
            prec = r["side"].rsplit("_", 1)[-1]
            torch_rows = [t for t in rows if t["side"].startswith("torch") and t["side"].endswith(prec)]
            if torch_rows:
                r["ratio_vs_torch_best"] = min(t["ms"] for t in torch_rows) / r["ms"]
    elif a.vs_torch:  # each of ours against PyTorch's best side of the same precision
        for prec in (["fp32"] if fp32 else []) + (["bf16"] if bf16 else []):
            same = [r for r in rows if ("bf16" in r["side"]) == (prec == "bf16")]
            best = min((r for r in same if r["side"].startswith("torch")), key=lambda r: r["ms"])
            for r in same:
                r["ratio_vs_torch_best"] = best["ms"] / r["ms"]
    machine = machine_line(a.threads)
    if a.json:
        for r in rows:
            print(json.dumps(dict(r, model=a.model, version=a.version, mode=a.mode, batch=a.batch,
                                  threads=a.threads, peak_gflops=peak, machine=machine)))
        return
    print(machine)
    print(title)
    print(f"{'side':<18}{'median ms':>11}{'spread':>9}{'img/s':>9}{'GFLOP/s':>9}{'%peak':>7}"
          f"{'RSS MiB':>9}{'ours/best':>11}")
    for r in rows:
        ratio = f"{r['ratio_vs_torch_best']:.2f}x" if "ratio_vs_torch_best" in r else ""
        print(f"{r['side']:<18}{r['ms']:>11.2f}{r['spread_ms']:>9.2f}{r['img_s']:>9.0f}{r['gflops']:>9.1f}"
              f"{r['pct_peak']:>7.1f}{r['rss_mib']:>9.0f}{ratio:>11}")
    if fp32 and bf16:
        ms = {r["side"]: r["ms"] for r in rows}
        print(f"bf16 vs our fp32: {ms['resnet_cpp'] / ms['resnet_cpp_bf16']:.2f}x")


if __name__ == "__main__":
    main()
