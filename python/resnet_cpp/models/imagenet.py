"""ImageNet ResNet-18/34/50/101/152 (torchvision v1.5: stride on the 3x3 conv).

conv1 7x7/2 -> bn1-ReLU -> maxpool 3x3/2 -> layer1..4 (64, 128, 256, 512 planes; basic
blocks for 18/34, x4 bottlenecks for 50+) -> global average pool -> fc. state_dict keys
are torchvision's, so its checkpoints (converted to NumPy) load directly. Parameter counts
with 1000 classes: ResNet-18 11,689,512, ResNet-50 25,557,032.
"""
from __future__ import annotations

from ..nn import Conv2d, GlobalAvgPool2d, Linear, MaxPool2d, Sequential, init
from .base import ResNetBase
from .blocks import BasicBlock, Bottleneck, bn

__all__ = ["ImageNetResNet", "IMAGENET_DEPTHS"]

IMAGENET_DEPTHS = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
    152: (Bottleneck, (3, 8, 36, 3)),
}


class ImageNetResNet(ResNetBase):
    """torchvision-compatible ResNet; ``zero_init_residual`` zeroes each block's last BN gamma.

    ``widths``: planes of the four stages (torchvision: 64, 128, 256, 512; bottleneck
    outputs are 4x); the stem has ``widths[0]`` channels. Smaller values make tiny models.
    """

    _trunk = ("conv1", "bn1", "maxpool", "layer1", "layer2", "layer3", "layer4")

    def __init__(self, depth: int = 50, num_classes: int = 1000, in_channels: int = 3,
                 zero_init_residual: bool = False, widths=(64, 128, 256, 512), seed=None):
        super().__init__(in_channels, num_classes)
        if depth not in IMAGENET_DEPTHS:
            raise ValueError(f"ImageNet ResNet depth must be one of {sorted(IMAGENET_DEPTHS)}, "
                             f"got {depth}")
        if len(widths) != 4:
            raise ValueError(f"widths must have 4 entries, got {widths!r}")
        block, counts = IMAGENET_DEPTHS[depth]
        self.depth = depth
        widths = tuple(int(w) for w in widths)
        self.conv1 = Conv2d(self.in_channels, widths[0], 7, 2, 3, bias=False, layout="NHWC",
                            init=False)
        self.bn1 = bn(widths[0], relu=True)
        self.maxpool = MaxPool2d(3, 2, 1, layout="NHWC")
        cin = widths[0]
        for s, (planes, count) in enumerate(zip(widths, counts)):
            blocks = []
            for i in range(count):
                blocks.append(block(cin, planes, 2 if (i == 0 and s > 0) else 1))
                cin = planes * block.expansion
            setattr(self, f"layer{s + 1}", Sequential(*blocks))
        self.avgpool = GlobalAvgPool2d(layout="NHWC")
        rng = init.as_rng(seed)
        self.fc = Linear(cin, self.num_classes, rng=rng)
        self._finish(rng, zero_init_residual)
