"""The ISA dispatch layer, thread control and build_info."""
import os
import subprocess
import sys

import pytest

import resnet_cpp
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
            order = ["scalar", "avx2", "avx512"]
            assert order.index(_core.active_isa()) <= order.index(isa)
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
    bound = _core.max_num_threads()
    try:
        resnet_cpp.set_num_threads(1)
        assert resnet_cpp.num_threads() == 1
        if _core.openmp:
            assert bound == 4 * len(os.sched_getaffinity(0))  # omp_get_num_procs
            resnet_cpp.set_num_threads(bound)
            assert resnet_cpp.num_threads() == bound
        for bad in (0, -1, bound + 1, 2000):
            with pytest.raises(ValueError, match=rf"^n: expected a thread count in \[1, {bound}\]"):
                resnet_cpp.set_num_threads(bad)
    finally:
        resnet_cpp.set_num_threads(old)


def test_omp_num_threads_beyond_the_bound_is_clamped_with_a_warning():
    # libgomp aborts the process when it cannot create the threads asked for: the default
    # from the environment must be bounded like set_num_threads.
    code = ("import warnings; warnings.simplefilter('always')\n"
            "with warnings.catch_warnings(record=True) as w:\n"
            "    from resnet_cpp import _core\n"
            "print(_core.num_threads(), _core.max_num_threads(), [str(x.message) for x in w])")
    env = {**os.environ, "OMP_NUM_THREADS": "100000"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True, timeout=60)
    threads, bound, warned = out.stdout.split(" ", 2)
    assert int(threads) == int(bound) < 100000
    assert "OMP_NUM_THREADS asks for 100000 threads" in warned


def test_info_command():
    out = subprocess.run([sys.executable, "-m", "resnet_cpp", "info"], capture_output=True,
                         text=True, check=True)
    assert "active_isa" in out.stdout
