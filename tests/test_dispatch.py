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
    with pytest.raises(ValueError, match=r"^isa\b"):
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


def test_amx_status_agrees_with_linux_cpu_flags():
    """build_info's amx line says "present" exactly where Linux lists amx_tile and
    amx_bf16 (its own CPUID and XCR0 reading)."""
    if not os.path.exists("/proc/cpuinfo"):
        pytest.skip("no /proc/cpuinfo to compare with")
    with open("/proc/cpuinfo") as f:
        flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    amx = resnet_cpp.build_info()["amx"]
    assert amx.startswith("present" if {"amx_tile", "amx_bf16"} <= set(flags) else "absent"), amx


def test_bf16_level_follows_the_cpu_flag():
    """avx512_bf16 is detected exactly where Linux lists avx512_bf16 (with AVX-512)."""
    if not os.path.exists("/proc/cpuinfo"):
        pytest.skip("no /proc/cpuinfo to compare with")
    with open("/proc/cpuinfo") as f:
        flags = set(next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), []))
    has = {"avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_bf16"} <= flags
    assert (_core.detected_isa() == "avx512_bf16") == has


def test_fp32_kernels_run_their_avx512_code_on_the_bf16_path():
    """Capped at avx512_bf16 (fp32 precision), the fp32 kernels take the avx512 code: same
    bits as under the avx512 cap, and Winograd (SIMD-only) still runs."""
    if _core.detected_isa() != "avx512_bf16" or "avx512_bf16" not in _core.compiled_isas():
        pytest.skip("this CPU has no AVX512-BF16, or this build no bf16 kernels")
    import numpy as np

    g = np.random.default_rng(3)
    x = g.standard_normal((2, 9, 9, 16)).astype(np.float32)
    w = g.standard_normal((3, 3, 16, 16)).astype(np.float32)
    gamma, beta = np.ones(16, np.float32), np.zeros(16, np.float32)
    old = (_core.max_isa(), _core.conv_algorithm(), _core.precision())
    out = {}
    try:
        resnet_cpp.set_conv_algorithm("winograd2")
        _core.set_precision("fp32")
        for isa in ("avx512", "avx512_bf16"):
            resnet_cpp.set_max_isa(isa)
            assert _core.impl_name("conv2d_forward", 2, 9, 9, 16, 16, 3, 3, 1, 1) == "winograd2:avx512"
            assert _core.impl_name("batch_norm_forward_train") == "batch_norm:avx512"
            bn = _core.batch_norm_forward_train(x, gamma, beta, np.zeros(16, np.float32),
                                                np.ones(16, np.float32), 0.1, 1e-5, True)[0]
            out[isa] = (_core.conv2d_forward(x, w, None, 1, 1), bn)
    finally:
        resnet_cpp.set_max_isa(old[0])
        resnet_cpp.set_conv_algorithm(old[1])
        _core.set_precision(old[2])
    for a, b in zip(out["avx512"], out["avx512_bf16"]):
        np.testing.assert_array_equal(a, b)
