"""safetensors in and out through the ``safetensors`` package's NumPy API (optional extra:
``pip install "resnet_cpp[safetensors]"``).

A safetensors file is a JSON header (names, dtypes, shapes, offsets) and raw bytes, so
reading it runs no code. We store ``Weights.meta`` (model config, class names,
normalization, preprocessing) as JSON under the header's ``resnet_cpp`` metadata entry, so
a file written here rebuilds its model without further arguments.
"""
from __future__ import annotations

import json
import os
from typing import Any, Mapping

import numpy as np

from .weights import META_KEY, meta_json

__all__ = ["read_safetensors", "save_safetensors"]


def _package():
    try:
        import safetensors.numpy
    except ImportError:
        raise ImportError('safetensors files need the safetensors package: '
                          'pip install "resnet_cpp[safetensors]"') from None
    return safetensors


def read_safetensors(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict]:
    """(arrays by name, our metadata dict or {}) of a safetensors file."""
    st = _package()
    path = os.fspath(path)
    try:
        with st.safe_open(path, framework="np") as f:
            header = f.metadata() or {}
            arrays = {k: f.get_tensor(k) for k in f.keys()}
    except (OSError, ValueError, TypeError, st.SafetensorError) as e:
        raise ValueError(f"{path}: not a readable safetensors file ({e})") from e
    meta: dict = {}
    if META_KEY in header:
        try:
            meta = json.loads(header[META_KEY])
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: corrupted {META_KEY!r} metadata ({e})") from e
    return arrays, meta


def save_safetensors(path: str | os.PathLike, state_dict: Mapping[str, np.ndarray],
                     meta: Mapping[str, Any] | None = None) -> str:
    """Write ``state_dict`` (name -> array; a model's ``state_dict()``) and ``meta``."""
    st = _package()
    path = os.fspath(path)
    arrays = {k: np.ascontiguousarray(v) for k, v in state_dict.items()}
    st.numpy.save_file(arrays, path, metadata={META_KEY: meta_json(meta or {})})
    return path
