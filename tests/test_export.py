"""BN folding (model.fuse()) and ONNX export of every zoo model family, checked against our
own eval-mode forward; the ONNX files run in onnxruntime."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from tolerance import FORWARD, assert_close

import resnet_cpp as rc
from resnet_cpp.models.fuse import FoldedBatchNorm, fuse

# Every family: v1 with shortcut A and B, v2 with both presets, ImageNet basic and
# bottleneck blocks (narrow widths: the graph is the same at full width).
FAMILIES = [
    ("resnet20", dict(shortcut="A", widths=(4, 8, 16)), (3, 32, 32)),
    ("resnet20", dict(shortcut="B", widths=(4, 8, 16), in_channels=1), (1, 28, 28)),
    ("resnet29", dict(version=2, width="paper"), (3, 16, 16)),
    ("resnet29", dict(version=2, width="keras"), (3, 16, 16)),
    ("resnet18", dict(widths=(8, 8, 16, 16)), (3, 64, 64)),
    ("resnet50", dict(widths=(4, 4, 8, 8)), (3, 48, 48)),
]
IDS = ["v1-A", "v1-B-gray", "v2-paper", "v2-keras", "imagenet-basic", "imagenet-bottleneck"]


def _trained_looking(name, kw, rng):
    """A model whose BN statistics and affine parameters are far from their defaults."""
    model = rc.models.create(name, num_classes=5, seed=0, **kw)
    for key, buf in model.named_buffers():
        if key.endswith("running_mean"):
            buf[...] = rng.normal(0, 0.2, buf.shape)
        elif key.endswith("running_var"):
            buf[...] = rng.uniform(0.5, 2.0, buf.shape)
    for _, p in model.named_parameters():
        if p.data.ndim == 1:
            p.data[...] += rng.normal(0, 0.2, p.shape).astype(np.float32)
    return model


@pytest.mark.parametrize("name,kw,shape", FAMILIES, ids=IDS)
def test_fuse_equals_the_eval_forward(name, kw, shape, rng):
    model = _trained_looking(name, kw, rng)
    x = rng.standard_normal((3, *shape)).astype(np.float32)
    want = model.eval()(x)
    model.train()
    fused = model.fuse()
    assert model.training and fused.training is False  # the original is left as it was
    # folding reorders float32 roundings: compare relative to the largest logit
    assert_close(fused(x), want, rtol=0, atol=FORWARD["rtol"] * np.abs(want).max(),
                 name="fused logits")
    assert_close(model.eval()(x), want, rtol=0, atol=0, name="original after fuse")
    folded = [m for m in fused.modules() if isinstance(m, FoldedBatchNorm)]
    bns = [m for m in model.modules() if isinstance(m, rc.nn.BatchNorm2d)]
    left = [m for m in fused.modules() if isinstance(m, rc.nn.BatchNorm2d)]
    # v1: every BN follows a conv; v2: each unit's first BN and the final one stay
    assert len(folded) + len(left) == len(bns) and len(folded) > len(left)
    assert (len(left) == 0) == (kw.get("version", 1) == 1)
    with pytest.raises(RuntimeError, match="inference-only"):
        fused.backward(np.ones((3, 5), np.float32))


def test_fuse_rejects_other_modules():
    with pytest.raises(TypeError, match=r"^model: expected a resnet_cpp zoo model"):
        fuse(rc.nn.Conv2d(1, 1, 3))


@pytest.mark.parametrize("name,kw,shape", FAMILIES, ids=IDS)
def test_onnx_runs_in_onnxruntime_like_our_eval_forward(name, kw, shape, rng, tmp_path):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    model = _trained_looking(name, kw, rng)
    meta = {"classes": list("abcde"), "normalization": {"mean": [0.5], "std": [0.2]}}
    path = rc.io.export_onnx(model, tmp_path / "m.onnx", meta=meta)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (inp,), (out,) = sess.get_inputs(), sess.get_outputs()
    assert (inp.name, inp.shape) == ("input", ["batch", shape[0], "height", "width"])
    assert (out.name, out.shape) == ("logits", ["batch", 5])
    props = sess.get_modelmeta().custom_metadata_map
    assert json.loads(props["resnet_cpp"]) == meta
    for n in (1, 3):  # dynamic batch
        x = rng.standard_normal((n, *shape)).astype(np.float32)
        want = model.eval()(x)
        got = sess.run(None, {"input": x})[0]
        # the bound: 1e-5 relative to the largest logit (folded BN rounds apart)
        assert_close(got, want, rtol=0, atol=1e-5 * np.abs(want).max(), name=f"batch {n}")


def test_onnx_fixed_size_opset_and_errors(tmp_path, monkeypatch):
    onnx = pytest.importorskip("onnx")
    model = rc.models.create("resnet20", widths=(4, 4, 4), seed=0)
    path = rc.io.export_onnx(model, tmp_path / "m.onnx", image_size=(32, 32))
    proto = onnx.load(path)
    assert proto.opset_import[0].version == rc.io.OPSET == 17
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", 3, 32, 32]
    ops = {n.op_type for n in proto.graph.node}
    assert "BatchNormalization" not in ops and {"Conv", "Slice", "Pad", "Gemm"} <= ops
    with pytest.raises(TypeError, match=r"^model: expected a resnet_cpp zoo model"):
        rc.io.export_onnx(rc.nn.Linear(2, 2), tmp_path / "x.onnx")
    with pytest.raises(ValueError, match=r"^opset must be >= 11"):
        rc.io.export_onnx(model, tmp_path / "x.onnx", opset=9)
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ImportError, match=r'pip install "resnet_cpp\[onnx\]"'):
        rc.io.export_onnx(model, tmp_path / "x.onnx")
