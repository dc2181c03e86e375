"""ResNet v2, pre-activation bottlenecks (He et al. 2016, "Identity Mappings"), depth 9n+2.

Three stages of n units BN-ReLU-conv1x1 -> BN-ReLU-conv3x3 -> BN-ReLU-conv1x1 (x4
expansion); a 1x1 projection shortcut on the first unit of each stage, identity
elsewhere; no ReLU after the add; a final BN-ReLU before pooling.

width="paper" (the authors' fb.resnet.torch preresnet): bottleneck widths 16/32/64 ->
outputs 64/128/256, no conv bias, stride on the 3x3 conv; the stem is a bare 3x3 conv and
the first unit of each stage applies its BN-ReLU before splitting, so the projection sees
the pre-activated input. ResNet-164 has 1,703,258 parameters (10 classes).

width="keras" (Keras' cifar10_resnet.py resnet_v2): widths 16/64/128 -> 64/128/256,
conv bias everywhere, stem conv-BN-ReLU, stride on the first 1x1 conv of a stage's first
unit, the very first unit skips its BN-ReLU (the stem already did it), and projection
shortcuts read the raw unit input. ResNet-56 has 1,663,338 and ResNet-164 4,941,546
parameters (10 classes), as Keras reports.
"""
from __future__ import annotations

from ..nn import GlobalAvgPool2d, Linear, Sequential, init
from .base import ResNetBase
from .blocks import PreActBottleneck, bn, conv

__all__ = ["PreActResNet"]

_PRESETS = {
    # widths, outputs, conv bias, which conv strides, stem BN-ReLU
    "paper": dict(widths=(16, 32, 64), outs=(64, 128, 256), bias=False, stride_on="conv2",
                  stem_bn=False),
    "keras": dict(widths=(16, 64, 128), outs=(64, 128, 256), bias=True, stride_on="conv1",
                  stem_bn=True),
}


class PreActResNet(ResNetBase):
    """Pre-activation bottleneck ResNet-(9n+2) for small images; see the module docstring."""

    def __init__(self, depth: int = 164, num_classes: int = 10, in_channels: int = 3,
                 width: str = "paper", seed=None):
        super().__init__(in_channels, num_classes)
        if depth < 11 or (depth - 2) % 9:
            raise ValueError(f"ResNet v2 depth must be 9n+2 with n >= 1 "
                             f"(29, 56, 110, 164, 1001), got {depth}")
        if width not in _PRESETS:
            raise ValueError(f"width must be one of {sorted(_PRESETS)}, got {width!r}")
        p = _PRESETS[width]
        n = (depth - 2) // 9
        self.depth, self.width = depth, width
        bias = p["bias"]
        self.conv1 = conv(self.in_channels, 16, 3, 1, bias)
        trunk = ["conv1"]
        if p["stem_bn"]:
            self.bn1 = bn(16, relu=True)
            trunk.append("bn1")
        cin = 16
        for s, (w, cout) in enumerate(zip(p["widths"], p["outs"])):
            units = []
            for i in range(n):
                if i > 0:
                    preact = "residual"
                elif width == "paper":
                    preact = "both"
                else:
                    preact = "none" if s == 0 else "residual"
                units.append(PreActBottleneck(
                    cin if i == 0 else cout, w, cout, 2 if (i == 0 and s > 0) else 1,
                    preact=preact, project=(i == 0), stride_on=p["stride_on"], bias=bias))
            setattr(self, f"layer{s + 1}", Sequential(*units))
            trunk.append(f"layer{s + 1}")
            cin = cout
        self.bn_final = bn(cin, relu=True)
        self._trunk = tuple(trunk) + ("bn_final",)
        self.avgpool = GlobalAvgPool2d(layout="NHWC")
        rng = init.as_rng(seed)
        self.fc = Linear(cin, self.num_classes, rng=rng)
        self._finish(rng)
