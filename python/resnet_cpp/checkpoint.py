"""Training checkpoints: one self-checking ``.npz`` file per save.

A checkpoint holds arrays in groups (``model/<state_dict key>`` for parameters and BN
statistics, ``optimizer/<key>`` for momentum buffers or Adam moments) plus JSON metadata
stored as a uint8 array under ``__meta__``, so it loads with ``allow_pickle=False``.
The metadata holds the format version, a sha256 checksum over every array's name,
dtype, shape and bytes, and whatever the trainer records: model config (name, version,
kwargs) to rebuild the model, normalization, optimizer/schedule scalars, the data
position (seed, epoch, batch index), metrics.

Writes are atomic: the file is written to a temporary file in the same directory,
flushed and fsync'ed, then ``os.replace``'d over the target, so a crash or a failing
write leaves any previous checkpoint intact. Loading verifies the format and the
checksum before returning anything, so a truncated or corrupted file raises
:class:`CheckpointError` and nothing is half-loaded.
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

__all__ = ["CheckpointError", "Checkpoint", "save", "load", "check_model_state", "load_model_state",
           "FORMAT", "FORMAT_VERSION"]

FORMAT = "resnet_cpp.checkpoint"
FORMAT_VERSION = 1
_META = "__meta__"


class CheckpointError(ValueError):
    """A checkpoint file is missing, truncated, corrupted or of an unknown format."""


def _checksum(arrays: Mapping[str, np.ndarray]) -> str:
    """sha256 over (name, dtype, shape, bytes) of every array, in sorted name order."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(json.dumps([name, a.dtype.str, list(a.shape)]).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"checkpoint metadata: {type(obj).__name__} is not JSON serializable")


@dataclass
class Checkpoint:
    """A loaded checkpoint: array groups (``groups["model"]`` is the model state dict)
    and the metadata dict."""

    groups: dict[str, dict[str, np.ndarray]]
    meta: dict
    path: str = ""

    @property
    def model_state(self) -> dict[str, np.ndarray]:
        return self.groups.get("model", {})

    def optimizer_state(self) -> dict | None:
        """The optimizer's ``state_dict()`` form (scalars from meta + arrays), or None."""
        opt = self.meta.get("optimizer")
        if opt is None:
            return None
        return {**opt, "arrays": dict(self.groups.get("optimizer", {}))}

    def build_model(self):
        """Rebuild the model from the stored config and load its weights (eval mode)."""
        from . import models

        cfg = self.meta.get("model")
        if not cfg or "name" not in cfg:
            raise CheckpointError(f"{self.path}: checkpoint has no model config to rebuild from")
        # {"name", "version", "kwargs": {...}} (the trainer's form) or rc.models'
        # model.config form {"name", "version", **kwargs}.
        kwargs = cfg["kwargs"] if "kwargs" in cfg else \
            {k: v for k, v in cfg.items() if k not in ("name", "version")}
        model = models.create(cfg["name"], version=cfg.get("version", 1), **kwargs)
        load_model_state(model, self.model_state, where=self.path)
        model.eval()
        return model


def check_model_state(model, state: Mapping[str, np.ndarray], where: str = "") -> None:
    """Raise CheckpointError unless ``state`` has exactly the model's keys and shapes."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise CheckpointError(f"{where}: model state does not match the model: "
                              f"missing {missing}, unexpected {unexpected}")
    for k, a in own.items():
        if np.shape(state[k]) != np.shape(a):
            raise CheckpointError(f"{where}: {k!r} has shape {np.shape(state[k])}, "
                                  f"the model expects {np.shape(a)}")


def load_model_state(model, state: Mapping[str, np.ndarray], where: str = "") -> None:
    """Copy ``state`` into ``model`` after checking every key and shape up front."""
    check_model_state(model, state, where)
    model.load_state_dict(dict(state))


def save(path: str | os.PathLike, groups: Mapping[str, Mapping[str, np.ndarray]],
         meta: Mapping[str, Any]) -> str:
    """Write ``groups`` ({group: {key: array}}) and ``meta`` (JSON-able) atomically."""
    path = os.fspath(path)
    arrays: dict[str, np.ndarray] = {}
    for group, items in groups.items():
        if "/" in group:
            raise ValueError(f"group name {group!r} must not contain '/'")
        for key, a in items.items():
            a = np.asarray(a)
            if a.dtype == object:
                raise TypeError(f"checkpoint array {group}/{key} has dtype object")
            arrays[f"{group}/{key}"] = a
    full_meta = {**meta, "format": FORMAT, "format_version": FORMAT_VERSION,
                 "checksum": _checksum(arrays)}
    meta_bytes = json.dumps(full_meta, default=_json_default, sort_keys=True).encode()
    arrays[_META] = np.frombuffer(meta_bytes, dtype=np.uint8)

    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    # A fresh name opened O_EXCL with mode 0666, so the umask applies as for any new file
    # (mkstemp would make checkpoints 0600).
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    # Make the rename durable (best effort: not every file system supports it).
    try:
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass
    return path


def load(path: str | os.PathLike) -> Checkpoint:
    """Read and verify a checkpoint; raises CheckpointError on any damage."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path!r} does not exist")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:  # zipfile/zlib/format errors of a damaged file
        raise CheckpointError(f"checkpoint {path!r} is truncated or corrupted "
                              f"({type(e).__name__}: {e})") from e
    if _META not in arrays:
        raise CheckpointError(f"{path!r} is not a resnet_cpp checkpoint (no {_META} entry)")
    try:
        meta = json.loads(arrays.pop(_META).tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"checkpoint {path!r} has corrupted metadata ({e})") from e
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path!r} is not a resnet_cpp checkpoint "
                              f"(format {meta.get('format')!r})")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{path!r} has checkpoint format version {version}; this "
                              f"resnet_cpp reads version {FORMAT_VERSION}")
    if _checksum(arrays) != meta.get("checksum"):
        raise CheckpointError(f"checkpoint {path!r} is corrupted (checksum mismatch)")
    groups: dict[str, dict[str, np.ndarray]] = {}
    for name, a in arrays.items():
        group, _, key = name.partition("/")
        groups.setdefault(group, {})[key] = a
    return Checkpoint(groups=groups, meta=meta, path=path)
