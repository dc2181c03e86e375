"""The PyTorch twin of a zoo model: the same architecture as a ``torch.nn.Module``, with the
same ``state_dict`` keys and a copy of the weights, BN statistics and train/eval mode.

For cross-checks and side-by-side benchmarks (torch is an optional extra, imported only
here and only when called):

    >>> twin = rc.models.torch_twin(model)                  # float32, NCHW, same outputs
    >>> twin64 = rc.models.torch_twin(model, torch.float64)  # a float64 oracle

The twin is built by walking our module tree, so every family (CIFAR v1 A/B, pre-activation
v2 paper/keras, ImageNet basic/bottleneck) maps one to one; a module type it does not
know raises ``TypeError`` naming it.
"""
from __future__ import annotations

from ..nn import (BatchNorm2d, Conv2d, GlobalAvgPool2d, Linear, MaxPool2d, Module, ReLU,
                  Sequential)
from .base import ResNetBase
from .blocks import BasicBlock, Bottleneck, PreActBottleneck, ShortcutA

__all__ = ["torch_twin"]


def torch_twin(model: Module, dtype=None):
    """A ``torch.nn.Module`` computing what ``model`` computes, weights copied in ``dtype``
    (default ``torch.float32``), in the same train/eval mode."""
    import torch

    twin = _convert(model, torch)
    sd = {k: torch.from_numpy(v.copy()) for k, v in model.state_dict().items()}
    twin.load_state_dict(sd)
    twin.to(dtype or torch.float32)
    twin.train(model.training)
    return twin


def _convert(m: Module, torch):
    tnn = torch.nn
    classes = _classes(torch)
    if isinstance(m, Conv2d):
        return tnn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding,
                          bias=m.bias is not None)
    if isinstance(m, BatchNorm2d):
        return classes["BN"](m.num_features, m.eps, m.momentum, m.relu)
    if isinstance(m, Linear):
        return tnn.Linear(m.in_features, m.out_features, bias=m.bias is not None)
    if isinstance(m, MaxPool2d):
        return tnn.MaxPool2d(m.kernel_size, m.stride, m.padding)
    if isinstance(m, GlobalAvgPool2d):
        return tnn.AdaptiveAvgPool2d(1)
    if isinstance(m, ReLU):
        return tnn.ReLU()
    if isinstance(m, Sequential):
        return tnn.Sequential(*[_convert(c, torch) for c in m])
    if isinstance(m, ShortcutA):
        return classes["ShortcutA"](m.in_planes, m.planes, m.stride)
    for ours, key in ((BasicBlock, "Basic"), (Bottleneck, "Bottleneck"),
                      (PreActBottleneck, "PreAct"), (ResNetBase, "Net")):
        if isinstance(m, ours):
            t = classes[key](m)
            for name, child in m._modules.items():
                t.add_module(name, _convert(child, torch))
            return t
    raise TypeError(f"torch_twin: no PyTorch counterpart for {type(m).__name__}")


_CLASSES: dict = {}


def _classes(torch) -> dict:
    """The twin's module classes, defined once torch is imported."""
    if _CLASSES:
        return _CLASSES
    tnn, F = torch.nn, torch.nn.functional

    class BN(tnn.BatchNorm2d):
        """BatchNorm2d, then (optionally) + residual, then (optionally) ReLU."""

        def __init__(self, c, eps, momentum, relu):
            super().__init__(c, eps=eps, momentum=momentum)
            self.fused_relu = relu

        def forward(self, x, residual=None):
            y = super().forward(x)
            if residual is not None:
                y = y + residual
            return torch.relu(y) if self.fused_relu else y

    class ShortcutA(tnn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.lo, self.hi, self.stride = (cout - cin) // 2, cout - cin - (cout - cin) // 2, stride

        def forward(self, x):
            s = self.stride
            return F.pad(x[:, :, ::s, ::s], (0, 0, 0, 0, self.lo, self.hi))

    class Basic(tnn.Module):
        def __init__(self, ours):
            super().__init__()
            self.kind = ours._kind

        def forward(self, x):
            h = self.conv2(self.bn1(self.conv1(x)))
            s = {"identity": lambda: x, "A": lambda: self.shortcut(x),
                 "B": lambda: self.downsample(x)}[self.kind]()
            return self.bn2(h, residual=s)

    class Bottleneck(tnn.Module):
        def __init__(self, ours):
            super().__init__()
            self.project = ours._project

        def forward(self, x):
            h = self.conv3(self.bn2(self.conv2(self.bn1(self.conv1(x)))))
            return self.bn3(h, residual=self.downsample(x) if self.project else x)

    class PreAct(tnn.Module):
        def __init__(self, ours):
            super().__init__()
            self.preact, self.project = ours.preact, ours.project

        def forward(self, x):
            a = x if self.preact == "none" else self.bn1(x)
            h = self.conv3(self.bn3(self.conv2(self.bn2(self.conv1(a)))))
            src = a if self.preact == "both" else x
            return h + (self.downsample(src) if self.project else src)

    class Net(tnn.Module):
        def __init__(self, ours):
            super().__init__()
            self.trunk = ours._trunk

        def forward(self, x):
            for name in self.trunk:
                x = getattr(self, name)(x)
            return self.fc(torch.flatten(self.avgpool(x), 1))

    _CLASSES.update(BN=BN, ShortcutA=ShortcutA, Basic=Basic, Bottleneck=Bottleneck,
                    PreAct=PreAct, Net=Net)
    return _CLASSES
