"""CIFAR ResNet v1 (He et al. 2015, sec. 4.2): depth 6n+2, 16/32/64 channels, basic blocks.

conv1 3x3 -> bn1-ReLU -> layer1 (n blocks, 16 ch, 32x32) -> layer2 (32 ch, 16x16) ->
layer3 (64 ch, 8x8) -> global average pool -> fc. Shortcut "A" (the paper's CIFAR
choice, parameter-free: ResNet-20 has 269,722 parameters) or "B" (1x1 conv + BN projection
where the shape changes). Names follow torchvision (layer2.0.downsample.0.weight, fc.bias).
"""
from __future__ import annotations

from ..nn import GlobalAvgPool2d, Linear, Sequential, init
from .base import ResNetBase
from .blocks import BasicBlock, bn, conv

__all__ = ["CifarResNet"]


class CifarResNet(ResNetBase):
    """ResNet-(6n+2) for 32x32-ish images (any H, W >= 1 work; channels from ``in_channels``).

    ``widths``: the three stage widths (16, 32, 64 in the paper; smaller ones make tiny
    test models). ``seed``: int, Generator or None for the He-normal init.
    """

    _trunk = ("conv1", "bn1", "layer1", "layer2", "layer3")

    def __init__(self, depth: int = 20, num_classes: int = 10, in_channels: int = 3,
                 shortcut: str = "A", widths=(16, 32, 64), seed=None):
        super().__init__(in_channels, num_classes)
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet v1 depth must be 6n+2 with n >= 1 "
                             f"(20, 32, 44, 56, 110, 1202), got {depth}")
        if shortcut not in ("A", "B"):
            raise ValueError(f"shortcut must be 'A' or 'B', got {shortcut!r}")
        if len(widths) != 3:
            raise ValueError(f"widths must have 3 entries, got {widths!r}")
        n = (depth - 2) // 6
        self.depth, self.shortcut = depth, shortcut
        w1, w2, w3 = (int(w) for w in widths)
        self.conv1 = conv(self.in_channels, w1, 3)
        self.bn1 = bn(w1, relu=True)
        self.layer1 = self._stage(w1, w1, n, 1)
        self.layer2 = self._stage(w1, w2, n, 2)
        self.layer3 = self._stage(w2, w3, n, 2)
        self.avgpool = GlobalAvgPool2d(layout="NHWC")
        rng = init.as_rng(seed)
        self.fc = Linear(w3, self.num_classes, rng=rng)
        self._finish(rng)

    def _stage(self, cin: int, cout: int, n: int, stride: int) -> Sequential:
        return Sequential(*[BasicBlock(cin if i == 0 else cout, cout, stride if i == 0 else 1,
                                       self.shortcut) for i in range(n)])
