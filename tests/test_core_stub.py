"""The type stub shipped with the package (python/resnet_cpp/_core.pyi) matches the built
_core: every public function, with its parameter names and defaults. Regenerate it with
``tools/gen_core_stub.sh`` after changing a binding. Types are not compared: their spelling
depends on the pybind11 version that built the module."""
from __future__ import annotations

import ast
import os
import subprocess
import sys

import pytest

import resnet_cpp
from resnet_cpp import _core

STUB = os.path.join(os.path.dirname(resnet_cpp.__file__), "_core.pyi")


def _signatures(source: str) -> dict:
    """{function name: [(parameter, default source or None), ...]} of a stub's top level."""
    out = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef):
            a = node.args
            defaults = [None] * (len(a.args) - len(a.defaults)) + [ast.unparse(d) for d in a.defaults]
            params = list(zip([p.arg for p in a.args], defaults))
            params += [(p.arg, None if d is None else ast.unparse(d))
                       for p, d in zip(a.kwonlyargs, a.kw_defaults)]
            out[node.name] = params
    return out


def test_stub_is_shipped_with_the_package():
    assert os.path.isfile(STUB), f"{STUB} is missing: run tools/gen_core_stub.sh"
    assert os.path.isfile(os.path.join(os.path.dirname(STUB), "py.typed"))
    public = {n for n in dir(_core) if not n.startswith("_") and callable(getattr(_core, n))}
    with open(STUB) as f:
        assert set(_signatures(f.read())) == public


def test_stub_matches_the_built_module(tmp_path):
    pytest.importorskip("pybind11_stubgen", reason="pybind11-stubgen is in the test extra")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.dirname(os.path.dirname(resnet_cpp.__file__)), os.environ.get("PYTHONPATH", "")]))
    subprocess.run([sys.executable, "-m", "pybind11_stubgen", "resnet_cpp._core", "-o",
                    str(tmp_path)], check=True, env=env, capture_output=True)
    with open(tmp_path / "resnet_cpp" / "_core.pyi") as f:
        built = _signatures(f.read())
    with open(STUB) as f:
        shipped = _signatures(f.read())
    changed = sorted(n for n in built.keys() | shipped.keys() if built.get(n) != shipped.get(n))
    assert not changed, f"_core.pyi is stale for {changed}: run tools/gen_core_stub.sh"
