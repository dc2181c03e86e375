"""Model-level float32 error: our model and PyTorch float32 against a float64 oracle.

One ``measure`` call builds a zoo model, gives it random BN affine parameters (gamma in
[0.5, 1.5], beta in [-0.2, 0.2]) and non-trivial running statistics, runs forward and
backward on a random batch, and returns, for every model-level output (logits, dx, the
updated running statistics in train mode) and every parameter gradient, the relative error

    rel(a, ref) = ||a - ref||_2 / ||ref||_2        (per tensor, in float64; see _scale)

of our float32 result and of PyTorch's float32 result against PyTorch in float64, all three
on the same weights, input and output gradient (dlogits comes from the float64 logits'
cross-entropy and is rounded to float32 once, so the loss itself adds no error).

Without torch the oracle is ``reference_outputs``: a float64 NumPy composition of
``tests/reference.py`` (test_models' RefNet and ref_* functions), and only our error is known.
Used by tests/test_precision.py and benchmarks/precision.py.
"""
from __future__ import annotations

import numpy as np

import resnet_cpp as rc
from ref_models import RefNet, ref_cifar_v1, ref_imagenet, ref_preact_v2

# label: (create() arguments, input shape, the float64 NumPy composition of tests/ref_models)
MODELS = {
    "resnet20-A": (dict(name="resnet20", shortcut="A"), (8, 3, 32, 32),
                   lambda net, x: ref_cifar_v1(net, x, 3, "A")),
    "resnet20-B": (dict(name="resnet20", shortcut="B"), (8, 3, 32, 32),
                   lambda net, x: ref_cifar_v1(net, x, 3, "B")),
    "resnet56-v2-keras": (dict(name="resnet56", version=2, width="keras"), (8, 3, 32, 32),
                          lambda net, x: ref_preact_v2(net, x, 6, "keras")),
    # 48x48 keeps layer4 at 2x2, so its BN reduces over 32 values, not 8 (at 32x32 it would
    # be 1x1: BN over the batch alone); float64 PyTorch makes larger inputs slow for CI.
    "resnet18": (dict(name="resnet18"), (8, 3, 48, 48),
                 lambda net, x: ref_imagenet(net, x, (2, 2, 2, 2), False)),
}


def rel(a, ref, scale: float | None = None) -> float:
    """||a - ref|| / scale, scale = ||ref|| by default."""
    a = np.asarray(a, np.float64)
    ref = np.asarray(ref, np.float64)
    scale = np.linalg.norm(ref) if scale is None else scale
    return float(np.linalg.norm(a - ref) / max(scale, 1e-300))


def build(label: str, seed: int):
    """The model with its random affine parameters, and a batch: (model, x, labels)."""
    kw, shape, _ = MODELS[label]
    kw = dict(kw)
    model = rc.models.create(kw.pop("name"), num_classes=10, seed=seed, **kw)
    rng = np.random.default_rng(1000 + seed)
    randomize(model, rng)
    x = rng.standard_normal(shape).astype(np.float32)
    labels = rng.integers(0, 10, shape[0])
    return model, x, labels


def randomize(model, rng) -> None:
    """Random BN affine parameters, biases and running statistics."""
    for name, p in model.named_parameters():
        if p.data.ndim != 1:
            continue
        is_bn = name.rsplit(".", 1)[0] in _bn_names(model)
        if is_bn and name.endswith("weight"):
            p.data[...] = rng.uniform(0.5, 1.5, p.shape)
        elif is_bn:
            p.data[...] = rng.uniform(-0.2, 0.2, p.shape)
        else:
            p.data[...] = rng.uniform(-0.1, 0.1, p.shape)
    for name, b in model.named_buffers():
        if name.endswith("running_mean"):
            b[...] = rng.uniform(-0.1, 0.1, b.shape)
        elif name.endswith("running_var"):
            b[...] = rng.uniform(0.5, 2.0, b.shape)


def _bn_names(model) -> set:
    return {n for n, m in model.named_modules() if isinstance(m, rc.nn.BatchNorm2d)}


def _dlogits(logits64: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """d(mean cross-entropy)/dlogits in float64."""
    z = logits64 - logits64.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(len(labels)), labels] -= 1.0
    return p / len(labels)


# ---------------------------------------------------------------- branch decisions
#
# A ReLU input within float32 rounding of 0, or two near-equal values in a max-pool
# window, can fall either way in ANY float32 implementation (PyTorch's included); the
# gradient then moves by a whole upstream value (measured on ResNet-20 B over 20 seeds:
# PyTorch float32 flipped 3 ReLU masks against float64, direct convolution 6, F(2x2) 5,
# F(4x4) 25). Gradients are only comparable given the same branches, so each float32 run
# records its decisions (ReLU masks, max-pool argmaxes) and its float64 oracle replays
# them. How often branches flip is governed by the forward error, which is checked too.


def _record_ours(model, decisions: dict) -> None:
    """Wrap our fused BN-ReLU and max-pool layers to record their decisions (NCHW)."""
    for name, m in model.named_modules():
        if isinstance(m, rc.nn.BatchNorm2d) and m.relu:
            def bn_forward(*a, _f=m.forward, _n=name, **k):
                y = _f(*a, **k)
                decisions[_n] = np.transpose(y > 0, (0, 3, 1, 2))
                return y
            m.forward = bn_forward
        elif isinstance(m, rc.nn.MaxPool2d):
            def pool_forward(x, _m=m, _f=m.forward, _n=name):
                y = _f(x)
                decisions[_n] = np.transpose(_m._saved().argmax, (0, 3, 1, 2)).astype(np.int64)
                return y
            m.forward = pool_forward


def _instrument_twin(twin, decisions: dict, replay: bool) -> None:
    """Make a torch twin record its decisions into, or replay them from, ``decisions``."""
    import torch
    import torch.nn.functional as tf

    for name, m in twin.named_modules():
        if isinstance(m, torch.nn.BatchNorm2d) and getattr(m, "fused_relu", False):
            def bn_forward(x, residual=None, _m=m, _n=name):
                z = torch.nn.BatchNorm2d.forward(_m, x)
                if residual is not None:
                    z = z + residual
                if replay:
                    return z * torch.from_numpy(decisions[_n]).to(z.dtype)
                decisions[_n] = (z > 0).numpy()
                return torch.relu(z)
            m.forward = bn_forward
        elif isinstance(m, torch.nn.MaxPool2d):
            def pool_forward(x, _m=m, _n=name):
                if replay:
                    idx = torch.from_numpy(decisions[_n])
                    n, c = idx.shape[:2]
                    return x.reshape(n, c, -1).gather(2, idx.reshape(n, c, -1)).reshape(idx.shape)
                y, idx = tf.max_pool2d(x, _m.kernel_size, _m.stride, _m.padding,
                                       return_indices=True)
                decisions[_n] = idx.numpy()
                return y
            m.forward = pool_forward


def _flips(decisions: dict, reference: dict) -> int:
    return sum(int(np.count_nonzero(decisions[k] != reference[k])) for k in reference)


def ours(model, x, dy32, train: bool, decisions: dict) -> dict:
    """Our float32 outputs: logits, dx, parameter grads, and running stats in train mode."""
    _record_ours(model, decisions)
    model.train(train)
    out = {"logits": model(x).astype(np.float64)}
    model.zero_grad()
    out["dx"] = model.backward(dy32).astype(np.float64)
    for name, p in model.named_parameters():
        out[name + ".grad"] = p.host(p.grad).astype(np.float64)
    if train:
        for name, b in model.named_buffers():
            if name.endswith(("running_mean", "running_var")):
                out[name] = b.astype(np.float64)
    return out


def torch_outputs(twin, x, dy, train: bool) -> dict:
    """The same outputs from a PyTorch twin (float32 or float64)."""
    import torch

    dtype = next(twin.parameters()).dtype
    xt = torch.tensor(x, dtype=dtype, requires_grad=True)
    twin.train(train)
    logits = twin(xt)
    logits.backward(torch.tensor(dy, dtype=dtype))
    out = {"logits": logits.detach().double().numpy(), "dx": xt.grad.double().numpy()}
    for name, p in twin.named_parameters():
        out[name + ".grad"] = p.grad.double().numpy()
    if train:
        for name, b in twin.named_buffers():
            if name.endswith(("running_mean", "running_var")):
                out[name] = b.double().numpy()
    return out


def measure(label: str, seed: int, train: bool, algorithms=("auto",)) -> dict:
    """Errors against float64 PyTorch given the same branch decisions.

    Returns {"torch": run, algorithm: run, ...}, each run {"errors": {tensor: rel},
    "flips": branch decisions that differ from the unconstrained float64 run's}. Every run
    starts from a fresh copy of the model (train mode updates the running statistics).
    """
    import copy

    import torch

    from resnet_cpp.models import torch_twin

    model, x, labels = build(label, seed)

    def oracle(decisions=None):
        twin = torch_twin(model, torch.float64)
        if decisions is not None:
            _instrument_twin(twin, decisions, replay=True)
        return twin

    free = {}
    twin = oracle()
    _instrument_twin(twin, free, replay=False)
    with torch.no_grad():
        logits64 = twin.train(train)(torch.tensor(x, dtype=torch.float64)).numpy()
    dy32 = _dlogits(logits64, labels).astype(np.float32)
    dy64 = dy32.astype(np.float64)

    def judged(out: dict, decisions: dict) -> dict:
        ref = torch_outputs(oracle(decisions), x, dy64, train)
        return {"errors": _errors(out, ref), "flips": _flips(decisions, free)}

    decisions: dict = {}
    twin32 = torch_twin(model, torch.float32)
    _instrument_twin(twin32, decisions, replay=False)
    result = {"torch": judged(torch_outputs(twin32, x, dy32, train), decisions)}
    before = rc.conv_algorithm()
    try:
        for algo in algorithms:
            rc.set_conv_algorithm(algo)
            decisions = {}
            result[algo] = judged(ours(copy.deepcopy(model), x, dy32, train, decisions),
                                  decisions)
    finally:
        rc.set_conv_algorithm(before)
    return result


def measure_numpy(label: str, seed: int, train: bool) -> dict:
    """Our errors (the current algorithm setting) against the float64 NumPy composition,
    given the same branch decisions: {"errors": {tensor: rel}, "flips": int}."""
    model, x, labels = build(label, seed)
    compose = MODELS[label][2]
    free = RefNet(model.state_dict(), train)
    logits64, _ = compose(free, x)
    dy32 = _dlogits(logits64, labels).astype(np.float32)
    decisions: dict = {}
    out = ours(model, x, dy32, train, decisions)
    net = RefNet(free.p, train, decisions)
    logits, back = compose(net, x)
    ref = {"logits": logits, "dx": back(dy32.astype(np.float64))}
    for name, _ in model.named_parameters():
        ref[name + ".grad"] = np.asarray(net.grads[name])
    for name, (rm, rv) in net.running.items():
        ref[name + ".running_mean"], ref[name + ".running_var"] = rm, rv
    return {"errors": _errors(out, ref), "flips": _flips(decisions, free.decided)}


def _errors(out: dict, ref: dict) -> dict:
    assert out.keys() == ref.keys(), sorted(set(out) ^ set(ref))
    return {k: rel(out[k], ref[k], _scale(k, ref)) for k in ref}


def _scale(key: str, ref: dict) -> float:
    """The norm an error is measured against: the tensor's own, except for the gradient of
    a conv bias that feeds a train-mode BN. That gradient is exactly 0 in exact arithmetic
    (BN subtracts the batch mean) and pure rounding noise in any float32 implementation, so
    it is measured against its layer's weight gradient instead."""
    norm = float(np.linalg.norm(ref[key]))
    if key.endswith(".bias.grad"):
        weight = key[:-len(".bias.grad")] + ".weight.grad"
        if weight in ref and ref[weight].ndim == 4:
            wnorm = float(np.linalg.norm(ref[weight]))
            if norm < 1e-9 * wnorm:
                return wnorm
    return norm
