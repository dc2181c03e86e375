"""Shared fixtures: every kernel test runs on each ISA path x {1 thread, all threads}."""
from __future__ import annotations

import os

import numpy as np
import pytest

import resnet_cpp
from resnet_cpp import _core


# Every ISA path, in order; each runs everything the ones before it run.
ISA_ORDER = ["scalar", "avx2", "avx512", "avx512_bf16"]


def runnable_isas(all_paths: bool = False) -> list[str]:
    """Compiled paths this CPU can run, up to avx512 (all three on an AVX-512 machine):
    avx512_bf16 runs the fp32 kernels of avx512, so fp32 tests do not repeat it. With
    ``all_paths``, avx512_bf16 too where it runs."""
    best = ISA_ORDER.index(_core.detected_isa())
    top = best if all_paths else min(best, ISA_ORDER.index("avx512"))
    return [i for i in _core.compiled_isas() if ISA_ORDER.index(i) <= top]


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


CONV_ALGORITHMS = ["auto", "fast", "direct", "winograd2", "winograd4"]


@pytest.fixture(params=CONV_ALGORITHMS)
def every_conv_algorithm(request):
    """Run the test under each convolution setting (``set_conv_algorithm``), restoring it."""
    old = resnet_cpp.conv_algorithm()
    resnet_cpp.set_conv_algorithm(request.param)
    yield request.param
    resnet_cpp.set_conv_algorithm(old)


@pytest.fixture
def default_conv_algorithm():
    """Run under the default convolution algorithms ('auto'), restoring the setting after."""
    old = resnet_cpp.conv_algorithm()
    resnet_cpp.set_conv_algorithm("auto")
    yield
    resnet_cpp.set_conv_algorithm(old)
