"""Shared fixtures: kernel tests run on each entry of their op's implementation list
(_core.impl_list) this CPU runs x {1 thread, all threads}; model-level tests on each ISA path
that changes what runs."""
from __future__ import annotations

import os
from contextlib import contextmanager
import sys

import numpy as np
import pytest

import resnet_cpp
from resnet_cpp import _core


# Every ISA path, in order; each runs everything the ones before it run.
ISA_ORDER = ["scalar", "avx2", "avx512", "avx512_bf16"]
THREADS = sorted({1, max(2, os.cpu_count() or 1)})
# A call shape for ops whose entries depend on it (the conv ops): 3x3 stride 1, 16 channels.
PROBE_SHAPE = dict(N=2, H=8, W=8, C=16, K=16, R=3, S=3, stride=1, pad=1)


def isa_of(impl: str) -> str:
    """The ISA path of an implementation named 'name:isa'."""
    return impl.split(":")[1]


def runnable_impls(op: str) -> list[str]:
    """The entries of op's implementation list (best first) that this CPU can run."""
    best = ISA_ORDER.index(_core.detected_isa())
    return [e for e in _core.impl_list(op) if ISA_ORDER.index(isa_of(e)) <= best]


def running(op: str) -> str:
    """The entry op runs now (conv ops: on PROBE_SHAPE)."""
    return _core.impl_name(op, **{k: PROBE_SHAPE[k] for k in _core.impl_ops()[op]})


def _paths() -> list[str]:
    """The ISA caps that change which entry some op runs (under the settings in effect at
    import), lowest first: the paths a test of the whole model must cover."""
    best = ISA_ORDER.index(_core.detected_isa())
    old, seen, paths = _core.max_isa(), set(), []
    try:
        for isa in _core.compiled_isas():
            if ISA_ORDER.index(isa) <= best:
                _core.set_max_isa(isa)
                runs = tuple(running(op) for op in _core.impl_ops())
                if runs not in seen:
                    seen.add(runs)
                    paths.append(isa)
    finally:
        _core.set_max_isa(old)
    return paths


PATHS = _paths()


@contextmanager
def cap(isa: str, threads: int):
    """Run under this ISA cap and thread count, restoring both afterwards."""
    old = (_core.max_isa(), _core.num_threads())
    resnet_cpp.set_max_isa(isa)
    resnet_cpp.set_num_threads(threads)
    try:
        assert _core.active_isa() == isa
        yield
    finally:
        resnet_cpp.set_max_isa(old[0])
        resnet_cpp.set_num_threads(old[1])


@pytest.fixture(params=[(i, t) for i in PATHS for t in THREADS], ids=lambda p: f"{p[0]}-t{p[1]}")
def isa_threads(request):
    """Run the test under one ISA path (PATHS) and thread count, restoring both afterwards."""
    with cap(*request.param):
        yield request.param


def pytest_generate_tests(metafunc):
    """A test using `impl_threads` and marked @pytest.mark.impls("op") runs once per entry of
    op's list this CPU runs x THREADS."""
    if "impl_threads" in metafunc.fixturenames:
        marker = metafunc.definition.get_closest_marker("impls")
        assert marker, f"{metafunc.function.__name__}: impl_threads needs @pytest.mark.impls(op)"
        op = marker.args[0]
        metafunc.parametrize("impl_threads", [(op, e, t) for e in runnable_impls(op) for t in THREADS],
                             indirect=True, ids=lambda p: f"{p[1]}-t{p[2]}")


@pytest.fixture
def impl_threads(request):
    """Run the test with one entry of its op's list (capped at that entry's ISA, which must
    then be what the op runs) and one thread count; yields (entry, threads)."""
    op, impl, threads = request.param
    with cap(isa_of(impl), threads):
        assert running(op) == impl
        yield impl, threads


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


def pytest_terminal_summary(terminalreporter):
    """The fuzz run's count of calls and outcomes (test_fuzz.py), when it ran."""
    fuzz = sys.modules.get("test_fuzz")
    if fuzz is not None and fuzz.OUTCOMES:
        for line in fuzz.summary(per_function=terminalreporter.verbosity > 0):
            terminalreporter.write_line(line)
