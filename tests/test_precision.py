"""The precision contract of the default convolution algorithms (README, "Precision").

With the defaults (``set_conv_algorithm("auto")``), every model-level output (logits, dx,
running statistics) and every parameter gradient stays within 10x of PyTorch float32's own
error against float64 (floor 1e-6 relative), on the same model, weights and input: ResNet-20
v1 A and B, ResNet-56 v2 (Keras widths) and ResNet-18, train and eval mode, random BN affine
parameters, 5 seeds. Errors are compared given the same ReLU / max-pool branch decisions
(tests/model_precision.py explains why); the forward outputs bound how often branches flip.

Without torch, the same models run against a float64 NumPy composition of tests/reference.py
with an absolute bound; with torch, that check still runs on ResNet-20 (A and B).
"""
from __future__ import annotations

import importlib.util

import pytest

import model_precision as mp

SEEDS = range(5)
HAVE_TORCH = importlib.util.find_spec("torch") is not None


def _cases(labels, seeds=SEEDS):
    return [pytest.param(label, train, seed, id=f"{label}-{'train' if train else 'eval'}-{seed}")
            for label in labels for train in (True, False) for seed in seeds]


def _report(bad: dict) -> str:
    return "; ".join(f"{k}: {v}" for k, v in sorted(bad.items(), key=lambda kv: kv[0])[:8])


@pytest.mark.skipif(not HAVE_TORCH, reason="the PyTorch float32/float64 comparison needs torch "
                    "(test_defaults_against_numpy_float64 covers every model without it)")
@pytest.mark.parametrize("label,train,seed", _cases(mp.MODELS))
def test_defaults_within_10x_pytorch_fp32(label, train, seed):
    r = mp.measure(label, seed, train, ("auto",))
    theirs, ours = r["torch"]["errors"], r["auto"]["errors"]
    bad = {k: f"{ours[k]:.2e} vs PyTorch {theirs[k]:.2e}"
           for k in ours if ours[k] > 10 * max(theirs[k], 1e-6)}
    assert not bad, f"{len(bad)} tensors over 10x PyTorch fp32's error: {_report(bad)}"


# 10x PyTorch float32's worst error on the same model and mode over the 5 seeds (the larger
# of two runs, with torch on 1 and on 2 threads), measured by `python benchmarks/precision.py
# --models --seeds 5` (benchmarks/NOTES.md, "Precision"), rounded up.
NUMPY_BOUND = {
    ("resnet20-A", True): 2e-5, ("resnet20-A", False): 2e-5,
    ("resnet20-B", True): 3e-5, ("resnet20-B", False): 2e-5,
    ("resnet56-v2-keras", True): 6e-5, ("resnet56-v2-keras", False): 3e-5,
    ("resnet18", True): 5e-5, ("resnet18", False): 2e-5,
}
# With torch, two seeds of the ResNet-20s keep the NumPy oracle in use (the float64 NumPy
# composition of the two bigger models takes ~10 s per case); without it every model and
# seed runs here.
NUMPY_CASES = _cases(["resnet20-A", "resnet20-B"], range(2)) if HAVE_TORCH else _cases(mp.MODELS)


@pytest.mark.parametrize("label,train,seed", NUMPY_CASES)
def test_defaults_against_numpy_float64(label, train, seed, default_conv_algorithm):
    r = mp.measure_numpy(label, seed, train)
    bound = NUMPY_BOUND[label, train]
    bad = {k: f"{e:.2e}" for k, e in r["errors"].items() if e > bound}
    assert not bad, f"{len(bad)} tensors over {bound:.0e}: {_report(bad)}"


def test_error_measure_can_fail(default_conv_algorithm):
    """The harness sees a wrong gradient: a 1e-4 relative change of one BN bias gradient."""
    model, x, labels = mp.build("resnet20-A", 0)
    orig = mp.ours

    def perturbed(*args, **kw):
        out = orig(*args, **kw)
        out["layer2.0.bn1.bias.grad"] *= 1 + 1e-4
        return out

    mp.ours = perturbed
    try:
        r = mp.measure_numpy("resnet20-A", 0, True)
    finally:
        mp.ours = orig
    assert r["errors"]["layer2.0.bn1.bias.grad"] > NUMPY_BOUND["resnet20-A", True]
