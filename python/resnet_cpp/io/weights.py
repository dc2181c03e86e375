"""Weights from any supported file into zoo models: format detection, key mapping, loading.

Formats (detected from the content, not the file name):
  ``torch``        PyTorch ``.pth``/``.pt``, zip or legacy (``torch_format.read_torch``)
  ``safetensors``  ``.safetensors`` (needs the ``safetensors`` package)
  ``npz``          a resnet_cpp training checkpoint, or a plain ``.npz`` of named arrays

Every reader returns a :class:`Weights`: a NumPy state_dict in zoo key names plus what the
file says about the model (``meta``: ``model`` = ``models.create`` arguments, ``classes``,
``normalization``, ``preprocess``, ``image_shape``; each may be missing).

Key names: torchvision's ResNets already use ours. The CIFAR ResNets of the common PyTorch
reimplementations (akamaster/pytorch_resnet_cifar10 and those modelled on it) name the
classifier ``linear`` and an option-B projection ``shortcut.0``/``shortcut.1``; they
become ``fc`` and ``downsample.0``/``downsample.1`` (their option-A shortcut has no
parameters). Wrappers ``{"state_dict": sd}``, ``{"model": sd}``, ``{"model_state_dict":
sd}`` and DataParallel's ``module.`` prefix are removed.
"""
from __future__ import annotations

import json
import os
import re
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from .. import checkpoint as ckpt
from .torch_format import read_torch

__all__ = ["Weights", "detect_format", "read_weights", "unwrap_state_dict", "to_zoo_keys",
           "infer_config", "load_into", "build_model", "describe_checkpoint", "META_KEY"]

META_KEY = "resnet_cpp"  # safetensors / ONNX metadata entry holding ``Weights.meta`` as JSON
_WRAPPERS = ("state_dict", "model_state_dict", "model")
_RENAMES = ((re.compile(r"^linear\."), "fc."),
            (re.compile(r"\.shortcut\.0\."), ".downsample.0."),
            (re.compile(r"\.shortcut\.1\."), ".downsample.1."))


@dataclass
class Weights:
    """A state_dict (zoo key names -> ndarray) and what its file records about the model."""

    state_dict: "OrderedDict[str, np.ndarray]"
    meta: dict = field(default_factory=dict)
    format: str = ""
    path: str = ""


def detect_format(path: str | os.PathLike) -> str:
    """"torch", "safetensors" or "npz" from the file's first bytes; ValueError otherwise
    (``checkpoint.CheckpointError`` for a damaged zip archive)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file")
    with open(path, "rb") as f:
        head = f.read(16)
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
        except zipfile.BadZipFile as e:
            raise ckpt.CheckpointError(f"{path}: a zip archive (.npz or .pth) that is "
                                       f"truncated or corrupted ({e})") from e
        return "npz" if names and all(n.endswith(".npy") for n in names) else "torch"
    # safetensors: a u64 (little-endian) header length, then the JSON header
    if len(head) > 8 and head[8:9] == b"{" and \
            int.from_bytes(head[:8], "little") <= os.path.getsize(path) - 8:
        return "safetensors"
    if head[:1] == b"\x80":  # a pickle: the legacy PyTorch format
        return "torch"
    raise ValueError(f"{path}: not a PyTorch, safetensors or .npz file")


def unwrap_state_dict(obj: Any, where: str = "") -> "OrderedDict[str, np.ndarray]":
    """The state_dict inside ``obj``: itself, or under one of the wrapper keys; ``module.``
    stripped. Raises ValueError naming ``where`` when no dict of arrays is found."""
    for _ in range(2):  # at most a wrapper around a wrapper ({"model": {"state_dict": ..}})
        if not isinstance(obj, Mapping):
            raise ValueError(f"{where}: holds a {type(obj).__name__}, not a state_dict")
        if obj and all(isinstance(v, np.ndarray) for v in obj.values()):
            break
        inner = next((obj[k] for k in _WRAPPERS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            bad = next((k for k, v in obj.items() if not isinstance(v, np.ndarray)), None)
            raise ValueError(f"{where}: not a state_dict (entry {bad!r} is not a tensor) and "
                             f"no {' / '.join(_WRAPPERS)} entry holds one; keys: "
                             f"{sorted(map(str, obj))[:10]}")
        obj = inner
    else:
        raise ValueError(f"{where}: no state_dict of tensors found")
    keys = [str(k) for k in obj]
    if keys and all(k.startswith("module.") for k in keys):
        keys = [k[len("module."):] for k in keys]
    return OrderedDict(zip(keys, obj.values()))


def to_zoo_keys(state_dict: Mapping[str, np.ndarray]) -> "OrderedDict[str, np.ndarray]":
    """Rename CIFAR-reimplementation keys (``linear``, ``shortcut.0/1``) to the zoo's."""
    out = OrderedDict()
    for k, v in state_dict.items():
        for pattern, repl in _RENAMES:
            k = pattern.sub(repl, k)
        if k in out:
            raise ValueError(f"state_dict: two keys map to {k!r}")
        out[k] = v
    return out


def describe_checkpoint(meta: Mapping[str, Any]) -> dict:
    """``Weights.meta`` from a resnet_cpp training checkpoint's metadata."""
    out: dict = {}
    cfg = meta.get("model")
    if cfg and "name" in cfg:
        kwargs = cfg["kwargs"] if "kwargs" in cfg else \
            {k: v for k, v in cfg.items() if k not in ("name", "version")}
        out["model"] = {"name": cfg["name"], "version": cfg.get("version", 1),
                        **{k: v for k, v in kwargs.items() if k != "seed"}}
    data = meta.get("data") or {}
    for key in ("classes", "image_shape", "preprocess"):
        if data.get(key):
            out[key] = data[key]
    if meta.get("normalization"):
        out["normalization"] = meta["normalization"]
    return out


def _read_safetensors(path: str) -> tuple[dict, dict]:
    from .safetensors_format import read_safetensors

    return read_safetensors(path)


def read_weights(path: str | os.PathLike) -> Weights:
    """Read any supported weights file -> :class:`Weights` (zoo key names)."""
    path = os.fspath(path)
    fmt = detect_format(path)
    meta: dict = {}
    if fmt == "torch":
        sd = unwrap_state_dict(read_torch(path), path)
    elif fmt == "safetensors":
        sd, meta = _read_safetensors(path)
    else:
        with np.load(path, allow_pickle=False) as z:
            is_checkpoint = "__meta__" in z.files
            arrays = {k: z[k] for k in z.files}
        if is_checkpoint:
            c = ckpt.load(path)
            sd, meta = c.model_state, describe_checkpoint(c.meta)
        else:
            sd = arrays
        sd = unwrap_state_dict(sd, path)
    return Weights(to_zoo_keys(sd), meta, fmt, path)


def _stage_counts(state_dict: Mapping[str, np.ndarray]) -> dict[int, int]:
    """{stage: number of blocks} from ``layer<s>.<i>.`` keys."""
    counts: dict[int, int] = {}
    for k in state_dict:
        m = re.match(r"^layer(\d+)\.(\d+)\.", k)
        if m:
            s, i = int(m.group(1)), int(m.group(2))
            counts[s] = max(counts.get(s, 0), i + 1)
    return counts


def infer_config(state_dict: Mapping[str, np.ndarray]) -> dict:
    """``models.create`` arguments of the zoo model a state_dict (zoo keys) belongs to.

    Recognizes ImageNet ResNet-18..152 (four stages), CIFAR v1 (three stages, shortcut A
    or B) and pre-activation v2 (``bn_final``); reads classes, input channels and stage
    widths from the weight shapes. Raises ValueError for anything else.
    """
    from ..models import IMAGENET_DEPTHS

    sd = state_dict
    if "conv1.weight" not in sd or "fc.weight" not in sd:
        raise ValueError("state_dict: no conv1.weight / fc.weight, so not a zoo ResNet "
                         f"(first keys: {list(sd)[:6]})")
    cfg: dict = {"num_classes": int(sd["fc.weight"].shape[0]),
                 "in_channels": int(sd["conv1.weight"].shape[1])}
    counts = _stage_counts(sd)
    stages = sorted(counts)
    per_stage = [counts[s] for s in stages]

    def stage_widths() -> tuple:
        return tuple(int(sd[f"layer{s}.0.conv1.weight"].shape[0]) for s in stages)

    if "bn_final.weight" in sd and stages == [1, 2, 3] and len(set(per_stage)) == 1:
        width = "keras" if "conv1.bias" in sd else "paper"
        return {"name": f"resnet{9 * per_stage[0] + 2}", "version": 2, "width": width, **cfg}
    if stages == [1, 2, 3, 4]:
        bottleneck = "layer1.0.conv3.weight" in sd
        for depth, (block, blocks) in IMAGENET_DEPTHS.items():
            if tuple(per_stage) == blocks and (block.expansion == 4) == bottleneck:
                widths = stage_widths()
                extra = {} if widths == (64, 128, 256, 512) else {"widths": widths}
                return {"name": f"resnet{depth}", "version": 1, **cfg, **extra}
    if stages == [1, 2, 3] and len(set(per_stage)) == 1:
        shortcut = "B" if any(".downsample." in k for k in sd) else "A"
        widths = stage_widths()
        extra = {} if widths == (16, 32, 64) else {"widths": widths}
        return {"name": f"resnet{6 * per_stage[0] + 2}", "version": 1, "shortcut": shortcut,
                **cfg, **extra}
    raise ValueError(f"state_dict: blocks per stage {per_stage} match no zoo ResNet "
                     "(ImageNet 18/34/50/101/152, CIFAR v1 6n+2, v2 9n+2)")


def _as_weights(source) -> Weights:
    if isinstance(source, Weights):
        return source
    if isinstance(source, Mapping):
        return Weights(to_zoo_keys(unwrap_state_dict(dict(source), "state_dict")))
    return read_weights(source)


def load_into(model, source, *, new_head: bool = False):
    """Load weights into a zoo model in place; returns ``(missing, unexpected)`` keys.

    ``source``: a path (any format above), a :class:`Weights` or a state_dict. With
    ``new_head`` the file's classifier (``fc.*``) is ignored and the model's own, freshly
    initialized one is kept (fine-tuning on other classes). Every other key must match:
    missing or unexpected keys and shape mismatches raise ValueError, and nothing is
    modified unless all checks pass.
    """
    w = _as_weights(source)
    where = w.path or "state_dict"
    sd = w.state_dict
    own = dict(model.named_parameters()).get("fc.weight")
    if new_head:
        sd = OrderedDict((k, v) for k, v in sd.items() if not k.startswith("fc."))
    elif "fc.weight" in sd and own is not None and sd["fc.weight"].shape != own.shape:
        raise ValueError(f"{where}: its head has {sd['fc.weight'].shape[0]} classes, the model "
                         f"{own.shape[0]}; pass new_head=True (CLI: --new-head) "
                         "to train a new head")
    keys = [k for k, _ in model.named_parameters()] + [k for k, _ in model.named_buffers()]
    missing = [k for k in keys if k not in sd and not k.endswith("num_batches_tracked")
               and not (new_head and k.startswith("fc."))]
    unexpected = [k for k in sd if k not in keys]
    if missing or unexpected:
        raise ValueError(f"{where}: does not fit {type(model).__name__}: missing keys "
                       f"{missing[:8]}{' ...' if len(missing) > 8 else ''}, unexpected keys "
                       f"{unexpected[:8]}{' ...' if len(unexpected) > 8 else ''}")
    return model.load_state_dict(sd, strict=False)


def build_model(source):
    """(model in eval mode, Weights): the zoo model a file describes (its recorded config,
    else ``infer_config``), with the file's weights loaded."""
    from .. import models

    w = _as_weights(source)
    cfg = dict(w.meta.get("model") or infer_config(w.state_dict))
    name, version = cfg.pop("name"), cfg.pop("version", 1)
    model = models.create(name, version=version, **cfg)
    load_into(model, w)
    return model.eval(), w


def meta_json(meta: Mapping[str, Any]) -> str:
    """``Weights.meta`` as the JSON stored in safetensors / ONNX metadata."""
    return json.dumps(dict(meta), sort_keys=True)
