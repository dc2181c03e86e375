"""Training checkpoints: one self-checking ``.npz`` file per save.

A checkpoint holds arrays in groups (``model/<state_dict key>`` for parameters and BN
statistics, ``optimizer/<key>`` for momentum buffers or Adam moments) plus JSON metadata
stored as a uint8 array under ``__meta__``, so it loads with ``allow_pickle=False``.
The metadata holds the format version, a sha256 checksum, and whatever the trainer
records: model config (name, version, kwargs) to rebuild the model, normalization,
optimizer/schedule scalars, the data position (seed, epoch, batch index), metrics. The
checksum covers every array's name, dtype, shape and bytes and (format 2) the metadata
itself as canonical JSON, so an edited mean or class count is caught like a flipped bit in
a weight. Format 1 files (arrays only) still load, with a warning.

Writes are atomic: the file is written to a temporary file in the same directory,
flushed and fsync'ed, then ``os.replace``'d over the target, so a crash or a failing
write leaves any previous checkpoint intact; :func:`remove_stale_temps` deletes the
temporary file a killed writer leaves behind. Loading verifies the format and the
checksum before returning anything, so a truncated or corrupted file raises
:class:`CheckpointError` and nothing is half-loaded.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import warnings
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

__all__ = ["CheckpointError", "Checkpoint", "save", "load", "check_model_state", "load_model_state",
           "remove_stale_temps", "FORMAT", "FORMAT_VERSION"]

FORMAT = "resnet_cpp.checkpoint"
FORMAT_VERSION = 2  # 2: the checksum covers the metadata too; 1: the arrays only
_META = "__meta__"
# save()'s temporary file: .<target name>.<pid of the writer>.<12 hex digits>.tmp
_TEMP = re.compile(r"^\..+\.(\d+)\.[0-9a-f]{12}\.tmp$")


class CheckpointError(ValueError):
    """A checkpoint file is missing, truncated, corrupted or of an unknown format."""


def _checksum(arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any] | None = None) -> str:
    """sha256 over (name, dtype, shape, bytes) of every array, in sorted name order, then
    (format 2) the metadata as parsed from its JSON, re-serialized with sorted keys and
    without the checksum itself."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(json.dumps([name, a.dtype.str, list(a.shape)]).encode())
        h.update(a.tobytes())
    if meta is not None:
        h.update(json.dumps({k: v for k, v in meta.items() if k != "checksum"},
                            sort_keys=True).encode())
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

    def normalization(self) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The (mean, std) inputs were normalized with, float32 (C,) each, or (None, None).

        Raises CheckpointError unless both are finite, std > 0 and there is one value per
        image channel (a std of 0 would divide every image by zero)."""
        norm = self.meta.get("normalization")
        if not norm:
            return None, None
        try:
            mean = np.asarray(norm["mean"], np.float64)
            std = np.asarray(norm["std"], np.float64)
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{self.path}: malformed normalization {norm!r} ({e})") from e
        shape = (self.meta.get("data") or {}).get("image_shape")
        channels = shape[0] if shape else mean.size
        if mean.shape != (channels,) or std.shape != (channels,) or \
                not (np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()):
            raise CheckpointError(f"{self.path}: normalization needs {channels} finite means "
                                  f"and stds > 0, got mean {mean.tolist()} std {std.tolist()}")
        return mean.astype(np.float32), std.astype(np.float32)

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
    # Checksummed as load() will see it: parsed back from JSON (tuples are lists, keys str).
    full_meta = json.loads(json.dumps({**meta, "format": FORMAT, "format_version": FORMAT_VERSION},
                                      default=_json_default))
    full_meta["checksum"] = _checksum(arrays, full_meta)
    meta_bytes = json.dumps(full_meta, sort_keys=True).encode()
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
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError) and e.filename is None:  # a full disk names no file
            raise OSError(e.errno, e.strerror or str(e), path) from e
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


def remove_stale_temps(directory: str | os.PathLike) -> list[str]:
    """Delete the temporary files that save()s killed mid-write left in ``directory`` (those
    whose writing process is gone) and return their paths."""
    removed = []
    for name in sorted(os.listdir(directory)):
        m = _TEMP.match(name)
        if m is None or _process_alive(int(m.group(1))):
            continue
        path = os.path.join(directory, name)
        try:
            os.unlink(path)
            removed.append(path)
        except FileNotFoundError:
            pass
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


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
    if version not in (1, FORMAT_VERSION):
        raise CheckpointError(f"{path!r} has checkpoint format version {version}; this "
                              f"resnet_cpp reads versions 1 and {FORMAT_VERSION}")
    if _checksum(arrays, meta if version >= 2 else None) != meta.get("checksum"):
        raise CheckpointError(f"checkpoint {path!r} is corrupted (checksum mismatch)")
    if version == 1:
        warnings.warn(f"{path}: checkpoint format version 1, whose checksum covers the arrays "
                      "but not the metadata (normalization, classes); saving it again (e.g. "
                      "resuming the run) writes version 2", UserWarning, stacklevel=2)
    groups: dict[str, dict[str, np.ndarray]] = {}
    for name, a in arrays.items():
        group, _, key = name.partition("/")
        groups.setdefault(group, {})[key] = a
    return Checkpoint(groups=groups, meta=meta, path=path)
