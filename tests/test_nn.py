"""resnet_cpp.nn: module system, layers and loss against the NumPy reference.

Kernel numerics are covered by the kernel tests; here we check that each layer routes
its arguments, layouts, buffers and gradients correctly, plus the module machinery
(registration, state_dict, train/eval, zero_grad).
"""
from __future__ import annotations

import numpy as np
import pytest

import reference as R
import resnet_cpp.nn as nn
from tolerance import BACKWARD, FORWARD, assert_close


def _nhwc(a):
    return np.ascontiguousarray(np.asarray(a).transpose(0, 2, 3, 1))


def _nchw(a):
    return np.ascontiguousarray(np.asarray(a).transpose(0, 3, 1, 2))


def _f32(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


# ---------------------------------------------------------------- Parameter / Module

def test_parameter_is_float32_contiguous_with_zero_grad():
    p = nn.Parameter(np.arange(6, dtype=np.float64).reshape(2, 3)[:, ::-1], decay=False)
    assert p.data.dtype == np.float32 and p.data.flags.c_contiguous
    assert p.grad.shape == (2, 3) and not p.grad.any() and p.grad.dtype == np.float32
    assert p.decay is False and p.shape == (2, 3) and p.size == 6


def test_parameter_from_unpickled_array_works_with_kernels(rng):
    import pickle

    w = pickle.loads(pickle.dumps(_f32(rng, 2, 3)))  # carries a non-builtin dtype object
    lin = nn.Linear(3, 2)
    lin.weight = nn.Parameter(w)
    assert lin(_f32(rng, 4, 3)).shape == (4, 2)


def test_parameter_zeros():
    p = nn.Parameter.zeros((3, 2), decay=False)
    assert p.data.dtype == np.float32 and p.data.shape == (3, 2) and not p.data.any()
    assert p.grad is not p.data and not p.decay


def test_decay_flags():
    conv, lin, bn = nn.Conv2d(3, 4, 3), nn.Linear(4, 2), nn.BatchNorm2d(4)
    assert conv.weight.decay and lin.weight.decay
    assert not (conv.bias.decay or lin.bias.decay or bn.weight.decay or bn.bias.decay)


class _Two(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(3)
        self.seq = nn.Sequential(nn.ReLU(), nn.Conv2d(3, 2, 1))

    def forward(self, x):
        return self.seq(self.bn(self.conv(x)))

    def backward(self, dy):
        return self.conv.backward(self.bn.backward(self.seq.backward(dy)))


def test_registration_names_and_order():
    m = _Two()
    assert [n for n, _ in m.named_parameters()] == [
        "conv.weight", "bn.weight", "bn.bias", "seq.1.weight", "seq.1.bias"]
    assert [n for n, _ in m.named_buffers()] == [
        "bn.running_mean", "bn.running_var", "bn.num_batches_tracked"]
    assert list(m.state_dict()) == [
        "conv.weight", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var",
        "bn.num_batches_tracked", "seq.1.weight", "seq.1.bias"]
    assert m.parameters()[0] is m.conv.weight
    assert len(m.seq) == 2 and isinstance(m.seq[0], nn.ReLU)
    nbt = dict(m.named_buffers())["bn.num_batches_tracked"]
    assert nbt.dtype == np.int64 and nbt.shape == ()
    assert "seq" in repr(m) and "Conv2d(2, 3" in repr(m)


def test_subclass_must_call_super_init():
    class Bad(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(np.zeros(2))

    with pytest.raises(AttributeError, match="super"):
        Bad()


def test_reassigning_attribute_unregisters():
    m = _Two()
    m.seq = None
    assert all(not n.startswith("seq") for n, _ in m.named_parameters())


def test_state_dict_is_a_copy():
    m = _Two()
    sd = m.state_dict()
    sd["conv.weight"][...] = 7.0
    assert not np.any(m.conv.weight.data == 7.0)


def test_train_eval_recursive_and_zero_grad():
    m = _Two()
    assert all(x.training for x in m.modules())
    assert m.eval() is m and not any(x.training for x in m.modules())
    m.train()
    assert all(x.training for x in m.modules())
    for p in m.parameters():
        p.grad[...] = 1.0
    m.zero_grad()
    assert not any(p.grad.any() for p in m.parameters())


def test_module_backward_accumulates_grads_until_zero_grad(rng):
    """PyTorch semantics: each backward adds into .grad; zero_grad() starts afresh."""
    m = _Two()
    x1, x2 = _f32(rng, 2, 2, 5, 5), _f32(rng, 2, 2, 5, 5)
    dy = _f32(rng, *m(x1).shape)
    m.backward(dy)
    g1 = {n: p.grad.copy() for n, p in m.named_parameters()}
    assert all(np.any(g != 0) for g in g1.values())
    m.zero_grad()
    m(x2)
    m.backward(dy)
    g2 = {n: p.grad.copy() for n, p in m.named_parameters()}
    m(x1)
    m.backward(dy)  # no zero_grad in between: the second micro-batch adds to the first
    for n, p in m.named_parameters():
        assert_close(p.grad, g1[n] + g2[n], **BACKWARD, name=n)
    m.zero_grad()
    m(x1)
    m.backward(dy)  # after zero_grad: the gradient of this backward alone
    for n, p in m.named_parameters():
        np.testing.assert_array_equal(p.grad, g1[n], err_msg=n)


# ---------------------------------------------------------------- load_state_dict

def test_load_state_dict_round_trip_and_torch_style_values():
    a, b = _Two(), _Two()
    sd = a.state_dict()
    sd["bn.num_batches_tracked"] = np.array(5, dtype=np.int64)  # PyTorch stores int64 0-d
    sd["bn.running_var"] = sd["bn.running_var"].astype(np.float64) + 1.0
    res = b.load_state_dict(sd)
    assert res.missing_keys == [] and res.unexpected_keys == []
    for (k, va), (_, vb) in zip(sd.items(), b.state_dict().items()):
        np.testing.assert_array_equal(vb, np.asarray(va, vb.dtype), err_msg=k)
    assert int(b.bn.num_batches_tracked) == 5
    assert b.bn.running_var.dtype == np.float32


def test_load_state_dict_missing_num_batches_tracked_is_tolerated():
    a, b = _Two(), _Two()
    sd = a.state_dict()
    del sd["bn.num_batches_tracked"]
    b.load_state_dict(sd)
    np.testing.assert_array_equal(b.conv.weight.data, a.conv.weight.data)


def test_load_state_dict_errors_name_the_keys():
    m = _Two()
    before = m.state_dict()
    sd = m.state_dict()
    del sd["bn.running_mean"]
    with pytest.raises(KeyError, match=r"missing keys: \['bn.running_mean'\]"):
        m.load_state_dict(sd)
    sd = m.state_dict()
    sd["fc.weight"] = np.zeros((2, 2), np.float32)
    with pytest.raises(KeyError, match=r"unexpected keys: \['fc.weight'\]"):
        m.load_state_dict(sd)
    sd = m.state_dict()
    sd["conv.weight"] = np.zeros((3, 2, 1, 1), np.float32)
    sd["seq.1.weight"] = sd["seq.1.weight"] + 1.0
    with pytest.raises(ValueError, match=r"conv.weight: checkpoint shape \(3, 2, 1, 1\) != "
                                         r"model shape \(3, 2, 3, 3\)"):
        m.load_state_dict(sd)
    with pytest.raises(ValueError, match="conv.weight"):
        m.load_state_dict(sd, strict=False)  # shape errors raise even when not strict
    # a failed load modifies nothing
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)


def test_load_state_dict_non_strict_reports_keys():
    m = _Two()
    sd = m.state_dict()
    del sd["bn.bias"]
    sd["extra"] = np.zeros(1, np.float32)
    sd["conv.weight"] = np.full_like(sd["conv.weight"], 0.5)
    res = m.load_state_dict(sd, strict=False)
    assert res.missing_keys == ["bn.bias"] and res.unexpected_keys == ["extra"]
    assert np.all(m.conv.weight.data == 0.5)


# ---------------------------------------------------------------- layers vs reference

@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("stride,pad,bias", [(1, 1, True), (2, 1, False), (2, 0, True)])
def test_conv2d(rng, layout, stride, pad, bias):
    conv = nn.Conv2d(3, 5, 3, stride, pad, bias=bias, layout=layout, rng=0)
    x = _f32(rng, 2, 3, 7, 7)
    b = conv.bias.data if bias else None
    w = conv.weight.host()  # (K, C, R, S); stored (R, S, C, K)
    assert w.shape == conv.weight.shape == (5, 3, 3, 3) and conv.weight.data.shape == (3, 3, 3, 5)
    y_ref = R.conv2d_forward(x, w, b, stride, pad)
    to, back = (_nhwc, _nchw) if layout == "NHWC" else (np.asarray, np.asarray)
    y = conv(to(x))
    assert_close(back(y), y_ref, **FORWARD, name="y")
    dy = rng.standard_normal(y_ref.shape)
    dx_ref, dw_ref, db_ref = R.conv2d_backward(dy, x, w, stride, pad)
    dx = conv.backward(to(dy.astype(np.float32)))
    assert_close(back(dx), dx_ref, **BACKWARD, name="dx")
    assert_close(conv.weight.host(conv.weight.grad), dw_ref, **BACKWARD, name="dw")
    if bias:
        assert_close(conv.bias.grad, db_ref, **BACKWARD, name="db")
    conv(to(x))
    assert conv.backward(to(dy.astype(np.float32)), need_dx=False) is None


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("relu", [False, True])
def test_batchnorm2d_train_and_eval(rng, layout, relu):
    bn = nn.BatchNorm2d(3, relu=relu, layout=layout)
    bn.weight.data[...] = [1.5, -0.5, 0.75]
    bn.bias.data[...] = [0.1, 0.2, -0.3]
    to, back = (_nhwc, _nchw) if layout == "NHWC" else (np.asarray, np.asarray)
    x = (_f32(rng, 4, 3, 5, 5) * 2 + 1).astype(np.float32)
    g, b = bn.weight.data.copy(), bn.bias.data.copy()

    # training: batch statistics, running stats updated, counter incremented
    rm_ref, rv_ref = R.batch_norm_running_update(bn.running_mean, bn.running_var, x)
    y = bn(to(x))
    z_ref, mean, rstd = R.batch_norm_train_forward(x, g, b)
    y_ref = R.relu_forward(z_ref) if relu else z_ref
    assert_close(back(y), y_ref, **BACKWARD, name="y")
    assert_close(bn.running_mean, rm_ref, **BACKWARD, name="running_mean")
    assert_close(bn.running_var, rv_ref, **BACKWARD, name="running_var")
    assert int(bn.num_batches_tracked) == 1
    dy = rng.standard_normal(x.shape)
    dz = R.relu_backward(dy, y_ref) if relu else dy
    dx_ref, dg_ref, db_ref = R.batch_norm_backward(dz, x, g, mean, rstd)
    dx = bn.backward(to(dy.astype(np.float32)))
    assert_close(back(dx), dx_ref, **BACKWARD, name="dx")
    assert_close(bn.weight.grad, dg_ref, **BACKWARD, name="dgamma")
    assert_close(bn.bias.grad, db_ref, **BACKWARD, name="dbeta")

    # eval: running statistics, nothing updated
    bn.eval()
    rm, rv = bn.running_mean.copy(), bn.running_var.copy()
    y = bn(to(x))
    z_ref = R.batch_norm_eval_forward(x, g, b, rm, rv)
    y_ref = R.relu_forward(z_ref) if relu else z_ref
    assert_close(back(y), y_ref, **FORWARD, name="y eval")
    np.testing.assert_array_equal(bn.running_mean, rm)
    np.testing.assert_array_equal(bn.running_var, rv)
    assert int(bn.num_batches_tracked) == 1
    dz = R.relu_backward(dy, y_ref) if relu else dy
    dx_ref, dg_ref, db_ref = R.batch_norm_eval_backward(dz, x, g, rm, rv)
    bn.zero_grad()
    dx = bn.backward(to(dy.astype(np.float32)))
    assert_close(back(dx), dx_ref, **BACKWARD, name="dx eval")
    assert_close(bn.weight.grad, dg_ref, **BACKWARD, name="dgamma eval")


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("relu", [False, True])
def test_batchnorm2d_residual_and_overwrite_forward(rng, layout, relu):
    """forward(x, residual) = relu?(bn(x) + residual), backward gives (dx, dresidual);
    overwrite_forward returns the same values, written over the spent forward arrays."""
    to, back = (_nhwc, _nchw) if layout == "NHWC" else (np.asarray, np.asarray)
    x = _f32(rng, 4, 3, 5, 5)
    res = _f32(rng, 4, 3, 5, 5)
    dy = _f32(rng, 4, 3, 5, 5)
    results = []
    for overwrite in (False, True):
        bn = nn.BatchNorm2d(3, relu=relu, layout=layout)
        xin = to(x).copy()
        y = bn(xin, residual=to(res))
        z_ref, mean, rstd = R.batch_norm_train_forward(x, bn.weight.data, bn.bias.data)
        y_ref = R.add_relu_forward(z_ref, res) if relu else z_ref + res
        assert_close(back(y), y_ref, **BACKWARD, name="y")
        d_ref = R.relu_backward(dy, back(y)) if relu else dy
        dx_ref, dg_ref, db_ref = R.batch_norm_backward(d_ref, x, bn.weight.data, mean, rstd)
        y_kept = y.copy()
        dx, dres = bn.backward(to(dy), overwrite_forward=overwrite)
        assert_close(back(dx), dx_ref, **BACKWARD, name="dx")
        assert_close(back(dres), d_ref, **BACKWARD, name="dresidual")
        assert_close(bn.weight.grad, dg_ref, **BACKWARD, name="dgamma")
        if overwrite and layout == "NHWC":
            assert dx is xin and (dres is y or not relu)
        else:
            assert np.array_equal(y, y_kept)
        results.append((dx, dres, bn.weight.grad.copy(), bn.bias.grad.copy()))
    for a, b in zip(*results):
        assert np.array_equal(a, b)


def test_train_eval_switch_changes_batchnorm(rng):
    bn = nn.BatchNorm2d(2)
    x = (_f32(rng, 3, 2, 4, 4) * 3 + 2).astype(np.float32)
    y_train = bn(x).copy()
    y_eval = bn.eval()(x).copy()
    assert not np.allclose(y_train, y_eval)
    y_train2 = bn.train()(x).copy()
    assert_close(y_train2, y_train, **FORWARD, name="train again")


def test_relu_maxpool_gap_linear_flatten(rng):
    x = _f32(rng, 2, 3, 7, 7)
    relu = nn.ReLU()
    y = relu(x)
    assert_close(y, R.relu_forward(x), **FORWARD, name="relu")
    dy = _f32(rng, *x.shape)
    assert_close(relu.backward(dy), R.relu_backward(dy, R.relu_forward(x)), **FORWARD,
                 name="relu dx")

    for layout in ("NCHW", "NHWC"):
        to, back = (_nhwc, _nchw) if layout == "NHWC" else (np.asarray, np.asarray)
        pool = nn.MaxPool2d(3, 2, 1, layout=layout)
        y = pool(to(x))
        assert_close(back(y), R.max_pool2d_forward(x, 3, 2, 1), **FORWARD, name="maxpool")
        dy = _f32(rng, 2, 3, 4, 4)
        assert_close(back(pool.backward(to(dy))), R.max_pool2d_backward(dy, x, 3, 2, 1),
                     **FORWARD, name="maxpool dx")
        gap = nn.GlobalAvgPool2d(layout=layout)
        assert_close(gap(to(x)), R.global_avg_pool_forward(x), **FORWARD, name="gap")
        dy = _f32(rng, 2, 3)
        assert_close(back(gap.backward(dy)), R.global_avg_pool_backward(dy, x.shape),
                     **FORWARD, name="gap dx")
    assert nn.MaxPool2d(2).stride == 2

    flat = nn.Flatten()
    f = flat(x)
    assert f.shape == (2, 147)
    lin = nn.Linear(147, 4, rng=0)
    y = lin(f)
    assert_close(y, R.linear_forward(f, lin.weight.data, lin.bias.data), **FORWARD, name="fc")
    dy = _f32(rng, 2, 4)
    dx_ref, dw_ref, db_ref = R.linear_backward(dy, f, lin.weight.data)
    dx = lin.backward(dy)
    assert_close(dx, dx_ref, **BACKWARD, name="fc dx")
    assert_close(lin.weight.grad, dw_ref, **BACKWARD, name="fc dw")
    assert_close(lin.bias.grad, db_ref, **BACKWARD, name="fc db")
    assert flat.backward(dx).shape == x.shape


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cross_entropy_loss(rng, smoothing):
    logits = _f32(rng, 6, 5) * 3
    labels = rng.integers(0, 5, size=6).astype(np.int64)
    crit = nn.CrossEntropyLoss(label_smoothing=smoothing)
    loss = crit(logits, labels)
    assert isinstance(loss, float)
    assert_close(loss, R.cross_entropy_forward(logits, labels, smoothing), **FORWARD, name="loss")
    ref = R.cross_entropy_backward(logits, labels, smoothing)
    assert_close(crit.backward(), ref, **FORWARD, name="dlogits")
    crit(logits, labels)
    assert_close(crit.backward(2.0), 2 * ref, **FORWARD, name="scaled dlogits")
    with pytest.raises(ValueError, match=r"^label_smoothing\b"):
        nn.CrossEntropyLoss(label_smoothing=1.0)


# ---------------------------------------------------------------- buffers and errors

def test_activation_buffers_reused_per_shape(rng):
    conv = nn.Conv2d(3, 4, 3, padding=1)
    bn = nn.BatchNorm2d(4)
    x = _f32(rng, 2, 3, 6, 6)
    y1 = conv(x)
    z1 = bn(y1)
    dx1 = bn.backward(np.ones_like(z1))
    y2 = conv(x + 1)
    z2 = bn(y2)
    dx2 = bn.backward(np.ones_like(z2))
    assert y1 is y2 and z1 is z2
    # Gradients are not kept between steps: fresh arrays, or the caller's dy with out=dy.
    assert dx1 is not dx2
    dy = np.ones_like(z2)
    bn(y2)
    assert bn.backward(dy, out=dy) is dy
    assert_close(dy, dx2, **FORWARD, name="in-place dx")
    y3 = conv(_f32(rng, 1, 3, 6, 6))  # another batch size gets its own buffer
    assert y3 is not y1 and y3.shape == (1, 4, 6, 6) and conv(x) is y1


def test_backward_before_forward_raises():
    for layer in (nn.Conv2d(1, 1, 1), nn.BatchNorm2d(1), nn.ReLU(), nn.Linear(1, 1),
                  nn.MaxPool2d(2), nn.GlobalAvgPool2d(), nn.Flatten()):
        with pytest.raises(RuntimeError, match=r"^\w+\.backward: no forward left"):
            layer.backward(np.zeros((1, 1, 1, 1), np.float32))
    with pytest.raises(RuntimeError, match=r"^CrossEntropyLoss\.backward: no forward left"):
        nn.CrossEntropyLoss().backward()


def test_bad_constructor_args():
    with pytest.raises(ValueError, match=r"^layout\b"):
        nn.Conv2d(1, 1, 3, layout="NCWH")
    with pytest.raises(ValueError, match=r"^kernel_size\b"):
        nn.Conv2d(1, 1, (3, 5))


# ---------------------------------------------------------------- the forward/backward contract

def _layer_cases(rng):
    """(layer, input, dy) for every layer type."""
    x4 = _f32(rng, 2, 3, 6, 6)
    return [(nn.Conv2d(3, 4, 3, padding=1), x4, _f32(rng, 2, 4, 6, 6)),
            (nn.BatchNorm2d(3, relu=True), x4, _f32(rng, 2, 3, 6, 6)),
            (nn.ReLU(), x4, _f32(rng, 2, 3, 6, 6)),
            (nn.MaxPool2d(2), x4, _f32(rng, 2, 3, 3, 3)),
            (nn.GlobalAvgPool2d(), x4, _f32(rng, 2, 3)),
            (nn.Linear(5, 4), _f32(rng, 2, 5), _f32(rng, 2, 4)),
            (nn.Flatten(), x4, _f32(rng, 2, 108))]


def test_a_second_backward_after_one_forward_raises(rng):
    """Each forward allows one backward: a second would read caches the first overwrote."""
    for layer, x, dy in _layer_cases(rng):
        layer(x)
        layer.backward(dy)
        name = type(layer).__name__
        with pytest.raises(RuntimeError, match=rf"^{name}\.backward: no forward left"):
            layer.backward(dy)
        layer(x)
        layer.backward(dy)  # a new forward allows a new backward
    crit = nn.CrossEntropyLoss()
    crit(_f32(rng, 2, 4), np.array([0, 3]))
    crit.backward()
    with pytest.raises(RuntimeError, match=r"^CrossEntropyLoss\.backward: no forward left"):
        crit.backward()


def _conv_bn(layout, seed):
    return nn.Conv2d(3, 3, 3, padding=1, layout=layout, rng=seed), \
        nn.BatchNorm2d(3, relu=True, layout=layout)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_module_called_twice_in_one_forward(rng, layout):
    """Shared weights: conv -> bn -> conv -> bn with the same two layers equals two
    copies of each (outputs, dx), and each shared parameter's gradient is the sum of the
    copies' (in train and eval mode: each call has its own output array)."""
    conv, bn = _conv_bn(layout, 0)
    bn.weight.data[...] = [1.5, 0.5, -1.0]
    shared = nn.Sequential(conv, bn, conv, bn)
    copies = [_conv_bn(layout, 1) for _ in range(2)]
    twins = nn.Sequential(*copies[0], *copies[1])
    x, dy = _f32(rng, 2, 3, 5, 5), _f32(rng, 2, 3, 5, 5)
    if layout == "NHWC":
        x, dy = _nhwc(x), _nhwc(dy)
    for mode in (True, False):
        for c, b in copies:  # the shared BN's running statistics moved twice per forward
            c.load_state_dict(conv.state_dict())
            b.load_state_dict(bn.state_dict())
        shared.train(mode)
        twins.train(mode)
        y, y_twins = shared(x), twins(x)
        np.testing.assert_array_equal(y, y_twins)
        shared.zero_grad()
        twins.zero_grad()
        np.testing.assert_array_equal(shared.backward(dy), twins.backward(dy))
        for name, p in (("weight", conv.weight), ("bias", conv.bias)):
            want = sum(getattr(c, name).grad for c, _ in copies)
            np.testing.assert_array_equal(p.grad, want, err_msg=f"conv.{name} train={mode}")
        for name, p in (("weight", bn.weight), ("bias", bn.bias)):
            want = sum(getattr(b, name).grad for _, b in copies)
            np.testing.assert_array_equal(p.grad, want, err_msg=f"bn.{name} train={mode}")


def test_a_new_top_level_call_starts_a_new_graph(rng):
    """A forward without a backward leaves nothing pending: the backward belongs to the
    latest top-level call, and calling a layer directly through forward() does the same."""
    conv = nn.Conv2d(3, 2, 3, padding=1, rng=0)
    x1, x2 = _f32(rng, 2, 3, 5, 5), _f32(rng, 2, 3, 5, 5)
    dy = _f32(rng, 2, 2, 5, 5)
    for _ in range(3):
        conv(x1)
    conv(x2)
    conv.backward(dy)
    g2 = conv.weight.grad.copy()
    with pytest.raises(RuntimeError, match=r"^Conv2d\.backward: no forward left"):
        conv.backward(dy)
    conv.zero_grad()
    conv.forward(x1)
    conv.forward(x2)
    conv.backward(dy)
    np.testing.assert_array_equal(conv.weight.grad, g2)
    assert len(conv._state().pending) == 0


def test_conv_weights_stored_in_the_kernel_order(rng):
    """Conv weights live (R, S, C, K): the forward's cache holds the parameter itself (no
    per-call transpose), the gradient is written into .grad, and only the boundary
    (state_dict, host(), copy_) speaks PyTorch's (K, C, R, S)."""
    conv = nn.Conv2d(3, 5, 3, padding=1, layout="NHWC", rng=0)
    assert conv.weight.data.shape == (3, 3, 3, 5) and conv.weight.shape == (5, 3, 3, 3)
    w = conv.state_dict()["weight"]
    np.testing.assert_array_equal(w, conv.weight.host())
    np.testing.assert_array_equal(w.transpose(2, 3, 1, 0), conv.weight.data)
    x = _f32(rng, 2, 5, 5, 3)
    conv(x)
    assert conv._saved().w is conv.weight.data
    grad = conv.weight.grad
    conv.backward(_f32(rng, 2, 5, 5, 5))
    assert conv.weight.grad is grad and grad.shape == (3, 3, 3, 5)
    other = nn.Conv2d(3, 5, 3, padding=1, layout="NHWC", rng=1)
    other.load_state_dict(conv.state_dict())
    np.testing.assert_array_equal(other.weight.data, conv.weight.data)
    other.weight.copy_(w * 2)
    np.testing.assert_array_equal(other.state_dict()["weight"], w * 2)
    with pytest.raises(ValueError, match=r"^a: expected shape \(5, 3, 3, 3\)"):
        other.weight.copy_(w.transpose(2, 3, 1, 0))


def test_saved_input_is_what_a_block_may_reuse(rng):
    """saved_input() is the array the pending backward reads: for an NHWC layer the
    caller's own input; Conv2d may write dx over it."""
    conv = nn.Conv2d(3, 3, 3, padding=1, layout="NHWC", rng=0)
    x = _f32(rng, 2, 5, 5, 3)
    dy = _f32(rng, 2, 5, 5, 3)
    conv(x.copy())
    dx_fresh = conv.backward(dy)
    xin = x.copy()
    conv(xin)
    assert conv.saved_input() is xin
    assert conv.backward(dy, out=conv.saved_input()) is xin
    np.testing.assert_array_equal(xin, dx_fresh)
    with pytest.raises(RuntimeError, match=r"^Conv2d\.backward: no forward left"):
        conv.saved_input()
