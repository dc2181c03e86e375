"""Shared fixtures: every kernel test runs on each ISA path x {1 thread, all threads}."""
from __future__ import annotations

import os

import numpy as np
import pytest

import resnet_cpp
from resnet_cpp import _core


def runnable_isas() -> list[str]:
    """Compiled paths this CPU can run (all three on an AVX-512 machine)."""
    order = ["scalar", "avx2", "avx512"]
    best = order.index(_core.detected_isa())
    return [i for i in _core.compiled_isas() if order.index(i) <= best]


THREADS = sorted({1, max(2, os.cpu_count() or 1)})


@pytest.fixture(params=[(i, t) for i in runnable_isas() for t in THREADS],
                ids=lambda p: f"{p[0]}-t{p[1]}")
def isa_threads(request):
    """Run the test under one ISA cap and thread count, restoring both afterwards."""
    isa, threads = request.param
    old_isa, old_threads = _core.max_isa(), _core.num_threads()
    resnet_cpp.set_max_isa(isa)
    resnet_cpp.set_num_threads(threads)
    assert _core.active_isa() == isa
    yield request.param
    resnet_cpp.set_max_isa(old_isa)
    resnet_cpp.set_num_threads(old_threads)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def default_conv_algorithm():
    """Run under the default convolution algorithms ('auto'), restoring the setting after."""
    old = resnet_cpp.conv_algorithm()
    resnet_cpp.set_conv_algorithm("auto")
    yield
    resnet_cpp.set_conv_algorithm(old)
