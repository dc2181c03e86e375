"""CUDA backend (resnet_cpp._cuda) vs tests/reference.py: every op on odd and ResNet-20 shapes,
bad inputs, interop (__cuda_array_interface__, DLPack), determinism and memory stability.

Skipped as a whole, with the reason, when _cuda was not built or no usable device exists.
The kernels take NHWC activations and RSCK conv weights; the reference is NCHW/OIHW, so the
tests transpose on the host.
"""
from __future__ import annotations

import pickle

import numpy as np
import pytest

import reference as ref
from cudatest import cuda_module_or_skip
from resnet_cpp import functional as F
from tolerance import BACKWARD, FORWARD, assert_close

_cuda = cuda_module_or_skip()

DA = _cuda.DeviceArray


def dev(a):
    return DA.from_numpy(a)


def host(d):
    return d.to_numpy()


def nhwc(x):
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1))


def nchw(x):
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def rsck(w):
    return np.ascontiguousarray(w.transpose(2, 3, 1, 0))


def oihw(w):
    return np.ascontiguousarray(w.transpose(3, 2, 0, 1))


def f32(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


# ------------------------------------------------------------------ module / device

def test_device_summary_and_info():
    s = _cuda.device_summary()
    assert "sm_" in s and not s.startswith("unavailable")
    info = _cuda.device_info()
    assert len(info["compute_capability"]) == 2 and info["total_memory"] > 0
    free, total = _cuda.mem_info()
    assert 0 < free <= total
    assert _cuda.why_unavailable() == ""


@pytest.mark.parametrize("dtype", [np.float32, np.int32, np.int64])
def test_device_array_round_trip(rng, dtype):
    a = (rng.standard_normal((3, 5, 7)) * 100).astype(dtype)
    d = dev(a)
    assert d.shape == (3, 5, 7) and d.dtype == np.dtype(dtype) and d.size == a.size
    assert d.nbytes == a.nbytes and d.ndim == 3 and len(d) == 3
    np.testing.assert_array_equal(host(d), a)
    d.copy_from_numpy(a[::-1].copy())
    np.testing.assert_array_equal(host(d), a[::-1])
    d.zero_()
    assert not host(d).any()
    v = d.reshape(-1, 7)
    assert v.shape == (15, 7) and v.ptr == d.ptr
    # An unpickled array's dtype is equal to, not the same object as, NumPy's own.
    np.testing.assert_array_equal(host(dev(pickle.loads(pickle.dumps(a)))), a)


def test_device_array_factories_and_errors():
    z = DA.zeros((2, 3), "int64")
    assert z.dtype == np.int64 and not host(z).any()
    assert DA.empty((0, 3)).size == 0
    with pytest.raises(TypeError, match="float64"):
        DA.from_numpy(np.zeros(3))
    with pytest.raises(TypeError, match="from_numpy"):
        DA.from_numpy([1.0, 2.0])
    with pytest.raises(ValueError, match="reshape"):
        DA.zeros((2, 3)).reshape(4, 2)
    with pytest.raises(TypeError, match=r"^src\b"):
        DA.zeros((2, 3)).copy_from_numpy(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"^src\b"):
        DA.zeros((2, 3)).copy_from_numpy(np.zeros((3, 2), np.float32))
    assert float(dev(np.array([2.5], np.float32))) == 2.5
    assert DA.from_numpy(np.array(2.5, np.float32)).shape == ()
    t = np.arange(12, dtype=np.float32).reshape(3, 4).T  # non-contiguous: copied in order
    np.testing.assert_array_equal(host(DA.from_numpy(t)), t)


def test_pinned_memory_and_non_blocking_copies(rng):
    a = f32(rng, 3, 5)
    pinned = _cuda.pinned_empty((3, 5))
    pinned[...] = a
    d, back = DA.zeros((3, 5)), _cuda.pinned_empty((3, 5))
    syncs = _cuda.sync_count()
    d.copy_from_numpy(pinned, non_blocking=True)
    d.copy_to_numpy(back, non_blocking=True)
    assert _cuda.sync_count() == syncs  # neither copy waited for the device
    _cuda.synchronize()
    assert _cuda.sync_count() == syncs + 1
    np.testing.assert_array_equal(back, a)
    part = DA.zeros((2, 5))  # a view inside a pinned block is pinned memory too
    stream = _cuda.create_stream()
    try:
        part.copy_from_numpy(pinned[1:], non_blocking=True, stream=stream)
        _cuda.stream_wait(_cuda.current_stream(), stream)
        np.testing.assert_array_equal(host(part), a[1:])
    finally:
        _cuda.destroy_stream(stream)
    out = np.zeros((3, 5), np.float32)
    d.copy_to_numpy(out)  # blocking: pageable memory is fine
    np.testing.assert_array_equal(out, a)
    with pytest.raises(ValueError, match=r"^src: non_blocking copies need pinned host memory"):
        d.copy_from_numpy(a, non_blocking=True)
    with pytest.raises(ValueError, match=r"^dst: non_blocking copies need pinned host memory"):
        d.copy_to_numpy(out, non_blocking=True)
    with pytest.raises(ValueError, match=r"^dst: expected shape \(3, 5\)"):
        d.copy_to_numpy(np.zeros((5, 3), np.float32))
    with pytest.raises(ValueError, match=r"^dst: expected a writeable C-contiguous array"):
        d.copy_to_numpy(np.zeros((5, 3), np.float32).T)


@pytest.mark.parametrize("dtype,value", [("float32", -2.5), ("int32", -7), ("int64", 1 << 40)])
def test_fill(dtype, value):
    d = DA.empty((3, 7), dtype)
    d.fill_(value)
    np.testing.assert_array_equal(host(d), np.full((3, 7), value, dtype))


def test_caching_allocator_reuses_freed_blocks():
    _cuda.synchronize()
    _cuda.empty_cache()  # earlier tests may have left blocks of this size in the cache
    a = DA.empty((1000,))
    ptr = a.ptr
    del a  # back to the cache, not to the driver
    before = _cuda.allocator_stats()
    b = DA.empty((1000,))
    after = _cuda.allocator_stats()
    assert b.ptr == ptr and after["device_mallocs"] == before["device_mallocs"]
    assert after["requests"] == before["requests"] + 1
    assert after["cached_bytes"] == before["cached_bytes"] - 4096
    assert after["in_use_bytes"] == before["in_use_bytes"] + 4096
    del b
    _cuda.empty_cache()
    assert _cuda.allocator_stats()["cached_bytes"] == 0


def test_graph_keeps_the_memory_it_uses(rng):
    """An array created inside a capture and dropped by Python stays the graph's: the
    allocator must not hand its memory out while the graph can still be replayed."""
    x = dev(f32(rng, 64))
    old, stream = _cuda.current_stream(), _cuda.create_stream()
    _cuda.set_stream(stream)
    try:
        graph = _cuda.CudaGraph()
        graph.begin()
        y = _cuda.relu_forward(x)  # a fresh output, allocated during the capture
        z = _cuda.add_forward(y, x, out=_cuda.relu_forward(x))
        graph.end()
        ptrs = {y.ptr, z.ptr}
        del y, z
        fresh = [DA.empty((64,)) for _ in range(4)]
        assert not ptrs & {f.ptr for f in fresh}
        graph.replay()
        _cuda.synchronize()
        del fresh
        cached = _cuda.allocator_stats()["cached_bytes"]
        del graph  # now the capture's blocks (y's, z's, ...) return to the cache
        assert _cuda.allocator_stats()["cached_bytes"] >= cached + 2 * 512
    finally:
        _cuda.set_stream(old)
        _cuda.destroy_stream(stream)


# ------------------------------------------------------------------ convolution

# (N, C, H, W, K, R, stride, pad): odd tails, 1x1, stride 2, 5x5, then ResNet-20 layers.
CONV_SHAPES = [
    (1, 3, 7, 7, 5, 3, 1, 1),
    (2, 5, 9, 9, 7, 3, 2, 1),
    (1, 3, 7, 7, 5, 1, 1, 0),
    (2, 5, 9, 9, 6, 1, 2, 0),
    (1, 3, 9, 7, 4, 5, 2, 2),
    (3, 5, 7, 9, 70, 3, 1, 0),
    (8, 3, 32, 32, 16, 3, 1, 1),
    (8, 16, 32, 32, 16, 3, 1, 1),
    (8, 16, 32, 32, 32, 3, 2, 1),
    (8, 16, 32, 32, 32, 1, 2, 0),
    (8, 32, 16, 16, 32, 3, 1, 1),
    (8, 64, 8, 8, 64, 3, 1, 1),
]


@pytest.mark.parametrize("shape", CONV_SHAPES, ids=str)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_conv2d(rng, shape, bias):
    N, C, H, W, K, R, s, p = shape
    x = f32(rng, N, C, H, W)
    w = f32(rng, K, C, R, R, scale=(C * R * R) ** -0.5)  # He-like: outputs of order 1
    b = f32(rng, K) if bias else None
    y = host(_cuda.conv2d_forward(dev(nhwc(x)), dev(rsck(w)), dev(b) if bias else None, s, p))
    assert_close(nchw(y), ref.conv2d_forward(x, w, b, s, p), **FORWARD, name="y")

    dy = f32(rng, *nchw(y).shape)
    dx_ref, dw_ref, db_ref = ref.conv2d_backward(dy, x, w, s, p)
    dx = host(_cuda.conv2d_backward_data(dev(nhwc(dy)), dev(rsck(w)), H, W, s, p))
    assert_close(nchw(dx), dx_ref, **BACKWARD, name="dx")
    dw, db = _cuda.conv2d_backward_weight(dev(nhwc(x)), dev(nhwc(dy)), R, R, s, p, with_bias=bias)
    assert_close(oihw(host(dw)), dw_ref, **BACKWARD, name="dw")
    if bias:
        assert_close(host(db), db_ref, **BACKWARD, name="db")
    else:
        assert db is None


@pytest.fixture
def tf32():
    _cuda.set_tf32(True)
    yield
    _cuda.set_tf32(False)


# TF32 keeps 10 mantissa bits per input (relative rounding ~5e-4), accumulating in FP32: with
# He-scaled inputs the results are of order 1, so 1e-2 absolute/relative bounds the error
# over the <= 576-term sums here with a wide margin while still catching any indexing bug.
TF32_TOL = dict(rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("shape", [CONV_SHAPES[1], CONV_SHAPES[5], CONV_SHAPES[8]], ids=str)
def test_conv2d_tf32(rng, tf32, shape):
    N, C, H, W, K, R, s, p = shape
    x = f32(rng, N, C, H, W)
    w = f32(rng, K, C, R, R, scale=(C * R * R) ** -0.5)
    b = f32(rng, K)
    y = host(_cuda.conv2d_forward(dev(nhwc(x)), dev(rsck(w)), dev(b), s, p))
    assert_close(nchw(y), ref.conv2d_forward(x, w, b, s, p), **TF32_TOL, name="y")
    dy = f32(rng, *nchw(y).shape)
    dx_ref = ref.conv2d_backward(dy, x, w, s, p)[0]
    dx = host(_cuda.conv2d_backward_data(dev(nhwc(dy)), dev(rsck(w)), H, W, s, p))
    assert_close(nchw(dx), dx_ref, **TF32_TOL, name="dx")
    dy = dy * np.float32((N * y.shape[1] * y.shape[2]) ** -0.5)  # dw of order 1 as well
    dw_ref = ref.conv2d_backward(dy, x, w, s, p)[1]
    dw, _ = _cuda.conv2d_backward_weight(dev(nhwc(x)), dev(nhwc(dy)), R, R, s, p)
    assert_close(oihw(host(dw)), dw_ref, **TF32_TOL, name="dw")


def test_linear_tf32(rng, tf32):
    x, w = f32(rng, 37, 64), f32(rng, 10, 64, scale=0.125)
    assert_close(host(_cuda.linear_forward(dev(x), dev(w))), ref.linear_forward(x, w, None),
                 **TF32_TOL, name="y")


def test_conv2d_out_buffers_are_reused(rng):
    x, w = dev(f32(rng, 2, 7, 7, 3)), dev(f32(rng, 3, 3, 3, 4))
    out = DA.zeros((2, 7, 7, 4))
    y = _cuda.conv2d_forward(x, w, None, 1, 1, out=out)
    assert y is out
    np.testing.assert_array_equal(host(out), host(_cuda.conv2d_forward(x, w, None, 1, 1)))
    dw_out, db_out = DA.zeros((3, 3, 3, 4)), DA.zeros((4,))
    dw, db = _cuda.conv2d_backward_weight(x, y, 3, 3, 1, 1, True, dw_out, db_out)
    assert dw is dw_out and db is db_out


def test_conv2d_backward_weight_is_deterministic(rng):
    # N*P*Q = 8192 >> tile count: split-K with a fixed-order reduction.
    x, dy = dev(f32(rng, 8, 32, 32, 16)), dev(f32(rng, 8, 32, 32, 16))
    a = [host(t) for t in _cuda.conv2d_backward_weight(x, dy, 3, 3, 1, 1)]
    b = [host(t) for t in _cuda.conv2d_backward_weight(x, dy, 3, 3, 1, 1)]
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)


def test_conv2d_bad_inputs(rng):
    x, w = dev(f32(rng, 2, 7, 7, 3)), dev(f32(rng, 3, 3, 3, 4))
    with pytest.raises(TypeError, match="x: expected a resnet_cpp._cuda.DeviceArray"):
        _cuda.conv2d_forward(f32(rng, 2, 7, 7, 3), w)
    with pytest.raises(TypeError, match="x: expected dtype float32"):
        _cuda.conv2d_forward(DA.zeros((2, 7, 7, 3), "int32"), w)
    with pytest.raises(ValueError, match="x: expected 4-d"):
        _cuda.conv2d_forward(dev(f32(rng, 7, 7, 3)), w)
    with pytest.raises(ValueError, match="w: expected shape"):
        _cuda.conv2d_forward(x, dev(f32(rng, 3, 3, 5, 4)))
    with pytest.raises(ValueError, match="b: expected shape"):
        _cuda.conv2d_forward(x, w, dev(f32(rng, 5)))
    with pytest.raises(ValueError, match=r"^stride\b"):
        _cuda.conv2d_forward(x, w, None, 0, 1)
    with pytest.raises(ValueError, match=r"^pad\b"):
        _cuda.conv2d_forward(x, w, None, 1, 3)
    with pytest.raises(ValueError, match="empty batch"):
        _cuda.conv2d_forward(DA.zeros((0, 7, 7, 3)), w)
    with pytest.raises(ValueError, match="out: expected shape"):
        _cuda.conv2d_forward(x, w, None, 1, 1, out=DA.zeros((2, 7, 7, 5)))
    with pytest.raises(ValueError, match="out: expected a writeable"):
        _cuda.conv2d_forward(x, w, None, 1, 1, out=_readonly(DA.zeros((2, 7, 7, 4))))
    with pytest.raises(ValueError, match="dy: expected shape"):
        _cuda.conv2d_backward_data(dev(f32(rng, 2, 6, 6, 4)), w, 7, 7, 1, 1)
    with pytest.raises(ValueError, match=r"^db_out\b"):
        _cuda.conv2d_backward_weight(x, dev(f32(rng, 2, 7, 7, 4)), 3, 3, 1, 1, False, None,
                                     DA.zeros((4,)))


class _CAI:
    """A foreign object exposing another array's memory through __cuda_array_interface__."""

    def __init__(self, d, readonly=False, strides=None):
        self.base = d
        self.__cuda_array_interface__ = dict(d.__cuda_array_interface__)
        self.__cuda_array_interface__["data"] = (d.ptr, readonly)
        self.__cuda_array_interface__["strides"] = strides


def _readonly(d):
    return DA(_CAI(d, readonly=True))


# ------------------------------------------------------------------ batch norm

# (N, C, H, W): odd tails, a single image, then ResNet-20 stages.
BN_SHAPES = [(1, 3, 7, 7), (2, 5, 9, 9), (3, 17, 1, 1), (8, 16, 32, 32), (8, 32, 16, 16),
             (8, 64, 8, 8)]


@pytest.mark.parametrize("shape", BN_SHAPES, ids=str)
@pytest.mark.parametrize("relu", [False, True], ids=["plain", "relu"])
def test_batch_norm_train(rng, shape, relu):
    N, C, H, W = shape
    x = f32(rng, *shape) * 2 + 0.5  # nonzero mean: exercises the two-pass variance
    gamma, beta = f32(rng, C) + 1, f32(rng, C)
    rm0, rv0 = f32(rng, C), np.abs(f32(rng, C)) + 0.5
    rm, rv = dev(rm0), dev(rv0)
    y, mean, rstd = _cuda.batch_norm_forward_train(dev(nhwc(x)), dev(gamma), dev(beta), rm, rv,
                                                   0.1, 1e-5, relu)
    y_ref, mean_ref, rstd_ref = ref.batch_norm_train_forward(x, gamma, beta)
    if relu:
        y_ref = np.maximum(y_ref, 0)
    assert_close(nchw(host(y)), y_ref, **BACKWARD, name="y")
    assert_close(host(mean), mean_ref, **BACKWARD, name="mean")
    assert_close(host(rstd), rstd_ref, **BACKWARD, name="rstd")
    rm_ref, rv_ref = ref.batch_norm_running_update(rm0, rv0, x, 0.1)
    assert_close(host(rm), rm_ref, **BACKWARD, name="running_mean")
    assert_close(host(rv), rv_ref, **BACKWARD, name="running_var")

    dy = f32(rng, *shape)
    yh = nchw(host(y))
    dy_eff = dy * (yh > 0) if relu else dy  # the mask recomputed from x is the forward's
    dx, dgamma, dbeta = _cuda.batch_norm_backward(dev(nhwc(dy)), dev(nhwc(x)), dev(gamma), mean,
                                                  rstd, beta=dev(beta), relu=relu, train=True)
    dx_ref, dg_ref, db_ref = ref.batch_norm_backward(dy_eff, x, gamma, host(mean), host(rstd))
    assert_close(nchw(host(dx)), dx_ref, **BACKWARD, name="dx")
    assert_close(host(dgamma), dg_ref, **BACKWARD, name="dgamma")
    assert_close(host(dbeta), db_ref, **BACKWARD, name="dbeta")


@pytest.mark.parametrize("shape", BN_SHAPES[:3], ids=str)
@pytest.mark.parametrize("relu", [False, True], ids=["plain", "relu"])
def test_batch_norm_eval(rng, shape, relu):
    N, C, H, W = shape
    x = f32(rng, *shape)
    gamma, beta = f32(rng, C) + 1, f32(rng, C)
    rm, rv = f32(rng, C), np.abs(f32(rng, C)) + 0.5
    y = _cuda.batch_norm_forward_eval(dev(nhwc(x)), dev(gamma), dev(beta), dev(rm), dev(rv),
                                      1e-5, relu)
    y_ref = ref.batch_norm_eval_forward(x, gamma, beta, rm, rv)
    if relu:
        y_ref = np.maximum(y_ref, 0)
    assert_close(nchw(host(y)), y_ref, **FORWARD, name="y")

    dy = f32(rng, *shape)
    dy_eff = dy * (nchw(host(y)) > 0) if relu else dy
    rstd = (1.0 / np.sqrt(rv.astype(np.float64) + 1e-5)).astype(np.float32)
    dx, dgamma, dbeta = _cuda.batch_norm_backward(dev(nhwc(dy)), dev(nhwc(x)), dev(gamma), dev(rm),
                                                  dev(rstd), beta=dev(beta), relu=relu, train=False)
    dx_ref, dg_ref, db_ref = ref.batch_norm_eval_backward(dy_eff, x, gamma, rm, rv)
    assert_close(nchw(host(dx)), dx_ref, **BACKWARD, name="dx")
    assert_close(host(dgamma), dg_ref, **BACKWARD, name="dgamma")
    assert_close(host(dbeta), db_ref, **BACKWARD, name="dbeta")


def test_batch_norm_2d_input_and_bad_inputs(rng):
    x = f32(rng, 9, 5)
    g, b, rm, rv = dev(np.ones(5, np.float32)), dev(np.zeros(5, np.float32)), DA.zeros((5,)), dev(np.ones(5, np.float32))
    y, _, _ = _cuda.batch_norm_forward_train(dev(x), g, b, rm, rv)
    y_ref = ref.batch_norm_train_forward(x[:, :, None, None], np.ones(5), np.zeros(5))[0][:, :, 0, 0]
    assert_close(host(y), y_ref, **BACKWARD, name="y")
    with pytest.raises(ValueError, match="more than one value"):
        _cuda.batch_norm_forward_train(dev(f32(rng, 1, 1, 1, 5)), g, b, rm, rv)
    with pytest.raises(ValueError, match="gamma: expected shape"):
        _cuda.batch_norm_forward_train(dev(x), dev(np.ones(4, np.float32)), b, rm, rv)
    with pytest.raises(ValueError, match="running_var: expected a writeable"):
        _cuda.batch_norm_forward_train(dev(x), g, b, rm, _readonly(rv))
    with pytest.raises(ValueError, match=r"^momentum\b"):
        _cuda.batch_norm_forward_train(dev(x), g, b, rm, rv, 1.5)
    with pytest.raises(ValueError, match=r"^eps\b"):
        _cuda.batch_norm_forward_eval(dev(x), g, b, rm, rv, 0.0)
    with pytest.raises(ValueError, match="dy: expected shape"):
        _cuda.batch_norm_backward(dev(f32(rng, 9, 4)), dev(x), g, rm, rv)
    with pytest.raises(ValueError, match=r"^beta: required with relu=True"):
        _cuda.batch_norm_backward(dev(x), dev(x), g, rm, rv, relu=True)
    with pytest.raises(ValueError, match=r"^add: expected shape"):
        _cuda.batch_norm_backward(dev(x), dev(x), g, rm, rv, add=DA.zeros((9, 4)))
    with pytest.raises(ValueError, match=r"^residual: expected shape"):
        _cuda.batch_norm_forward_train(dev(x), g, b, rm, rv, residual=DA.zeros((9, 4)))


# ------------------------------------------------------------------ the joins the models fuse

JOIN_SHAPES = [(1, 3, 7, 7), (2, 5, 9, 9), (3, 17, 1, 1), (8, 16, 32, 32)]


@pytest.mark.parametrize("shape", JOIN_SHAPES, ids=str)
@pytest.mark.parametrize("relu", [False, True], ids=["add", "add_relu"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("layout", ["NHWC", "NCHW"])
def test_batch_norm_residual_join(rng, shape, relu, training, layout):
    """relu?(bn(x) + residual) and its backward through functional on device arrays."""
    C = shape[1]
    x = f32(rng, *shape) * 2 + 3
    res, dy = f32(rng, *shape), f32(rng, *shape)
    gamma, beta = f32(rng, C) + 1, f32(rng, C)
    rm, rv = f32(rng, C), np.abs(f32(rng, C)) + 0.5
    y_ref, back_ref = ref.batch_norm_join(x, res, gamma, beta, rm, rv, relu, training)
    to = (lambda a: dev(nhwc(a))) if layout == "NHWC" else dev
    back = (lambda d: nchw(host(d))) if layout == "NHWC" else host
    y, cache = F.batch_norm2d(to(x), dev(gamma), dev(beta), dev(rm), dev(rv), training=training,
                              relu=relu, layout=layout, residual=to(res))
    assert_close(back(y), y_ref, **BACKWARD, name="y")
    dx, dgamma, dbeta, dres = F.batch_norm2d_backward(to(dy), cache)
    dx_ref, dg_ref, db_ref, d_ref = back_ref(dy, back(y))  # the kernel's own mask
    assert_close(back(dres), d_ref, **BACKWARD, name="dresidual")
    assert_close(back(dx), dx_ref, **BACKWARD, name="dx")
    assert_close(host(dgamma), dg_ref, **BACKWARD, name="dgamma")
    assert_close(host(dbeta), db_ref, **BACKWARD, name="dbeta")


@pytest.mark.parametrize("shape", [(2, 7, 7, 17), (4, 8, 8, 16)], ids=str)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_batch_norm_backward_add_and_in_place(rng, shape, training):
    """add= sums another branch's gradient in the same pass (bitwise dx + add); out=dy and
    out=x overwrite their input with the bits of a fresh dx (the models' memory reuse)."""
    C = shape[-1]
    x, dy, other = dev(f32(rng, *shape)), dev(f32(rng, *shape)), dev(f32(rng, *shape))
    gamma, beta = dev(f32(rng, C) + 1), dev(f32(rng, C))
    rm, rv = dev(f32(rng, C)), dev(np.abs(f32(rng, C)) + 0.5)
    _, cache = F.batch_norm2d(x, gamma, beta, rm, rv, training=training, relu=True, layout="NHWC")
    want = [host(a) for a in F.batch_norm2d_backward(dy, cache)]
    summed = host(F.batch_norm2d_backward(dy, cache, add=other)[0])
    np.testing.assert_array_equal(summed, host(_cuda.add_forward(dev(want[0]), other)))
    d = dev(host(dy))
    got = F.batch_norm2d_backward(d, cache, out=d)
    assert got[0] is d
    for a, b in zip(got, want):
        np.testing.assert_array_equal(host(a), b)
    x_before = host(x)
    got = F.batch_norm2d_backward(dy, cache, overwrite_cache=True)  # dx over the cached x
    assert got[0] is x
    np.testing.assert_array_equal(host(x), want[0])
    assert not np.array_equal(x_before, want[0])


def test_batch_norm_eval_statistics_out(rng):
    x, C = dev(f32(rng, 3, 5, 5, 7)), 7
    gamma, beta = dev(f32(rng, C) + 1), dev(f32(rng, C))
    rm, rv = f32(rng, C), np.abs(f32(rng, C)) + 0.5
    mean, rstd = DA.zeros((C,)), DA.zeros((C,))
    _cuda.batch_norm_forward_eval(x, gamma, beta, dev(rm), dev(rv), 1e-5, mean_out=mean,
                                  rstd_out=rstd)
    np.testing.assert_array_equal(host(mean), rm)
    # Both sides: a double sqrt and division, rounded once to float32.
    np.testing.assert_array_equal(host(rstd), (1 / np.sqrt(rv.astype(np.float64) + 1e-5)).astype(np.float32))


# (N, H, W, C, K, stride): odd sizes and strides, 1 x 1 images, stride 1, K == C, CIFAR.
SHORTCUTS = [(1, 7, 7, 3, 8, 2), (2, 9, 5, 5, 5, 2), (3, 5, 8, 2, 7, 3), (1, 1, 1, 1, 4, 2),
             (2, 6, 6, 3, 9, 1), (8, 32, 32, 16, 32, 2)]


@pytest.mark.parametrize("case", SHORTCUTS, ids=str)
def test_shortcut_a(rng, case):
    N, H, W, C, K, s = case
    x = f32(rng, N, H, W, C)
    y, cache = F.shortcut_a(dev(x), K, s)
    y_ref = ref.shortcut_a_forward(np.moveaxis(x, -1, 1), K, s)
    np.testing.assert_array_equal(np.moveaxis(host(y), -1, 1), y_ref)  # a copy: exact
    dy = f32(rng, *y.shape)
    dx_ref = np.moveaxis(ref.shortcut_a_backward(np.moveaxis(dy, -1, 1), (N, C, H, W), s), 1, -1)
    out = dev(np.full(x.shape, np.nan, np.float32))
    dx = F.shortcut_a_backward(dev(dy), cache, out=out)
    assert dx is out
    np.testing.assert_array_equal(host(dx), dx_ref)
    base = f32(rng, *x.shape)
    acc = dev(base)
    assert F.shortcut_a_backward(dev(dy), cache, out=acc, accumulate=True) is acc
    np.testing.assert_array_equal(host(acc), base + dx_ref.astype(np.float32))


def test_shortcut_a_bad_inputs(rng):
    x = dev(f32(rng, 2, 8, 8, 4))
    with pytest.raises(ValueError, match=r"^channels_out: expected an integer in \[4,"):
        _cuda.shortcut_a_forward(x, 3, 2)
    with pytest.raises(ValueError, match=r"^stride"):
        _cuda.shortcut_a_forward(x, 8, 0)
    with pytest.raises(ValueError, match=r"^dy: expected shape \(2, 4, 4, 8\)"):
        _cuda.shortcut_a_backward(dev(f32(rng, 2, 5, 5, 8)), 4, 8, 8, 2)
    with pytest.raises(ValueError, match=r"^out: required with accumulate=True"):
        _cuda.shortcut_a_backward(dev(f32(rng, 2, 4, 4, 8)), 4, 8, 8, 2, accumulate=True)


@pytest.mark.parametrize("shape", [CONV_SHAPES[0], CONV_SHAPES[3], CONV_SHAPES[4]], ids=str)
def test_conv2d_backward_writes_dx_over_its_input(rng, shape):
    """dx_out=cache.x: the weight gradient reads x first, then dx goes over it (the models'
    reuse of spent activations), with the same results as fresh outputs."""
    N, C, H, W, K, R, s, p = shape
    x, w = f32(rng, N, H, W, C), f32(rng, R, R, C, K, scale=(C * R * R) ** -0.5)
    y, cache = F.conv2d(dev(x), dev(w), None, s, p, layout="NHWC", w_layout="RSCK")
    dy = dev(f32(rng, *y.shape))
    dx_want, dw_want, _ = (host(a) if a is not None else None for a in F.conv2d_backward(dy, cache))
    dx, dw, _ = F.conv2d_backward(dy, cache, dx_out=cache.x)
    assert dx is cache.x
    np.testing.assert_array_equal(host(dx), dx_want)
    np.testing.assert_array_equal(host(dw), dw_want)
    assert_close(host(dw), rsck(ref.conv2d_backward(nchw(host(dy)), nchw(x), oihw(w), s, p)[1]),
                 **BACKWARD, name="dw")


# ------------------------------------------------------------------ elementwise and layout

ELT_SHAPES = [(7,), (3, 5), (1, 7, 7, 3), (8, 32, 32, 16)]


@pytest.mark.parametrize("shape", ELT_SHAPES, ids=str)
def test_eltwise(rng, shape):
    a, b, dy = f32(rng, *shape), f32(rng, *shape), f32(rng, *shape)
    y = host(_cuda.relu_forward(dev(a)))
    np.testing.assert_array_equal(y, ref.relu_forward(a).astype(np.float32))
    np.testing.assert_array_equal(host(_cuda.relu_backward(dev(dy), dev(y))),
                                  ref.relu_backward(dy, y).astype(np.float32))
    assert_close(host(_cuda.add_forward(dev(a), dev(b))), a.astype(np.float64) + b, **FORWARD, name="add")
    s = host(_cuda.add_relu_forward(dev(a), dev(b)))
    assert_close(s, ref.add_relu_forward(a, b), **FORWARD, name="add_relu")
    np.testing.assert_array_equal(host(_cuda.add_relu_backward(dev(dy), dev(s))),
                                  ref.add_relu_backward(dy, s).astype(np.float32))


@pytest.mark.parametrize("shape", [(1, 3, 7, 7), (2, 5, 9, 7), (3, 33, 5, 40), (8, 16, 32, 32)], ids=str)
def test_layout_round_trip(rng, shape):
    x = f32(rng, *shape)
    y = _cuda.nchw_to_nhwc(dev(x))
    np.testing.assert_array_equal(host(y), nhwc(x))
    np.testing.assert_array_equal(host(_cuda.nhwc_to_nchw(y)), x)


def test_eltwise_bad_inputs(rng):
    a = dev(f32(rng, 3, 5))
    with pytest.raises(ValueError, match="b: expected shape"):
        _cuda.add_forward(a, dev(f32(rng, 5, 3)))
    with pytest.raises(ValueError, match="0-d"):
        _cuda.relu_forward(DA.zeros(()))
    with pytest.raises(TypeError, match="y: expected dtype float32"):
        _cuda.relu_backward(a, DA.zeros((3, 5), "int32"))
    with pytest.raises(ValueError, match="x: expected 4-d"):
        _cuda.nchw_to_nhwc(a)
    with pytest.raises(ValueError, match="out: expected a writeable"):
        _cuda.relu_forward(a, out=_readonly(DA.zeros((3, 5))))


# ------------------------------------------------------------------ pooling

POOL_SHAPES = [(1, 3, 7, 7, 3, 2, 1), (2, 5, 9, 9, 3, 1, 1), (1, 17, 9, 9, 2, 2, 0),
               (2, 3, 7, 7, 1, 1, 0), (1, 5, 8, 8, 3, 2, 0), (3, 16, 7, 9, 3, 3, 1),
               (8, 16, 32, 32, 3, 2, 1)]


@pytest.mark.parametrize("shape", POOL_SHAPES, ids=str)
def test_max_pool(rng, shape):
    N, C, H, W, k, s, p = shape
    x = rng.integers(-2, 3, size=(N, C, H, W)).astype(np.float32)  # many ties
    y, am = _cuda.max_pool2d_forward(dev(nhwc(x)), k, s, p)
    assert_close(nchw(host(y)), ref.max_pool2d_forward(x, k, s, p), **FORWARD, name="y")
    assert am.dtype == np.int32
    np.testing.assert_array_equal(nchw(host(am)), ref.max_pool2d_argmax(x, k, s, p))
    dy = f32(rng, *nchw(host(y)).shape)
    dx = _cuda.max_pool2d_backward(dev(nhwc(dy)), am, H, W, k, s, p)
    assert_close(nchw(host(dx)), ref.max_pool2d_backward(dy, x, k, s, p), **BACKWARD, name="dx")


def test_max_pool_nan_propagates():
    # As PyTorch and the CPU kernels: a NaN in the window is the maximum, its position the argmax.
    x = np.arange(1 * 19 * 5 * 5, dtype=np.float32).reshape(1, 19, 5, 5)
    x[0, :, 1, 1] = np.nan
    y, am = _cuda.max_pool2d_forward(dev(nhwc(x)), 3, 2, 1)
    y, am = nchw(host(y)), nchw(host(am))
    assert np.all(np.isnan(y[0, :, 0, 0])) and np.all(np.isnan(y[0, :, 1, 1]))
    assert np.all(am[0, :, 0, 0] == 6) and np.all(am[0, :, 1, 1] == 6)
    assert not np.any(np.isnan(y[0, :, 2, 2]))


@pytest.mark.parametrize("shape", [(1, 3, 7, 7), (2, 5, 1, 1), (8, 64, 8, 8)], ids=str)
def test_global_avg_pool(rng, shape):
    N, C, H, W = shape
    x = f32(rng, *shape)
    y = host(_cuda.global_avg_pool_forward(dev(nhwc(x))))
    assert_close(y, ref.global_avg_pool_forward(x), **FORWARD, name="y")
    dy = f32(rng, N, C)
    dx = host(_cuda.global_avg_pool_backward(dev(dy), H, W))
    assert_close(nchw(dx), ref.global_avg_pool_backward(dy, x.shape), **FORWARD, name="dx")


def test_pool_bad_inputs(rng):
    x = dev(f32(rng, 1, 7, 7, 3))
    with pytest.raises(ValueError, match=r"^pad\b"):
        _cuda.max_pool2d_forward(x, 3, 2, 2)
    with pytest.raises(ValueError, match=r"^stride\b"):
        _cuda.max_pool2d_forward(x, 3, 0, 1)
    with pytest.raises(ValueError, match="k: window"):
        _cuda.max_pool2d_forward(dev(f32(rng, 1, 2, 2, 3)), 5, 1, 1)
    y, am = _cuda.max_pool2d_forward(x, 3, 2, 1)
    with pytest.raises(TypeError, match="argmax: expected dtype int32"):
        _cuda.max_pool2d_backward(y, DA.zeros(am.shape, "int64"), 7, 7, 3, 2, 1)
    with pytest.raises(ValueError, match="dy: expected shape"):
        _cuda.max_pool2d_backward(y, am, 9, 9, 3, 2, 1)
    with pytest.raises(ValueError, match=r"^H\b"):
        _cuda.global_avg_pool_backward(dev(f32(rng, 1, 3)), 0, 7)


# ------------------------------------------------------------------ linear

@pytest.mark.parametrize("shape", [(1, 5, 3), (7, 13, 10), (8, 64, 10), (2048, 64, 10)], ids=str)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_linear(rng, shape, bias):
    N, F, O = shape
    x, w = f32(rng, N, F), f32(rng, O, F, scale=F ** -0.5)
    b = f32(rng, O) if bias else None
    y = host(_cuda.linear_forward(dev(x), dev(w), dev(b) if bias else None))
    assert_close(y, ref.linear_forward(x, w, b), **FORWARD, name="y")
    dy = f32(rng, N, O)
    dx, dw, db = _cuda.linear_backward(dev(dy), dev(x), dev(w), True, bias)
    dx_ref, dw_ref, db_ref = ref.linear_backward(dy, x, w)
    assert_close(host(dx), dx_ref, **BACKWARD, name="dx")
    assert_close(host(dw), dw_ref, **BACKWARD, name="dw")
    if bias:
        assert_close(host(db), db_ref, **BACKWARD, name="db")
    else:
        assert db is None
    dx2, _, _ = _cuda.linear_backward(dev(dy), dev(x), dev(w), False, False)
    assert dx2 is None


def test_linear_bad_inputs(rng):
    x, w = dev(f32(rng, 4, 5)), dev(f32(rng, 3, 5))
    with pytest.raises(ValueError, match="w: expected shape"):
        _cuda.linear_forward(x, dev(f32(rng, 3, 6)))
    with pytest.raises(ValueError, match="b: expected shape"):
        _cuda.linear_forward(x, w, dev(f32(rng, 4)))
    with pytest.raises(ValueError, match="x: expected shape"):
        _cuda.linear_backward(dev(f32(rng, 4, 3)), dev(f32(rng, 5, 5)), w)


# ------------------------------------------------------------------ loss

@pytest.mark.parametrize("shape", [(1, 1), (1, 10), (7, 3), (128, 10), (5, 1000)], ids=str)
@pytest.mark.parametrize("ls", [0.0, 0.1])
@pytest.mark.parametrize("label_dtype", [np.int32, np.int64])
def test_cross_entropy(rng, shape, ls, label_dtype):
    N, K = shape
    z = f32(rng, N, K, scale=3.0)
    labels = rng.integers(0, K, size=N).astype(label_dtype)
    loss, d = _cuda.softmax_cross_entropy(dev(z), dev(labels), ls)
    assert loss.shape == () and loss.dtype == np.float32
    assert_close(host(loss), ref.cross_entropy_forward(z, labels, ls), **FORWARD, name="loss")
    assert_close(host(d), ref.cross_entropy_backward(z, labels, ls), **FORWARD, name="dlogits")


def test_cross_entropy_bad_labels(rng):
    z = dev(f32(rng, 4, 3))
    with pytest.raises(ValueError, match=r"labels\[2\]"):
        _cuda.softmax_cross_entropy(z, dev(np.array([0, 1, 3, -1], np.int64)))
    loss, d = _cuda.softmax_cross_entropy(z, dev(np.array([0, 1, 3, 0], np.int32)), 0.0, None,
                                          None, False)
    assert np.isnan(float(loss)) and np.isnan(host(d)[2]).all() and np.isfinite(host(d)[0]).all()
    with pytest.raises(TypeError, match="labels: expected dtype int32 or int64"):
        _cuda.softmax_cross_entropy(z, DA.zeros((4,)))
    with pytest.raises(ValueError, match="labels: expected shape"):
        _cuda.softmax_cross_entropy(z, DA.zeros((5,), "int64"))
    with pytest.raises(ValueError, match=r"^label_smoothing\b"):
        _cuda.softmax_cross_entropy(z, DA.zeros((4,), "int64"), 1.0)


# ------------------------------------------------------------------ optimizers

@pytest.mark.parametrize("momentum,nesterov,wd", [(0.0, False, 0.0), (0.9, False, 5e-4),
                                                  (0.9, True, 5e-4), (0.5, False, 0.0)])
def test_sgd(rng, momentum, nesterov, wd):
    p, g, buf = f32(rng, 3, 5, 7), f32(rng, 3, 5, 7), f32(rng, 3, 5, 7)
    pd, bd = dev(p), dev(buf)
    _cuda.sgd_step(pd, dev(g), bd if momentum else None, 0.1, momentum, wd, nesterov)
    p_ref, b_ref = ref.sgd_step(p, g, buf, 0.1, momentum, wd, nesterov)
    assert_close(host(pd), p_ref, **FORWARD, name="param")
    if momentum:
        assert_close(host(bd), b_ref, **FORWARD, name="momentum_buf")


@pytest.mark.parametrize("step", [1, 10])
@pytest.mark.parametrize("decoupled,wd", [(False, 0.0), (False, 1e-2), (True, 1e-2)])
def test_adam(rng, step, decoupled, wd):
    p, g = f32(rng, 17, 3), f32(rng, 17, 3)
    m, v = f32(rng, 17, 3, scale=0.1), np.abs(f32(rng, 17, 3, scale=0.1))
    pd, md, vd = dev(p), dev(m), dev(v)
    _cuda.adam_step(pd, dev(g), md, vd, step, 1e-3, 0.9, 0.999, 1e-8, wd, decoupled)
    p_ref, m_ref, v_ref = ref.adam_step(p, g, m, v, step, 1e-3, 0.9, 0.999, 1e-8, wd, decoupled)
    assert_close(host(pd), p_ref, **FORWARD, name="param")
    assert_close(host(md), m_ref, **FORWARD, name="m")
    assert_close(host(vd), v_ref, **FORWARD, name="v")


def test_optim_hyperparameters_on_the_device(rng):
    # lr and Adam's step read from device memory (what a replayed CUDA graph uses).
    p, g = f32(rng, 5, 3), f32(rng, 5, 3)
    m, v = f32(rng, 5, 3, scale=0.1), np.abs(f32(rng, 5, 3, scale=0.1))
    pd, md, vd = dev(p), dev(m), dev(v)
    lr, step = dev(np.array(1e-3, np.float32)), dev(np.array([7], np.int64))
    _cuda.adam_step(pd, dev(g), md, vd, step, lr, 0.9, 0.999, 1e-8, 1e-2, True)
    p_ref, m_ref, v_ref = ref.adam_step(p, g, m, v, 7, np.float32(1e-3), 0.9, 0.999, 1e-8, 1e-2, True)
    assert_close(host(pd), p_ref, **FORWARD, name="param")
    pd, bd = dev(p), DA.zeros(p.shape)
    _cuda.sgd_step(pd, dev(g), bd, dev(np.array([0.1], np.float32)), 0.9, 5e-4, True)
    p_ref, _ = ref.sgd_step(p, g, np.zeros_like(p), np.float32(0.1), 0.9, 5e-4, True)
    assert_close(host(pd), p_ref, **FORWARD, name="param (sgd)")
    with pytest.raises(ValueError, match="lr: an array must hold one value"):
        _cuda.sgd_step(pd, dev(g), None, DA.zeros((2,)))
    with pytest.raises(TypeError, match="step: expected dtype int64"):
        _cuda.adam_step(pd, dev(g), md, vd, DA.zeros((1,), "int32"), 1e-3)
    with pytest.raises(TypeError, match="step: expected an int"):
        _cuda.adam_step(pd, dev(g), md, vd, 1.5, 1e-3)


def test_optim_bad_inputs(rng):
    p = dev(f32(rng, 4))
    with pytest.raises(ValueError, match="momentum_buf: required"):
        _cuda.sgd_step(p, dev(f32(rng, 4)), None, 0.1, 0.9)
    with pytest.raises(ValueError, match="grad: expected shape"):
        _cuda.sgd_step(p, dev(f32(rng, 5)), None, 0.1)
    with pytest.raises(ValueError, match="param: expected a writeable"):
        _cuda.sgd_step(_readonly(p), dev(f32(rng, 4)), None, 0.1)
    with pytest.raises(ValueError, match=r"^step\b"):
        _cuda.adam_step(p, dev(f32(rng, 4)), DA.zeros((4,)), DA.zeros((4,)), 0, 1e-3)
    with pytest.raises(ValueError, match="m: must not share memory with param"):
        _cuda.adam_step(p, dev(f32(rng, 4)), p, DA.zeros((4,)), 1, 1e-3)
    with pytest.raises(ValueError, match=r"^nesterov\b"):
        _cuda.sgd_step(p, dev(f32(rng, 4)), None, 0.1, 0.0, 0.0, True)
    with pytest.raises(ValueError, match=r"^lr\b"):
        _cuda.sgd_step(p, dev(f32(rng, 4)), None, float("nan"))


# ------------------------------------------------------------------ interop and memory

def test_cuda_array_interface_round_trip(rng):
    a = f32(rng, 2, 3, 4)
    d = dev(a)
    cai = d.__cuda_array_interface__
    assert cai["version"] == 3 and cai["typestr"] == "<f4" and cai["shape"] == (2, 3, 4)
    assert cai["data"] == (d.ptr, False) and cai["stream"] != 0
    w = DA(_CAI(d))  # zero-copy wrap of foreign memory
    assert w.ptr == d.ptr and w.shape == d.shape
    np.testing.assert_array_equal(host(w), a)
    _cuda.relu_forward(d, out=w)  # writes through the wrapper land in d
    np.testing.assert_array_equal(host(d), np.maximum(a, 0))
    with pytest.raises(ValueError, match="C-contiguous"):
        DA(_CAI(d, strides=(4, 8, 24)))
    with pytest.raises(TypeError, match="__cuda_array_interface__"):
        DA(np.zeros(3, np.float32))


def test_dlpack_capsule():
    import ctypes

    d = DA.zeros((2, 3))
    assert d.__dlpack_device__() == (2, d.device)
    cap = d.__dlpack__(stream=1)
    get_name = ctypes.pythonapi.PyCapsule_GetName
    get_name.restype, get_name.argtypes = ctypes.c_char_p, [ctypes.py_object]
    assert get_name(cap) == b"dltensor"
    with pytest.raises(BufferError):
        d.__dlpack__(copy=True)
    del cap  # unconsumed capsule: its destructor frees the export


def test_torch_interop(rng):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA support in this environment")
    a = f32(rng, 3, 4)
    d = dev(a)
    t = torch.from_dlpack(d)
    assert t.is_cuda and t.data_ptr() == d.ptr
    np.testing.assert_array_equal(t.cpu().numpy(), a)
    t.mul_(2)
    np.testing.assert_array_equal(host(d), 2 * a)
    t2 = torch.as_tensor(d, device="cuda")  # __cuda_array_interface__
    assert t2.data_ptr() == d.ptr
    del d
    np.testing.assert_array_equal(t.cpu().numpy(), 2 * a)  # the export keeps memory alive
    u = torch.arange(12, dtype=torch.float32, device="cuda").reshape(3, 4)
    w = DA(u)
    assert w.ptr == u.data_ptr()
    np.testing.assert_array_equal(host(_cuda.relu_forward(w)), np.arange(12, dtype=np.float32).reshape(3, 4))
    li = DA(torch.arange(4, device="cuda"))
    assert li.dtype == np.int64


def test_memory_is_stable_over_repeated_calls(rng):
    x, w = dev(f32(rng, 8, 16, 16, 32)), dev(f32(rng, 3, 3, 32, 32))
    g, b, rm, rv = (dev(np.ones(32, np.float32)), DA.zeros((32,)), DA.zeros((32,)),
                    dev(np.ones(32, np.float32)))

    def step():
        y = _cuda.conv2d_forward(x, w, None, 1, 1)
        z, mean, rstd = _cuda.batch_norm_forward_train(y, g, b, rm, rv, relu=True)
        dz, _, _ = _cuda.batch_norm_backward(z, y, g, mean, rstd, beta=b, relu=True)
        _cuda.conv2d_backward_data(dz, w, 16, 16, 1, 1)
        _cuda.conv2d_backward_weight(x, dz, 3, 3, 1, 1)

    step()
    _cuda.synchronize()
    free0, _ = _cuda.mem_info()
    for _ in range(100):
        step()
    _cuda.synchronize()
    free1, _ = _cuda.mem_info()
    # Stream-ordered scratch stays in the pool after the first call; nothing may accumulate.
    assert free0 - free1 < 8 << 20, f"device memory grew by {(free0 - free1) >> 20} MiB"


def test_graph_capture_replays_a_training_step(rng):
    # conv -> BN+ReLU -> BN backward -> conv backward -> SGD, captured once and replayed: the
    # replay must equal running the same ops eagerly from the same starting state.
    x = dev(f32(rng, 4, 8, 8, 16))
    w0 = f32(rng, 3, 3, 16, 16, scale=1 / 12)
    g, b = dev(np.ones(16, np.float32)), DA.zeros((16,))
    rm, rv = DA.zeros((16,)), dev(np.ones(16, np.float32))
    y, z, dz, dy = (DA.zeros((4, 8, 8, 16)) for _ in range(4))
    dw = DA.zeros((3, 3, 16, 16))
    mean, rstd, dg, db = (DA.zeros((16,)) for _ in range(4))

    def step(w):
        _cuda.conv2d_forward(x, w, None, 1, 1, out=y)
        _cuda.batch_norm_forward_train(y, g, b, rm, rv, 0.1, 1e-5, True, z, mean_out=mean,
                                       rstd_out=rstd)
        _cuda.batch_norm_backward(z, y, g, mean, rstd, beta=b, relu=True, out=dz, dgamma_out=dg,
                                  dbeta_out=db)
        _cuda.conv2d_backward_data(dz, w, 8, 8, 1, 1, out=dy)
        _cuda.conv2d_backward_weight(x, dz, 3, 3, 1, 1, False, dw)
        _cuda.sgd_step(w, dw, None, 0.01)

    old = _cuda.current_stream()
    stream = _cuda.create_stream()
    _cuda.set_stream(stream)
    try:
        w_eager, w_graph = dev(w0), dev(w0)
        for _ in range(3):
            step(w_eager)
        rm.zero_()
        rv.copy_from_numpy(np.ones(16, np.float32))
        graph = _cuda.CudaGraph()
        graph.begin()
        step(w_graph)
        graph.end()
        assert graph.num_nodes > 0
        for _ in range(3):
            graph.replay()
        _cuda.synchronize()
        np.testing.assert_array_equal(host(w_graph), host(w_eager))
    finally:
        _cuda.set_stream(old)
        _cuda.destroy_stream(stream)


def test_graph_capture_needs_a_created_stream():
    old = _cuda.current_stream()
    _cuda.set_stream(0)
    try:
        with pytest.raises(ValueError, match="create_stream"):
            _cuda.CudaGraph().begin()
        with pytest.raises(ValueError, match="nothing captured"):
            _cuda.CudaGraph().replay()
    finally:
        _cuda.set_stream(old)


def test_out_of_device_memory_is_a_memory_error_and_leaves_the_module_usable():
    # README "Hardening": refused before allocating, naming the argument (the shape).
    with pytest.raises(MemoryError, match=r"^shape: an array of shape \(4398046511104,\) needs"):
        DA.empty((1 << 42,))  # 16 TiB
    assert host(_cuda.relu_forward(dev(np.ones(3, np.float32)))).sum() == 3  # still usable
