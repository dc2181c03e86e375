"""Shared fixtures: every kernel test runs on each ISA path x {1 thread, all threads}."""
from __future__ import annotations

import os
import sys

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


def pytest_terminal_summary(terminalreporter):
    """The fuzz run's count of calls and outcomes (test_fuzz.py), when it ran."""
    fuzz = sys.modules.get("test_fuzz")
    if fuzz is not None and fuzz.OUTCOMES:
        for line in fuzz.summary(per_function=terminalreporter.verbosity > 0):
            terminalreporter.write_line(line)
