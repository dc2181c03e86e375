"""The ISA dispatch layer, thread control and build_info."""
import os
import subprocess
import sys

import pytest

import resnet_cpp
from conftest import ISA_ORDER
from resnet_cpp import _core


def test_build_info_fields():
    info = resnet_cpp.build_info()
    for key in ("version", "compiled_isas", "active_isa", "openmp", "num_threads", "cuda_built"):
        assert key in info
    assert info["compiled_isas"][0] == "scalar"
    assert info["active_isa"] in info["compiled_isas"]


def test_cap_lowers_active_isa():
    old = _core.max_isa()
    try:
        for isa in _core.compiled_isas():
            resnet_cpp.set_max_isa(isa)
            assert ISA_ORDER.index(_core.active_isa()) <= ISA_ORDER.index(isa)
    finally:
        resnet_cpp.set_max_isa(old)


def test_bad_isa_name():
    with pytest.raises(ValueError, match="isa"):
        resnet_cpp.set_max_isa("sse9")


def test_env_cap_applies_at_import():
    env = dict(os.environ, RESNET_CPP_MAX_ISA="scalar")
    out = subprocess.run([sys.executable, "-c", "import resnet_cpp; print(resnet_cpp.active_isa())"],
                         env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "scalar"


def test_threads():
    old = resnet_cpp.num_threads()
    try:
        resnet_cpp.set_num_threads(1)
        assert resnet_cpp.num_threads() == 1
        with pytest.raises(ValueError, match="num_threads"):
            resnet_cpp.set_num_threads(0)
    finally:
        resnet_cpp.set_num_threads(old)


def test_info_command():
    out = subprocess.run([sys.executable, "-m", "resnet_cpp", "info"], capture_output=True,
                         text=True, check=True)
    assert "active_isa" in out.stdout
