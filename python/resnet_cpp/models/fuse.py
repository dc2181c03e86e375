"""BN folding for inference: ``fuse(model)`` -> a copy where each BN follows no longer.

A BatchNorm in eval mode is a per-channel affine map, y = x * s + t with
s = gamma / sqrt(running_var + eps) and t = beta - running_mean * s. When it reads the
output of a convolution and nothing else does, it folds into that convolution:
w' = w * s (per output channel), b' = b * s + t. What the BN also did (the fused ReLU and
the residual join of a block) stays, in a parameter-free ``FoldedBatchNorm``. BNs that
do not follow a conv (the pre-activation units' first BN, v2's final BN) stay as they are.

The fused model is inference-only (eval mode, no backward); its logits equal the
original's eval-mode logits up to float32 rounding. ``resnet_cpp.io.export_onnx`` writes
the fused graph.
"""
from __future__ import annotations

import copy

import numpy as np

from .. import functional as F
from ..nn import BatchNorm2d, Conv2d, Module, Parameter
from .blocks import BasicBlock, Bottleneck, PreActBottleneck
from .cifar import CifarResNet
from .imagenet import ImageNetResNet
from .preact import PreActResNet

__all__ = ["FoldedBatchNorm", "fuse", "FOLDABLE"]

# (conv, the BN that reads only its output) per module type, as dotted attribute paths.
FOLDABLE = {
    CifarResNet: (("conv1", "bn1"),),
    ImageNetResNet: (("conv1", "bn1"),),
    PreActResNet: (("conv1", "bn1"),),  # Keras widths only (the paper's stem has no BN)
    BasicBlock: (("conv1", "bn1"), ("conv2", "bn2"), ("downsample.0", "downsample.1")),
    Bottleneck: (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3"),
                 ("downsample.0", "downsample.1")),
    PreActBottleneck: (("conv1", "bn2"), ("conv2", "bn3")),
}


class FoldedBatchNorm(Module):
    """What is left of a BN folded into its conv: relu?(x + residual?), no parameters.

    Called like the BatchNorm2d it replaces (``forward(x, residual=None)``); without ReLU
    and residual it returns x itself.
    """

    def __init__(self, relu: bool):
        super().__init__()
        self.relu = bool(relu)

    def extra_repr(self) -> str:
        return f"relu={self.relu}"

    def forward(self, x: np.ndarray, residual: np.ndarray = None) -> np.ndarray:
        if residual is not None:
            if self.relu:
                return F.add_relu(x, residual, out=self._buffer("y", x.shape))[0]
            return F.add(x, residual, out=self._buffer("y", x.shape))
        if self.relu:
            return F.relu(x, out=self._buffer("y", x.shape))[0]
        return x

    def backward(self, dy, **kwargs):
        raise RuntimeError("a fused model is inference-only: train the original, then fuse()")


def _get(module: Module, path: str):
    for part in path.split("."):
        module = getattr(module, part, None)
        if module is None:
            return None
    return module


def _set(module: Module, path: str, value: Module) -> None:
    *parents, last = path.split(".")
    for part in parents:
        module = getattr(module, part)
    setattr(module, last, value)


def _fold(conv: Conv2d, bn: BatchNorm2d) -> None:
    """conv.weight *= s, conv.bias = bias * s + t (float64 arithmetic, float32 result)."""
    s = bn.weight.data.astype(np.float64) / np.sqrt(bn.running_var.astype(np.float64) + bn.eps)
    t = bn.bias.data.astype(np.float64) - bn.running_mean.astype(np.float64) * s
    b = t if conv.bias is None else conv.bias.data.astype(np.float64) * s + t
    w = conv.weight.host().astype(np.float64) * s[:, None, None, None]  # (K, C, R, S)
    conv.weight.copy_(w.astype(np.float32))
    conv.bias = Parameter(b.astype(np.float32), decay=False)


def fuse(model: Module) -> Module:
    """A fused eval-mode copy of a zoo model (the model itself is left unchanged)."""
    if not any(isinstance(model, t) for t in (CifarResNet, ImageNetResNet, PreActResNet)):
        raise TypeError(f"model: expected a resnet_cpp zoo model, got {type(model).__name__}")
    fused = copy.deepcopy(model)
    for m in fused.modules():
        for conv_path, bn_path in FOLDABLE.get(type(m), ()):
            conv, bn = _get(m, conv_path), _get(m, bn_path)
            if isinstance(conv, Conv2d) and isinstance(bn, BatchNorm2d):
                _fold(conv, bn)
                _set(m, bn_path, FoldedBatchNorm(bn.relu))
    fused.bn_frozen = False
    return fused.eval()
