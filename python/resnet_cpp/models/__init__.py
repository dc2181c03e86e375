"""The model zoo: CIFAR ResNet v1, pre-activation ResNet v2, ImageNet ResNets.

    import resnet_cpp.models as models
    net = models.create("resnet20", num_classes=10, in_channels=1)         # CIFAR v1
    net = models.create("resnet164", version=2, width="keras")             # v2
    net = models.resnet50(num_classes=1000)                                # ImageNet

Every model takes NCHW float32 (N, C, H, W), returns logits (N, num_classes), has an
explicit ``backward(dlogits, need_dx=True)`` and torchvision-style state_dict keys.
``model.config`` holds the arguments that rebuild it: ``create(**model.config)``.
"""
from __future__ import annotations

from .base import ResNetBase
from .blocks import BasicBlock, Bottleneck, PreActBottleneck
from .cifar import CifarResNet
from .imagenet import IMAGENET_DEPTHS, ImageNetResNet
from .preact import PreActResNet
from .torch_twin import torch_twin

CIFAR_V1_DEPTHS = (20, 32, 44, 56, 110, 1202)
CIFAR_V2_DEPTHS = (29, 56, 110, 164, 1001)

__all__ = [
    "BasicBlock", "Bottleneck", "CifarResNet", "IMAGENET_DEPTHS", "ImageNetResNet",
    "PreActBottleneck", "PreActResNet", "ResNetBase", "create", "torch_twin", "valid_names",
    *[f"resnet{d}" for d in CIFAR_V1_DEPTHS],
    *[f"resnet{d}" for d in IMAGENET_DEPTHS],
    *[f"preact_resnet{d}" for d in CIFAR_V2_DEPTHS],
]


def valid_names() -> dict[int, list[str]]:
    """Names ``create`` accepts, per version."""
    return {
        1: [f"resnet{d}" for d in CIFAR_V1_DEPTHS] + [f"resnet{d}" for d in IMAGENET_DEPTHS],
        2: [f"resnet{d}" for d in CIFAR_V2_DEPTHS],
    }


def create(name: str, version: int = 1, **kw) -> ResNetBase:
    """Build a model by name.

    version=1: "resnet20" .. "resnet1202" (CIFAR v1; kw: num_classes=10, in_channels=3,
    shortcut="A"|"B", widths, seed) and "resnet18" .. "resnet152" (ImageNet; kw:
    num_classes=1000, in_channels=3, zero_init_residual, seed). version=2: "resnet29" ..
    "resnet1001" (pre-activation; kw: num_classes, in_channels, width="paper"|"keras", seed).
    Unknown names and depths raise ValueError listing the valid ones.
    """
    names = valid_names()
    if version not in names:
        raise ValueError(f"version must be 1 or 2, got {version!r}")
    key = str(name).lower()
    if key not in names[version]:
        raise ValueError(f"unknown model {name!r} for version {version}; valid: "
                         + ", ".join(f"{n} (version={v})" for v in names for n in names[v]))
    depth = int(key[len("resnet"):])
    if version == 2:
        model = PreActResNet(depth, **kw)
    elif depth in IMAGENET_DEPTHS:
        model = ImageNetResNet(depth, **kw)
    else:
        model = CifarResNet(depth, **kw)
    model.config = {"name": key, "version": version,
                    **{k: v for k, v in kw.items() if k != "seed"}}
    return model


def _factory(name: str, version: int, doc: str):
    def build(**kw) -> ResNetBase:
        return create(name, version, **kw)
    build.__name__ = build.__qualname__ = name if version == 1 else f"preact_{name}"
    build.__doc__ = f"{doc} Keyword arguments as in ``create``."
    return build


for _d in CIFAR_V1_DEPTHS:
    globals()[f"resnet{_d}"] = _factory(f"resnet{_d}", 1, f"CIFAR ResNet-{_d} v1.")
for _d in IMAGENET_DEPTHS:
    globals()[f"resnet{_d}"] = _factory(f"resnet{_d}", 1, f"ImageNet ResNet-{_d} (torchvision).")
for _d in CIFAR_V2_DEPTHS:
    globals()[f"preact_resnet{_d}"] = _factory(f"resnet{_d}", 2, f"Pre-activation ResNet-{_d} v2.")
del _d
