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


def test_module_backward_fills_grads_and_overwrites(rng):
    m = _Two()
    x = _f32(rng, 2, 2, 5, 5)
    y = m(x)
    dy = _f32(rng, *y.shape)
    m.backward(dy)
    first = {n: p.grad.copy() for n, p in m.named_parameters()}
    m(x)
    m.backward(dy)  # same inputs again: overwritten, not accumulated
    for n, p in m.named_parameters():
        assert_close(p.grad, first[n], **BACKWARD, name=n)
        assert np.any(p.grad != 0), n


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
    y_ref = R.conv2d_forward(x, conv.weight.data, b, stride, pad)
    to, back = (_nhwc, _nchw) if layout == "NHWC" else (np.asarray, np.asarray)
    y = conv(to(x))
    assert_close(back(y), y_ref, **FORWARD, name="y")
    dy = rng.standard_normal(y_ref.shape)
    dx_ref, dw_ref, db_ref = R.conv2d_backward(dy, x, conv.weight.data, stride, pad)
    dx = conv.backward(to(dy.astype(np.float32)))
    assert_close(back(dx), dx_ref, **BACKWARD, name="dx")
    assert_close(conv.weight.grad, dw_ref, **BACKWARD, name="dw")
    if bias:
        assert_close(conv.bias.grad, db_ref, **BACKWARD, name="db")
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
    assert_close(crit.backward(2.0), 2 * ref, **FORWARD, name="scaled dlogits")
    with pytest.raises(ValueError, match="label_smoothing"):
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
    assert bn.backward(dy, out=dy) is dy
    assert_close(dy, dx2, **FORWARD, name="in-place dx")
    y3 = conv(_f32(rng, 1, 3, 6, 6))  # another batch size gets its own buffer
    assert y3 is not y1 and y3.shape == (1, 4, 6, 6) and conv(x) is y1


def test_backward_before_forward_raises():
    for layer in (nn.Conv2d(1, 1, 1), nn.BatchNorm2d(1), nn.ReLU(), nn.Linear(1, 1),
                  nn.MaxPool2d(2), nn.GlobalAvgPool2d(), nn.Flatten()):
        with pytest.raises(RuntimeError, match="before forward"):
            layer.backward(np.zeros((1, 1, 1, 1), np.float32))
    with pytest.raises(RuntimeError, match="before forward"):
        nn.CrossEntropyLoss().backward()


def test_bad_constructor_args():
    with pytest.raises(ValueError, match="layout"):
        nn.Conv2d(1, 1, 3, layout="NCWH")
    with pytest.raises(ValueError, match="kernel_size"):
        nn.Conv2d(1, 1, (3, 5))
