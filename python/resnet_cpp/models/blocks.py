"""Residual units shared by the model zoo; every tensor here is NHWC.

BasicBlock and Bottleneck are ResNet v1 (torchvision names: conv1, bn1, ..., downsample.0/1).
The BN that precedes a ReLU runs fused (``BatchNorm2d(relu=True)``); the last BN also takes
the shortcut as its residual, so BN + add + ReLU is one pass and the block keeps no separate
pre-add tensor. Backward is explicit: the gradient reaching the block output flows through
both branches and the two input gradients are summed (``dx = dx_main + dx_short``).
PreActBottleneck is the v2 unit (BN-ReLU-conv, plain add, no ReLU after it).

Memory: a backward overwrites in place every gradient array the block itself created once
it is consumed (``bn.backward(g, out=g)``), and the join's gradients go over the BN input
and output the forward left (``overwrite_forward``), never over the caller's dy.
"""
from __future__ import annotations

import numpy as np

from .. import functional as F
from ..nn import BatchNorm2d, Conv2d, Module, Sequential

__all__ = ["ShortcutA", "BasicBlock", "Bottleneck", "PreActBottleneck", "conv", "bn"]


def conv(cin: int, cout: int, k: int, stride: int = 1, bias: bool = False) -> Conv2d:
    """k x k NHWC conv with 'same' padding for odd k, uninitialized (ResNetBase does it)."""
    return Conv2d(cin, cout, k, stride, k // 2, bias=bias, layout="NHWC", init=False)


def bn(c: int, relu: bool = False) -> BatchNorm2d:
    return BatchNorm2d(c, relu=relu, layout="NHWC")


def _add_into(dx: np.ndarray, d: np.ndarray) -> np.ndarray:
    """dx += d via the C++ add (dx is a gradient array this block owns)."""
    return F.add(dx, d, out=dx)


def _projection_backward(downsample: Sequential, d: np.ndarray) -> np.ndarray:
    """Backward of a v1 projection (1x1 conv + BN) that may consume d, the block's own array."""
    conv_, bn_ = downsample
    return conv_.backward(bn_.backward(d, out=d))


class ShortcutA(Module):
    """Parameter-free shortcut (He et al. 2015, option A): subsample by ``stride`` and
    zero-pad channels (in_planes -> planes) equally on both sides. NHWC, C++ kernels."""

    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        if planes < in_planes:
            raise ValueError(f"shortcut A cannot reduce channels ({in_planes} -> {planes})")
        self.in_planes, self.planes, self.stride = in_planes, planes, stride

    def extra_repr(self) -> str:
        return f"{self.in_planes} -> {self.planes}, stride={self.stride}"

    def forward(self, x: np.ndarray) -> np.ndarray:
        s = self.stride
        shape = (x.shape[0], -(-x.shape[1] // s), -(-x.shape[2] // s), self.planes)
        y, cache = F.shortcut_a(x, self.planes, s, out=self._buffer("y", shape))
        self._save(cache)
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return self.add_backward_into(None, dy)

    def add_backward_into(self, dx: np.ndarray | None, dy: np.ndarray) -> np.ndarray:
        """dx += backward(dy) in one pass, without materializing the mostly-zero gradient
        (dx None: a fresh backward(dy))."""
        dx = F.shortcut_a_backward(dy, self._saved(), out=dx, accumulate=dx is not None)
        self._consume()
        return dx


class BasicBlock(Module):
    """Two 3x3 convs (stride on the first), BN after each, identity or projected shortcut.

    ``shortcut``: "B" (1x1 conv + BN as ``downsample`` when the shape changes, torchvision)
    or "A" (parameter-free, ``ShortcutA``).
    """

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1, shortcut: str = "B"):
        super().__init__()
        self.conv1 = conv(in_planes, planes, 3, stride)
        self.bn1 = bn(planes, relu=True)
        self.conv2 = conv(planes, planes, 3)
        self.bn2 = bn(planes, relu=True)  # applied as relu(bn2(h) + shortcut)
        self._project = stride != 1 or in_planes != planes
        if self._project:
            if shortcut == "A":
                self.shortcut = ShortcutA(in_planes, planes, stride)
            else:
                self.downsample = Sequential(conv(in_planes, planes, 1, stride), bn(planes))
        self._kind = shortcut if self._project else "identity"

    def residual_bn(self) -> BatchNorm2d:
        return self.bn2

    def forward(self, x: np.ndarray) -> np.ndarray:
        h = self.conv2(self.bn1(self.conv1(x)))
        if self._kind == "identity":
            s = x
        elif self._kind == "A":
            s = self.shortcut(x)
        else:
            s = self.downsample(x)
        return self.bn2(h, residual=s)  # relu(bn2(h) + s)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        # d = dy * (y > 0) reaches both branches; d and dx go over bn2's spent y and x.
        g, d = self.bn2.backward(dy, overwrite_forward=True)
        # conv2's dx goes over its own input (bn1's output: bn1 recomputes its mask from x);
        # conv1's over its spent output (bn1's input) when the shapes allow.
        g = self.conv2.backward(g, out=self.conv2.saved_input())
        x1 = self.bn1.saved_input()
        g = self.bn1.backward(g, out=g)
        same = x1.shape == self.conv1.saved_input().shape
        dx = self.conv1.backward(g, out=x1 if same else None)
        if self._kind == "identity":
            return _add_into(dx, d)
        if self._kind == "A":
            return self.shortcut.add_backward_into(dx, d)
        return _add_into(dx, _projection_backward(self.downsample, d))


class Bottleneck(Module):
    """1x1 reduce -> 3x3 (stride here, torchvision v1.5) -> 1x1 expand x4, projection if needed."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1, base_width: int = 64):
        super().__init__()
        width = planes * base_width // 64
        out = planes * self.expansion
        self.conv1 = conv(in_planes, width, 1)
        self.bn1 = bn(width, relu=True)
        self.conv2 = conv(width, width, 3, stride)
        self.bn2 = bn(width, relu=True)
        self.conv3 = conv(width, out, 1)
        self.bn3 = bn(out, relu=True)  # applied as relu(bn3(h) + shortcut)
        self._project = stride != 1 or in_planes != out
        if self._project:
            self.downsample = Sequential(conv(in_planes, out, 1, stride), bn(out))

    def residual_bn(self) -> BatchNorm2d:
        return self.bn3

    def forward(self, x: np.ndarray) -> np.ndarray:
        h = self.bn1(self.conv1(x))
        h = self.bn2(self.conv2(h))
        s = self.downsample(x) if self._project else x
        return self.bn3(self.conv3(h), residual=s)  # relu(bn3(h) + s)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        # d = dy * (y > 0) reaches both branches; d and dx go over bn3's spent y and x.
        g, d = self.bn3.backward(dy, overwrite_forward=True)
        g = self.conv3.backward(g)
        g = self.conv2.backward(self.bn2.backward(g, out=g))
        dx = self.conv1.backward(self.bn1.backward(g, out=g))
        return _add_into(dx, _projection_backward(self.downsample, d) if self._project else d)


class PreActBottleneck(Module):
    """Pre-activation bottleneck (He et al. 2016): [bn1-ReLU] -> conv1 1x1 -> bn2-ReLU ->
    conv2 3x3 -> bn3-ReLU -> conv3 1x1, plus a shortcut; output = residual + shortcut.

    preact:      "residual" -- bn1-ReLU feeds only the residual branch (identity units,
                 and Keras' projection units); "both" -- bn1-ReLU feeds both branches
                 (the paper code's first unit of a stage); "none" -- no bn1 (Keras' very
                 first unit, whose input is already BN-ReLU'd by the stem).
    project:     1x1 conv shortcut (``downsample``) instead of identity.
    stride_on:   "conv2" (3x3, paper) or "conv1" (first 1x1, Keras) takes the stride.
    """

    def __init__(self, in_planes: int, width: int, out_planes: int, stride: int, *,
                 preact: str, project: bool, stride_on: str = "conv2", bias: bool = False):
        super().__init__()
        if preact not in ("residual", "both", "none"):
            raise ValueError(f"preact must be 'residual', 'both' or 'none', got {preact!r}")
        if not project and (stride != 1 or in_planes != out_planes):
            raise ValueError("an identity shortcut needs stride 1 and in_planes == out_planes")
        s1, s2 = (stride, 1) if stride_on == "conv1" else (1, stride)
        self.preact = preact
        if preact != "none":
            self.bn1 = bn(in_planes, relu=True)
        self.conv1 = conv(in_planes, width, 1, s1, bias)
        self.bn2 = bn(width, relu=True)
        self.conv2 = conv(width, width, 3, s2, bias)
        self.bn3 = bn(width, relu=True)
        self.conv3 = conv(width, out_planes, 1, 1, bias)
        self.project = bool(project)
        if self.project:
            self.downsample = conv(in_planes, out_planes, 1, stride, bias)

    def forward(self, x: np.ndarray) -> np.ndarray:
        a = self.bn1(x) if self.preact != "none" else x
        h = self.conv3(self.bn3(self.conv2(self.bn2(self.conv1(a)))))
        src = a if self.preact == "both" else x
        s = self.downsample(src) if self.project else src
        # conv3's output is needed by nobody but the add: the sum goes into it (one buffer).
        return F.add(h, s, out=h)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        g = self.conv3.backward(dy)
        g = self.conv2.backward(self.bn3.backward(g, out=g))
        da = self.conv1.backward(self.bn2.backward(g, out=g))  # grad wrt the residual input
        ds = self.downsample.backward(dy) if self.project else dy  # grad wrt the shortcut input
        if self.preact == "none":
            return _add_into(da, ds)
        if self.preact == "both":
            return self.bn1.backward(_add_into(da, ds), out=da)
        return self.bn1.backward(da, out=da, add=ds)  # dx = bn1'(da) + ds in one pass
