"""A residual block composed from the functional ops equals the same composition of the
reference ops, forward and full backward, on every ISA path and thread count, under every
convolution setting.

Block (ResNet v1 basic block, identity shortcut):
    a = relu(bn1(conv1(x)));  out = relu(bn2(conv2(a)) + x)
"""
import numpy as np
import pytest
import reference as ref
from tolerance import BACKWARD, FORWARD, assert_close

import resnet_cpp.functional as F


def params(rng, C):
    w1 = (rng.standard_normal((C, C, 3, 3)) * 0.3).astype(np.float32)
    w2 = (rng.standard_normal((C, C, 3, 3)) * 0.3).astype(np.float32)
    g1, g2 = rng.uniform(0.5, 1.5, (2, C)).astype(np.float32)
    b1, b2 = (rng.standard_normal((2, C)) * 0.1).astype(np.float32)
    return w1, w2, g1, b1, g2, b2


def ours(x, dout, w1, w2, g1, b1, g2, b2, layout):
    """Forward and backward through resnet_cpp.functional; returns out and every gradient."""
    C = w1.shape[0]
    stats = [np.zeros(C, np.float32), np.ones(C, np.float32), np.zeros(C, np.float32),
             np.ones(C, np.float32)]
    y1, c1 = F.conv2d(x, w1, None, 1, 1, layout=layout)
    a, cb1 = F.batch_norm2d(y1, g1, b1, stats[0], stats[1], relu=True, layout=layout)
    y2, c2 = F.conv2d(a, w2, None, 1, 1, layout=layout)
    z, cb2 = F.batch_norm2d(y2, g2, b2, stats[2], stats[3], layout=layout)
    out, cadd = F.add_relu(z, x)
    d = F.add_relu_backward(dout, cadd)          # reaches both z and the shortcut x
    dy2, dg2, db2 = F.batch_norm2d_backward(d, cb2)
    da, dw2, _ = F.conv2d_backward(dy2, c2)
    dy1, dg1, db1 = F.batch_norm2d_backward(da, cb1)
    dx_main, dw1, _ = F.conv2d_backward(dy1, c1)
    dx = F.add(dx_main, d)
    return out, dict(dx=dx, dw1=dw1, dw2=dw2, dg1=dg1, db1=db1, dg2=dg2, db2=db2), stats


def reference(x, dout, w1, w2, g1, b1, g2, b2):
    y1 = ref.conv2d_forward(x, w1, None, 1, 1)
    h1, m1, r1 = ref.batch_norm_train_forward(y1, g1, b1)
    a = ref.relu_forward(h1)
    y2 = ref.conv2d_forward(a, w2, None, 1, 1)
    z, m2, r2 = ref.batch_norm_train_forward(y2, g2, b2)
    out = ref.add_relu_forward(z, x)
    d = ref.add_relu_backward(dout, out)
    dy2, dg2, db2 = ref.batch_norm_backward(d, y2, g2, m2, r2)
    da, dw2, _ = ref.conv2d_backward(dy2, a, w2, 1, 1)
    dh1 = ref.relu_backward(da, a)
    dy1, dg1, db1 = ref.batch_norm_backward(dh1, y1, g1, m1, r1)
    dx_main, dw1, _ = ref.conv2d_backward(dy1, x, w1, 1, 1)
    rm1, rv1 = ref.batch_norm_running_update(np.zeros(len(g1)), np.ones(len(g1)), y1)
    return out, dict(dx=dx_main + d, dw1=dw1, dw2=dw2, dg1=dg1, db1=db1, dg2=dg2, db2=db2), (rm1, rv1)


@pytest.mark.parametrize("N,C,H", [(2, 5, 7), (4, 16, 8)])
def test_basic_block_matches_reference(isa_threads, every_conv_algorithm, rng, N, C, H):
    x = rng.standard_normal((N, C, H, H)).astype(np.float32)
    dout = rng.standard_normal((N, C, H, H)).astype(np.float32)
    p = params(rng, C)
    want_out, want, (rm1, rv1) = reference(x, dout, *p)
    for layout in ("NCHW", "NHWC"):
        to = (lambda a: a) if layout == "NCHW" else (lambda a: np.ascontiguousarray(a.transpose(0, 2, 3, 1)))
        back = (lambda a: a) if layout == "NCHW" else (lambda a: a.transpose(0, 3, 1, 2))
        out, got, stats = ours(to(x), to(dout), *p, layout=layout)
        assert_close(back(out), want_out, **FORWARD, name=f"{layout} out")
        assert_close(back(got.pop("dx")), want["dx"], **BACKWARD, name=f"{layout} dx")
        for k, v in got.items():
            assert_close(v, want[k], **BACKWARD, name=f"{layout} {k}")
        assert_close(stats[0], rm1, **FORWARD, name="running_mean")
        assert_close(stats[1], rv1, **FORWARD, name="running_var")
