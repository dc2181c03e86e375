"""ONNX export of zoo models with the ``onnx`` package (no torch; optional extra:
``pip install "resnet_cpp[onnx]"``).

The graph is the model's eval-mode forward after ``model.fuse()``: every BN that follows a
convolution is folded into it (the conv gets a bias), the other BNs (pre-activation units)
become ``BatchNormalization`` nodes with the running statistics. Operators: Conv, Relu,
Add, BatchNormalization, MaxPool, Slice and Pad (option-A shortcut), GlobalAveragePool,
Flatten, Gemm, all in opset ``OPSET`` = 17 (onnxruntime 1.12 and later run it).

Input ``input``: float32 NCHW (batch, C, H, W), raw pixels already normalized as in
training (``meta["normalization"]``); the batch dimension is dynamic, and so are H and W
unless ``image_size`` fixes them. Output ``logits``: float32 (batch, num_classes).
``meta`` (model config, class names, normalization, preprocessing) is stored as JSON in
the model's ``metadata_props`` under ``resnet_cpp``.
"""
from __future__ import annotations

import os
from typing import Any, Mapping

import numpy as np

from .. import models
from ..models.blocks import BasicBlock, Bottleneck, PreActBottleneck, ShortcutA
from ..models.fuse import FoldedBatchNorm
from ..nn import BatchNorm2d, Conv2d, MaxPool2d, Sequential
from .weights import META_KEY, meta_json

__all__ = ["export_onnx", "OPSET"]

OPSET = 17
_INT64_MAX = np.iinfo(np.int64).max


def _onnx():
    try:
        import onnx
    except ImportError:
        raise ImportError('ONNX export needs the onnx package: '
                          'pip install "resnet_cpp[onnx]"') from None
    return onnx


class _Graph:
    """Nodes and initializers of the graph being built; names follow the module paths."""

    def __init__(self, onnx):
        self.onnx = onnx
        self.nodes: list = []
        self.inits: list = []

    def const(self, name: str, array: np.ndarray) -> str:
        self.inits.append(self.onnx.numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def op(self, op_type: str, inputs: list, name: str, **attrs) -> str:
        self.nodes.append(self.onnx.helper.make_node(op_type, inputs, [name], name=name,
                                                     **attrs))
        return name

    def conv(self, m: Conv2d, x: str, name: str) -> str:
        inputs = [x, self.const(f"{name}.weight", m.weight.host())]
        if m.bias is not None:
            inputs.append(self.const(f"{name}.bias", m.bias.data))
        k, s, p = m.kernel_size, m.stride, m.padding
        return self.op("Conv", inputs, name, kernel_shape=[k, k], strides=[s, s],
                       pads=[p, p, p, p])

    def norm(self, m, x: str, name: str, residual: str | None = None) -> str:
        """A BatchNorm2d or what fuse() left of one: relu?(bn?(x) + residual?)."""
        if isinstance(m, BatchNorm2d):
            x = self.op("BatchNormalization",
                        [x] + [self.const(f"{name}.{k}", v) for k, v in (
                            ("weight", m.weight.data), ("bias", m.bias.data),
                            ("running_mean", m.running_mean), ("running_var", m.running_var))],
                        name, epsilon=m.eps)
        elif not isinstance(m, FoldedBatchNorm):
            raise TypeError(f"{name}: expected a BatchNorm2d, got {type(m).__name__}")
        if residual is not None:
            x = self.op("Add", [x, residual], f"{name}.add")
        return self.op("Relu", [x], f"{name}.relu") if m.relu else x

    def module(self, m, x: str, name: str) -> str:
        """Emit module ``m`` (called ``name``) applied to ``x``; returns its output."""
        if isinstance(m, Conv2d):
            return self.conv(m, x, name)
        if isinstance(m, (BatchNorm2d, FoldedBatchNorm)):
            return self.norm(m, x, name)
        if isinstance(m, MaxPool2d):
            k, s, p = m.kernel_size, m.stride, m.padding
            return self.op("MaxPool", [x], name, kernel_shape=[k, k], strides=[s, s],
                           pads=[p, p, p, p])
        if isinstance(m, Sequential):
            for i, child in enumerate(m):
                x = self.module(child, x, f"{name}.{i}")
            return x
        if isinstance(m, ShortcutA):
            return self.shortcut_a(m, x, name)
        if isinstance(m, BasicBlock):
            h = self.conv(m.conv2, self.norm(m.bn1, self.conv(m.conv1, x, f"{name}.conv1"),
                                             f"{name}.bn1"), f"{name}.conv2")
            return self.norm(m.bn2, h, f"{name}.bn2", residual=self.shortcut(m, x, name))
        if isinstance(m, Bottleneck):
            h = self.norm(m.bn1, self.conv(m.conv1, x, f"{name}.conv1"), f"{name}.bn1")
            h = self.norm(m.bn2, self.conv(m.conv2, h, f"{name}.conv2"), f"{name}.bn2")
            h = self.conv(m.conv3, h, f"{name}.conv3")
            return self.norm(m.bn3, h, f"{name}.bn3", residual=self.shortcut(m, x, name))
        if isinstance(m, PreActBottleneck):
            a = x if m.preact == "none" else self.norm(m.bn1, x, f"{name}.bn1")
            h = self.norm(m.bn2, self.conv(m.conv1, a, f"{name}.conv1"), f"{name}.bn2")
            h = self.norm(m.bn3, self.conv(m.conv2, h, f"{name}.conv2"), f"{name}.bn3")
            h = self.conv(m.conv3, h, f"{name}.conv3")
            src = a if m.preact == "both" else x
            s = self.conv(m.downsample, src, f"{name}.downsample") if m.project else src
            return self.op("Add", [h, s], f"{name}.add")
        raise TypeError(f"{name}: no ONNX export for {type(m).__name__}")

    def shortcut(self, block, x: str, name: str) -> str:
        """The shortcut of a v1 block: identity, option A or a projection."""
        if hasattr(block, "shortcut"):
            return self.shortcut_a(block.shortcut, x, f"{name}.shortcut")
        if hasattr(block, "downsample"):
            return self.module(block.downsample, x, f"{name}.downsample")
        return x

    def shortcut_a(self, m: ShortcutA, x: str, name: str) -> str:
        """x[:, :, ::s, ::s] zero-padded on channels, (K-C)//2 below and the rest above."""
        s = m.stride
        sub = self.op("Slice", [x, self.const(f"{name}.starts", np.zeros(2, np.int64)),
                                self.const(f"{name}.ends", np.full(2, _INT64_MAX, np.int64)),
                                self.const(f"{name}.axes", np.array([2, 3], np.int64)),
                                self.const(f"{name}.steps", np.array([s, s], np.int64))],
                      f"{name}.subsample")
        lo = (m.planes - m.in_planes) // 2
        hi = m.planes - m.in_planes - lo
        pads = np.array([0, lo, 0, 0, 0, hi, 0, 0], np.int64)
        return self.op("Pad", [sub, self.const(f"{name}.pads", pads)], name, mode="constant")


def export_onnx(model, path: str | os.PathLike, *, image_size: tuple | None = None,
                meta: Mapping[str, Any] | None = None, opset: int = OPSET) -> str:
    """Write ``model`` (any zoo model) as an ONNX file at ``path``; returns the path.

    image_size: (H, W) to fix the spatial input size, or None for dynamic H and W.
    meta: stored as JSON in ``metadata_props["resnet_cpp"]`` (e.g. ``Weights.meta``).
    The graph is checked with ``onnx.checker`` before it is written.
    """
    onnx = _onnx()
    if not isinstance(model, models.ResNetBase):
        raise TypeError(f"model: expected a resnet_cpp zoo model, got {type(model).__name__}")
    if opset < 11:
        raise ValueError(f"opset must be >= 11 (Pad takes its pads as an input), got {opset}")
    fused = model.fuse()
    g = _Graph(onnx)
    x = "input"
    for name in fused._trunk:
        x = g.module(getattr(fused, name), x, name)
    x = g.op("GlobalAveragePool", [x], "avgpool")
    x = g.op("Flatten", [x], "flatten", axis=1)
    fc = fused.fc
    inputs = [x, g.const("fc.weight", fc.weight.data)]
    if fc.bias is not None:
        inputs.append(g.const("fc.bias", fc.bias.data))
    g.op("Gemm", inputs, "logits", transB=1)

    h, w = (int(v) for v in image_size) if image_size is not None else ("height", "width")
    f32 = onnx.TensorProto.FLOAT
    graph = onnx.helper.make_graph(
        g.nodes, type(model).__name__,
        [onnx.helper.make_tensor_value_info("input", f32, ["batch", model.in_channels, h, w])],
        [onnx.helper.make_tensor_value_info("logits", f32, ["batch", model.num_classes])],
        initializer=g.inits)
    proto = onnx.helper.make_model_gen_version(
        graph, opset_imports=[onnx.helper.make_opsetid("", int(opset))],
        producer_name="resnet_cpp", doc_string="resnet_cpp zoo model, BN folded for inference")
    onnx.helper.set_model_props(proto, {META_KEY: meta_json(meta or {})})
    onnx.checker.check_model(proto)
    path = os.fspath(path)
    onnx.save(proto, path)
    return path
