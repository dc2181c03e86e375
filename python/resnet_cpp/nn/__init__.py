"""Modules with explicit backward over resnet_cpp.functional (PyTorch-like names, no autograd).

    import resnet_cpp.nn as nn
    layer = nn.Conv2d(3, 16, 3, padding=1)
    layer.zero_grad(); y = layer(x); dx = layer.backward(dy)   # adds into layer.weight.grad

The contract (one backward per forward, shared modules, threads, stored layouts) is in
``resnet_cpp.nn.module``.
"""
from __future__ import annotations

from . import init
from .layers import BatchNorm2d, Conv2d, Flatten, GlobalAvgPool2d, Linear, MaxPool2d, ReLU
from .loss import CrossEntropyLoss
from .module import IncompatibleKeys, Module, Parameter, Sequential

__all__ = [
    "BatchNorm2d",
    "Conv2d",
    "CrossEntropyLoss",
    "Flatten",
    "GlobalAvgPool2d",
    "IncompatibleKeys",
    "Linear",
    "MaxPool2d",
    "Module",
    "Parameter",
    "ReLU",
    "Sequential",
    "init",
]
