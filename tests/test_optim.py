"""Optimizers against tests/reference.py over several steps; schedules; recipes."""
from __future__ import annotations

import math

import numpy as np
import pytest
from reference import adam_step, sgd_step
from tolerance import FORWARD, assert_close

from resnet_cpp import optim


class P:
    """A Parameter-like object: .data/.grad float32 C-contiguous, .decay flag."""

    def __init__(self, data, decay=True):
        self.data = np.ascontiguousarray(data, dtype=np.float32)
        self.grad = np.zeros_like(self.data)
        self.decay = decay


def make_params(rng):
    # A conv-like weight (decayed) and a BN-like vector (no decay), odd sizes for tails.
    return [P(rng.standard_normal((5, 3, 3, 3)), True), P(rng.standard_normal(37), False)]


def grads(rng, params, steps):
    return [[rng.standard_normal(p.data.shape).astype(np.float32) for p in params]
            for _ in range(steps)]


STEPS = 5


@pytest.mark.parametrize("momentum,wd,nesterov,decay_bn_bias", [
    (0.0, 0.0, False, True), (0.9, 0.0, False, True), (0.9, 1e-2, False, True),
    (0.9, 1e-2, True, True), (0.9, 1e-2, True, False), (0.0, 5e-2, False, False)])
def test_sgd_matches_reference(rng, momentum, wd, nesterov, decay_bn_bias):
    params = make_params(rng)
    ref = [p.data.astype(np.float64) for p in params]
    bufs = [np.zeros_like(r) for r in ref]
    opt = optim.SGD(params, lr=0.05, momentum=momentum, weight_decay=wd, nesterov=nesterov,
                    decay_bn_bias=decay_bn_bias)
    for step, gs in enumerate(grads(rng, params, STEPS)):
        lr = 0.05 if step < 3 else 0.01  # an lr change mid-run (as a schedule does)
        opt.lr = lr
        for p, g in zip(params, gs):
            p.grad[...] = g
        opt.step()
        for i, (p, g) in enumerate(zip(params, gs)):
            pwd = wd if (decay_bn_bias or p.decay) else 0.0
            ref[i], bufs[i] = sgd_step(ref[i], g, bufs[i], lr, momentum, pwd, nesterov)
    assert opt.step_count == STEPS
    for i, p in enumerate(params):
        assert_close(p.data, ref[i], **FORWARD, name=f"param {i}")


@pytest.mark.parametrize("cls,wd,decay_bn_bias", [
    (optim.Adam, 0.0, True), (optim.Adam, 1e-2, True), (optim.Adam, 1e-2, False),
    (optim.AdamW, 1e-1, True), (optim.AdamW, 1e-1, False)])
def test_adam_matches_reference(rng, cls, wd, decay_bn_bias):
    params = make_params(rng)
    ref = [p.data.astype(np.float64) for p in params]
    ms = [np.zeros_like(r) for r in ref]
    vs = [np.zeros_like(r) for r in ref]
    opt = cls(params, lr=1e-2, betas=(0.9, 0.99), eps=1e-8, weight_decay=wd,
              decay_bn_bias=decay_bn_bias)
    for step, gs in enumerate(grads(rng, params, STEPS), start=1):
        for p, g in zip(params, gs):
            p.grad[...] = g
        opt.step()
        for i, (p, g) in enumerate(zip(params, gs)):
            pwd = wd if (decay_bn_bias or p.decay) else 0.0
            ref[i], ms[i], vs[i] = adam_step(ref[i], g, ms[i], vs[i], step, 1e-2, 0.9, 0.99,
                                             1e-8, pwd, cls is optim.AdamW)
    for i, p in enumerate(params):
        assert_close(p.data, ref[i], **FORWARD, name=f"param {i}")
        assert_close(opt.m[i], ms[i], **FORWARD, name=f"m {i}")
        assert_close(opt.v[i], vs[i], **FORWARD, name=f"v {i}")


def _grouped(params, grouped: bool):
    """params as they are, or as two groups, the first with its own lr and weight decay."""
    if not grouped:
        return params
    return [{"params": params[:1], "lr": 1e-4, "weight_decay": 0.3}, {"params": params[1:]}]


@pytest.mark.parametrize("grouped", [False, True])
@pytest.mark.parametrize("name,kwargs", [
    ("sgd", dict(lr=0.1, momentum=0.9, weight_decay=1e-4, nesterov=True)),
    ("adam", dict(lr=1e-3, weight_decay=1e-4)), ("adamw", dict(lr=1e-3))])
def test_state_dict_resume_is_bit_exact(rng, name, kwargs, grouped):
    params_a = make_params(rng)
    params_b = [P(p.data.copy(), p.decay) for p in params_a]
    gs = grads(rng, params_a, 5)
    opt_a = optim.create_optimizer(name, _grouped(params_a, grouped), **kwargs)
    for g in gs[:3]:
        for p, gi in zip(params_a, g):
            p.grad[...] = gi
        opt_a.step()
    state = opt_a.state_dict()
    live = list(opt_a._arrays().values())
    for a in state["arrays"].values():  # copies, not the live buffers
        assert all(a is not b for b in live)
    # A second optimizer picks up from the saved state on copies of the parameters.
    for pa, pb in zip(params_a, params_b):
        pb.data[...] = pa.data
    opt_b = optim.create_optimizer(name, _grouped(params_b, grouped), **kwargs)
    opt_a.lr = opt_b.lr = 0.5 * kwargs["lr"]  # a schedule's change, then resumed
    state["lr"] = opt_a.lr
    opt_b.load_state_dict(state)
    assert [g["lr"] for g in opt_b.param_groups] == [g["lr"] for g in opt_a.param_groups]
    assert opt_b.step_count == 3 and opt_b.lr == opt_a.lr
    for g in gs[3:]:
        for pa, pb, gi in zip(params_a, params_b, g):
            pa.grad[...] = gi
            pb.grad[...] = gi
        opt_a.step()
        opt_b.step()
    for pa, pb in zip(params_a, params_b):
        np.testing.assert_array_equal(pa.data, pb.data)


def test_state_of_conv_weights_is_checkpointed_in_the_host_layout(rng):
    """A conv weight and its optimizer state are stored (R, S, C, K); state_dict() gives
    them in PyTorch's (K, C, R, S), and loading it back restores the stored order."""
    from resnet_cpp import nn

    conv = nn.Conv2d(3, 4, 3, rng=0)
    p = conv.weight
    opt = optim.Adam([p], lr=1e-2)
    p.grad[...] = rng.standard_normal(p.grad.shape)
    opt.step()
    state = opt.state_dict()
    assert state["arrays"]["0.m"].shape == p.shape == (4, 3, 3, 3)
    np.testing.assert_array_equal(state["arrays"]["0.m"], p.host(opt.m[0]))
    again = optim.Adam([nn.Conv2d(3, 4, 3, rng=1).weight], lr=1e-2)
    again.load_state_dict(state)
    np.testing.assert_array_equal(again.m[0], opt.m[0])
    np.testing.assert_array_equal(again.v[0], opt.v[0])


def test_load_state_dict_rejects_mismatch(rng):
    opt = optim.SGD(make_params(rng), lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="adam"):
        opt.load_state_dict(optim.Adam(make_params(rng)).state_dict())
    state = opt.state_dict()
    state["arrays"]["0.momentum"] = np.zeros(3, np.float32)
    with pytest.raises(ValueError, match="shape"):
        opt.load_state_dict(state)
    del state["arrays"]["0.momentum"]
    with pytest.raises(KeyError, match="missing"):
        opt.load_state_dict(state)


def test_zero_grad_and_bad_arguments(rng):
    params = make_params(rng)
    for p in params:
        p.grad[...] = 1.0
    opt = optim.SGD(params, lr=0.1)
    opt.zero_grad()
    assert all(not p.grad.any() for p in params)
    with pytest.raises(ValueError, match=r"^momentum\b"):
        optim.SGD(params, lr=0.1, momentum=1.5)
    with pytest.raises(ValueError, match=r"^nesterov\b"):
        optim.SGD(params, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match=r"^lr\b"):
        optim.SGD(params, lr=-1)
    with pytest.raises(ValueError, match="empty"):
        optim.SGD([], lr=0.1)
    with pytest.raises(ValueError, match=r"^betas\b"):
        optim.Adam(params, betas=(1.0, 0.9))
    bad = P(np.zeros(3))
    bad.data = np.zeros(3)  # float64
    with pytest.raises(TypeError, match="params\\[0\\].data"):
        optim.SGD([bad], lr=0.1)
    with pytest.raises(ValueError, match="valid: sgd, adam, adamw"):
        optim.create_optimizer("rmsprop", params, lr=0.1)


@pytest.mark.parametrize("name,kwargs", [
    ("sgd", dict(momentum=0.9, nesterov=True)), ("adam", {}), ("adamw", {})])
def test_param_groups_equal_one_optimizer_per_group(rng, name, kwargs):
    """Two groups (own lr and weight decay) step exactly as two separate optimizers, and a
    schedule's lr change reaches each group in proportion to its lr at construction."""
    params = make_params(rng)
    twins = [P(p.data.copy(), p.decay) for p in params]
    grouped = optim.create_optimizer(name, [{"params": [params[0]], "lr": 0.01},
                                            {"params": [params[1]], "weight_decay": 0.2}],
                                     lr=0.1, weight_decay=0.05, **kwargs)
    alone = [optim.create_optimizer(name, [twins[0]], lr=0.01, weight_decay=0.05, **kwargs),
             optim.create_optimizer(name, [twins[1]], lr=0.1, weight_decay=0.2, **kwargs)]
    assert grouped.params == params and [g["lr"] for g in grouped.param_groups] == [0.01, 0.1]
    for step, gs in enumerate(grads(rng, params, STEPS)):
        if step == 3:  # a schedule halves the rate: each group keeps its ratio
            grouped.lr = 0.05
            alone[0].lr, alone[1].lr = 0.005, 0.05
        for p, t, g in zip(params, twins, gs):
            p.grad[...] = g
            t.grad[...] = g
        grouped.step()
        for o in alone:
            o.step()
    assert [g["lr"] for g in grouped.param_groups] == pytest.approx([0.005, 0.05])
    for p, t in zip(params, twins):
        np.testing.assert_array_equal(p.data, t.data)


def test_param_groups_state_dict_and_errors(rng):
    params = make_params(rng)
    groups = [{"params": [params[0]], "lr": 0.01}, {"params": [params[1]]}]
    opt = optim.SGD(groups, lr=0.1, momentum=0.9)
    state = opt.state_dict()
    assert [g["size"] for g in state["param_groups"]] == [1, 1]
    again = optim.SGD([{"params": [params[0]], "lr": 0.01}, {"params": [params[1]]}], lr=0.1,
                      momentum=0.9)
    again.lr = 0.5
    again.load_state_dict(state)
    assert again.lr == 0.1 and again.param_groups[0]["lr"] == pytest.approx(0.01)
    with pytest.raises(ValueError, match="param groups"):  # same sizes, other lr ratio
        optim.SGD([{"params": [params[0]], "lr": 0.02}, {"params": [params[1]]}], lr=0.1,
                  momentum=0.9).load_state_dict(state)
    with pytest.raises(ValueError, match="param groups"):  # one group of both
        optim.SGD(params, lr=0.1, momentum=0.9).load_state_dict(state)
    with pytest.raises(ValueError, match=r"^param_groups\[0\]: unknown key\(s\) \['momentum'\]"):
        optim.SGD([{"params": params, "momentum": 0.5}], lr=0.1)
    with pytest.raises(ValueError, match=r"^params\[1\] appears in more than one"):
        optim.SGD([{"params": [params[0]]}, {"params": [params[0]]}], lr=0.1)
    with pytest.raises(ValueError, match=r"^param_groups\[1\] has an empty"):
        optim.SGD([{"params": params}, {"params": []}], lr=0.1)
    with pytest.raises(ValueError, match=r"^param_groups\[0\] sets lr=0.1"):
        optim.SGD([{"params": params, "lr": 0.1}], lr=0.0)
    with pytest.raises(ValueError, match=r"^param_groups\[0\]: lr and weight_decay"):
        optim.SGD([{"params": params, "weight_decay": -1}], lr=0.1)
    with pytest.raises(TypeError, match=r"^params must be all parameters or all group"):
        optim.SGD([params[0], {"params": [params[1]]}], lr=0.1)


# --------------------------------------------------------------------------- schedules


def opt_at(lr=1.0):
    return optim.SGD([P(np.zeros(2))], lr=lr)


def lrs(schedule, n):
    """The lr used by each of the first n steps (as the trainer sees it)."""
    out = []
    for _ in range(n):
        out.append(schedule.optimizer.lr)
        schedule.step()
    return out


def test_multistep_and_piecewise():
    s = optim.MultiStep(opt_at(0.1), milestones=[2, 4], gamma=0.1)
    np.testing.assert_allclose(lrs(s, 6), [0.1, 0.1, 0.01, 0.01, 0.001, 0.001])
    s = optim.create_schedule("multistep", opt_at(0.1), 100)  # 50% and 75%
    assert s.lr_at(49) == pytest.approx(0.1) and s.lr_at(50) == pytest.approx(0.01)
    assert s.lr_at(74) == pytest.approx(0.01) and s.lr_at(75) == pytest.approx(0.001)
    k = optim.create_schedule("keras", opt_at(1e-3), 200)
    for step, lr in [(0, 1e-3), (79, 1e-3), (80, 1e-4), (120, 1e-5), (160, 1e-6),
                     (180, 0.5e-6), (199, 0.5e-6)]:
        assert k.lr_at(step) == pytest.approx(lr), step
    with pytest.raises(ValueError, match="increasing"):
        optim.Piecewise(opt_at(), [5, 2], [0.1, 0.01])


def test_cosine_and_warmup():
    s = optim.Cosine(opt_at(1.0), total_steps=10, min_lr=0.0)
    assert s.lr_at(0) == pytest.approx(1.0)
    assert s.lr_at(5) == pytest.approx(0.5)
    assert s.lr_at(10) == pytest.approx(0.0, abs=1e-12)
    assert s.lr_at(20) == pytest.approx(0.0, abs=1e-12)  # clamps past the end
    w = optim.create_schedule("cosine", opt_at(1.0), 10, warmup_steps=4)
    assert isinstance(w, optim.LinearWarmup)
    expected = [0.25 * s.lr_at(0), 0.5 * s.lr_at(1), 0.75 * s.lr_at(2), s.lr_at(3), s.lr_at(4)]
    np.testing.assert_allclose(lrs(w, 5), expected)


def test_onecycle_matches_pytorch_formula():
    s = optim.OneCycle(opt_at(1.0), total_steps=100, pct_start=0.3)
    assert s.lr_at(0) == pytest.approx(1.0 / 25)
    assert s.lr_at(29) == pytest.approx(1.0)  # peak at pct_start*total - 1, as PyTorch
    assert s.lr_at(99) == pytest.approx(1.0 / 25 / 1e4)
    assert s.lr_at(64) == pytest.approx(
        1.0 / 25 / 1e4 + (1.0 - 1.0 / 25 / 1e4) / 2 * (math.cos(math.pi * (64 - 29) / 70) + 1))
    assert max(s.lr_at(i) for i in range(100)) == pytest.approx(1.0)


def test_schedule_state_dict_and_names():
    a = optim.create_schedule("onecycle", opt_at(0.5), 50, warmup_steps=3)
    lrs(a, 17)
    b = optim.create_schedule("onecycle", opt_at(0.5), 50, warmup_steps=3)
    b.load_state_dict(a.state_dict())
    assert b.last_step == 17 and b.optimizer.lr == a.optimizer.lr
    assert lrs(a, 5) == lrs(b, 5)
    c = optim.create_schedule("constant", opt_at(0.3), 10)
    assert lrs(c, 3) == [0.3] * 3
    with pytest.raises(ValueError, match="not 'constant'"):
        c.load_state_dict(a.state_dict())
    with pytest.raises(ValueError, match="valid: constant, multistep, cosine, onecycle"):
        optim.create_schedule("linear", opt_at(), 10)


# --------------------------------------------------------------------------- recipes


def test_recipes():
    he = optim.get_recipe("he2015")
    assert (he.optimizer, he.lr, he.batch_size) == ("sgd", 0.1, 128)
    opt, sched = he.build([P(np.zeros(3))], total_steps=400)
    assert isinstance(opt, optim.SGD) and isinstance(sched, optim.MultiStep)
    assert (opt.momentum, opt.weight_decay, opt.lr) == (0.9, 1e-4, 0.1)
    assert sched.boundaries == [200, 300]
    ke = optim.get_recipe("KERAS")
    opt, sched = ke.build([P(np.zeros(3))], total_steps=100, lr=2e-3)
    assert isinstance(opt, optim.Adam) and not isinstance(opt, optim.AdamW)
    assert opt.lr == 2e-3 and sched.boundaries == [40, 60, 80, 90]
    assert ke.batch_size == 32 and not opt.decay_bn_bias
    opt, sched = he.build([P(np.zeros(3))], total_steps=10, optimizer="adamw",
                          schedule="cosine", warmup_steps=2)
    assert isinstance(opt, optim.AdamW) and sched.base_lr == 1e-3 and opt.weight_decay == 1e-2
    assert opt.lr == pytest.approx(0.5e-3)  # warmup step 0 of 2
    assert isinstance(sched, optim.LinearWarmup) and isinstance(sched.inner, optim.Cosine)
    with pytest.raises(ValueError, match="valid: he2015, keras"):
        optim.get_recipe("imagenet")
