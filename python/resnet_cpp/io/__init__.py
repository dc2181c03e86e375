"""Standard formats in and out: PyTorch checkpoints (without torch), safetensors, ONNX.

    import resnet_cpp as rc
    model, w = rc.io.build_model("resnet18.pth")        # torch file -> zoo model, eval mode
    net = rc.models.resnet20(num_classes=5)
    rc.io.load_into(net, "cifar_resnet20.th", new_head=True)   # fine-tuning: keep our head
    sd = rc.io.load_torch("model.pth")                  # a NumPy state_dict
    rc.io.save_safetensors("model.safetensors", net.state_dict(), {"classes": [...]})
    rc.io.export_onnx(net, "model.onnx")                # BN folded, dynamic batch, opset 17

Reading never runs code from the file: PyTorch pickles go through an unpickler that
admits only tensor and storage rebuilders (``torch_format``), safetensors and ``.npz``
hold no code. ``onnx`` and ``safetensors`` are optional extras, imported when used.
"""
from __future__ import annotations

import os

from .onnx_export import OPSET, export_onnx
from .safetensors_format import read_safetensors, save_safetensors
from .torch_format import TorchUnpickler, UnsafePickleError, read_torch
from .weights import (
    Weights,
    build_model,
    describe_checkpoint,
    detect_format,
    infer_config,
    load_into,
    read_weights,
    to_zoo_keys,
    unwrap_state_dict,
)

__all__ = [
    "OPSET",
    "TorchUnpickler",
    "UnsafePickleError",
    "Weights",
    "build_model",
    "describe_checkpoint",
    "detect_format",
    "export_onnx",
    "infer_config",
    "load_into",
    "load_torch",
    "read_safetensors",
    "read_torch",
    "read_weights",
    "save_safetensors",
    "to_zoo_keys",
    "unwrap_state_dict",
]


def load_torch(path: str | os.PathLike):
    """A PyTorch ``.pth``/``.pt`` file (zip or legacy format) -> NumPy state_dict.

    Unwraps ``{"state_dict": ...}``, ``{"model": ...}``, ``{"model_state_dict": ...}`` and
    DataParallel's ``module.`` prefix; keys are otherwise the file's own (``load_into``
    and ``read_weights`` also map CIFAR-reimplementation names to the zoo's).
    """
    return unwrap_state_dict(read_torch(path), os.fspath(path))
