"""ResNetBase: NCHW input -> one NHWC conversion -> trunk -> global pool -> fc -> logits."""
from __future__ import annotations

import numpy as np

from .. import functional as F
from ..backend import device_of, is_array, is_device_array
from ..nn import BatchNorm2d, Conv2d, Module, init

__all__ = ["ResNetBase"]


class ResNetBase(Module):
    """Shared forward/backward and init for every model in the zoo.

    Subclasses create their modules and list the trunk's attribute names in ``_trunk``
    (forward order, the stem conv first), then call ``_finish(rng)``. Everything between
    the entry conversion and the global average pool runs NHWC; the head sees (N, C).
    ``config`` holds the ``create`` arguments that rebuild the architecture.

    Fine-tuning: a frozen prefix of the trunk (``requires_grad_(False)``) gets no backward
    when the input gradient is not needed, and ``freeze_bn()`` keeps every BatchNorm in
    eval mode (running statistics used and left unchanged) while the model trains.
    """

    _trunk: tuple = ()
    bn_frozen = False

    def __init__(self, in_channels: int, num_classes: int):
        super().__init__()
        if int(in_channels) < 1 or int(num_classes) < 1:
            raise ValueError(f"in_channels and num_classes must be >= 1, "
                             f"got {in_channels} and {num_classes}")
        self.in_channels = int(in_channels)
        self.num_classes = int(num_classes)
        self.config: dict = {}

    def _finish(self, rng, zero_init_residual: bool = False) -> None:
        """He normal (fan_out, ReLU gain) for every conv, zero conv biases, BN (1, 0)."""
        for m in self.modules():
            if isinstance(m, Conv2d):
                init.kaiming_normal_(m.weight, rng, mode="fan_out")
                if m.bias is not None:
                    m.bias.data.fill(0.0)
            elif isinstance(m, BatchNorm2d):
                m.weight.data.fill(1.0)
                m.bias.data.fill(0.0)
        if zero_init_residual:
            # Each residual branch starts at zero, so each block starts as the identity.
            for m in self.modules():
                if hasattr(m, "residual_bn"):
                    m.residual_bn().weight.data.fill(0.0)

    def freeze_bn(self, frozen: bool = True) -> ResNetBase:
        """Frozen-BN semantics: BN layers normalize with their running statistics and never
        update them, also in training mode (gamma and beta still train unless frozen)."""
        self.bn_frozen = bool(frozen)
        return self.train(self.training)

    def train(self, mode: bool = True) -> ResNetBase:
        super().train(mode)
        if mode and self.bn_frozen:
            for m in self.modules():
                if isinstance(m, BatchNorm2d):
                    object.__setattr__(m, "training", False)
        return self

    def fuse(self) -> ResNetBase:
        """An inference copy with each BN folded into the conv before it (see models.fuse)."""
        from .fuse import fuse

        return fuse(self)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """x (N, in_channels, H, W) float32 -> logits (N, num_classes), a fresh array.

        x must be on the model's device: a NumPy array for a CPU model, a DeviceArray
        (``resnet_cpp.cuda.to_device(x)``) for one moved with ``.to("cuda")``.
        """
        if is_array(x) and device_of(x) != self.device:
            raise TypeError(f"x: the model is on {self.device} but x is on {device_of(x)}; "
                            f"move one of them (model.to(...), resnet_cpp.cuda.to_device/to_host)")
        if not is_array(x) or x.ndim != 4 or x.shape[1] != self.in_channels:
            got = x.shape if is_array(x) else type(x).__name__
            raise ValueError(f"x must be (N, {self.in_channels}, H, W) NCHW, got {got}")
        if not is_device_array(x) and (x.dtype != np.float32 or not x.flags.c_contiguous):
            x = np.ascontiguousarray(x, dtype=np.float32)
        n, c, hh, ww = x.shape
        h = F.to_nhwc(x, out=self._buffer("x", (n, hh, ww, c)))
        for name in self._trunk:
            h = getattr(self, name)(h)
        return self.fc(self.avgpool(h))

    def backward(self, dy: np.ndarray, need_dx: bool = True):
        """dlogits (N, num_classes) -> dx (N, C, H, W), filling every parameter's .grad.

        ``need_dx=False`` skips the input gradient (training never needs it) and returns None;
        trunk modules before the first one with a trainable parameter are then skipped too.
        """
        first = 0
        if not need_dx:
            first = next((i for i, name in enumerate(self._trunk)
                          if any(p.requires_grad for p in getattr(self, name).parameters())),
                         len(self._trunk))
        if first == len(self._trunk):  # a frozen trunk: only the head learns
            self.fc.backward(dy, need_dx=False)
            return None
        d = self.avgpool.backward(self.fc.backward(dy))
        for name in reversed(self._trunk[max(first, 1):]):
            m = getattr(self, name)
            # d is always an array of this backward's own making: a BN may overwrite it.
            d = m.backward(d, out=d) if isinstance(m, BatchNorm2d) else m.backward(d)
        if first > 0:
            return None
        d = getattr(self, self._trunk[0]).backward(d, need_dx=need_dx)
        return None if d is None else F.to_nchw(d)
