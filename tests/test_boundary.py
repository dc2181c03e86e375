"""The boundary rules, checked for every public array function (tests/boundary.py holds one
valid call of each):

- aliasing: an output that shares memory with an input (or another output), exactly or as a
  shifted view, either gives the same result as separate arrays or raises a ValueError
  naming both arguments; buffers that are read and written refuse any overlap;
- memory: a scalar that asks for an output larger than any memory gets a MemoryError naming
  that output, before anything is allocated;
- values the kernels index with, changed by another Python thread during calls, never crash
  the process (they are checked in a copy the kernel reads);
- concurrent calls from Python threads (the GIL is released) give the same results.
"""
from __future__ import annotations

import copy
import inspect
import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import boundary as B
from resnet_cpp import _core
from resnet_cpp import functional as F

# _core functions with no array argument: settings and introspection (test_fuzz.py calls them).
SCALAR_ONLY = {"active_isa", "amx_status", "bf16_active", "compiled_isas", "conv_algorithm",
               "crop_flip_params", "detected_isa", "fma_peak_gflops", "impl_list", "impl_name",
               "impl_ops", "max_isa", "max_num_threads", "num_threads", "precision",
               "set_conv_algorithm", "set_max_isa", "set_num_threads", "set_precision"}


def _full_pick(seed: int) -> B.Pick:
    """Seeded sizes, every flag on: all optional outputs and inputs are present."""
    g = np.random.default_rng(seed)
    return lambda name, lo, hi: hi if (lo, hi) == (0, 1) else int(g.integers(lo, hi + 1))


def _full(builder, seed: int = 3) -> B.Case:
    return builder(_full_pick(seed), np.random.default_rng(seed))


CASES = [_full(b) for b in B.BUILDERS]


def test_every_public_function_has_a_case():
    core = {n for n in dir(_core) if not n.startswith("_") and callable(getattr(_core, n))}
    functional = {n for n in dir(F) if not n.startswith("_") and inspect.isfunction(getattr(F, n))}
    names = {c.name for c in CASES}
    assert {f"_core.{n}" for n in core - SCALAR_ONLY} == {n for n in names if n.startswith("_core.")}
    assert {f"functional.{n}" for n in functional} == {n for n in names
                                                       if n.startswith("functional.")}
    assert SCALAR_ONLY <= core


# ---------------------------------------------------------------------------- aliasing


def _arrays(args: dict) -> list[str]:
    return [k for k, v in args.items() if isinstance(v, np.ndarray)]


def _alias_params():
    for c in CASES:
        outs = [o for o in c.writes if c.args.get(o) is not None]
        for o in outs:
            for i in _arrays(c.args):
                if i == o:
                    continue
                same = c.args[o].shape == c.args[i].shape and c.args[o].dtype == c.args[i].dtype
                for mode in (["same"] if same else []) + ["after", "before"]:
                    yield pytest.param(c, o, i, mode, id=f"{c.name}-{o}-{i}-{mode}")


def _overlapping(out: np.ndarray, inp: np.ndarray, mode: str):
    """(new out, new inp): inp's values; out a view 8 bytes after ("after") or before
    ("before") inp in one buffer, or inp itself ("same")."""
    if mode == "same":
        inp = inp.copy()
        return inp, inp
    buf = np.zeros(out.nbytes + inp.nbytes + 16, np.uint8)  # 16-byte aligned
    o0, i0 = (8, 0) if mode == "after" else (0, 8)
    new_in = buf[i0:i0 + inp.nbytes].view(inp.dtype).reshape(inp.shape)
    new_in[...] = inp
    new_out = buf[o0:o0 + out.nbytes].view(out.dtype).reshape(out.shape)
    return new_out, new_in


def _results(case: B.Case, args: dict) -> list:
    return [None if r is None else np.array(r) for r in case.got(case.fn(**args), args)]


@pytest.mark.parametrize("case,out,inp,mode", _alias_params())
def test_overlapping_output_is_refused_or_correct(case, out, inp, mode):
    base = _results(case, copy.deepcopy(case.args))
    args = copy.deepcopy(case.args)
    args[out], args[inp] = _overlapping(args[out], args[inp], mode)
    try:
        got = _results(case, args)
    except ValueError as e:  # names both: either one first (two outputs: the later one)
        msg = str(e)
        assert any(msg.startswith(f"{a}: ") and f" {b} " in msg for a, b in ((out, inp), (inp, out))), msg
        return
    # Accepted: only an output that is not also read may alias, and the result must be the
    # one separate arrays give (same kernel, same path: bit for bit).
    assert out not in case.rw and inp not in case.rw, f"{case.name} accepted {out} over {inp}"
    for g, b in zip(got, base):
        assert (g is None and b is None) or np.array_equal(g, b, equal_nan=True), \
            f"{case.name}: {out} over {inp} ({mode}) gives a different result"


def test_documented_in_place_calls_are_accepted(rng):
    """The in-place uses the docs promise stay allowed (not all refused)."""
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    y = x.copy()
    assert _core.relu_forward(y, out=y) is y and np.array_equal(y, np.maximum(x, 0))
    z = rng.standard_normal((4, 7)).astype(np.float32)
    loss, d = _core.softmax_cross_entropy(z.copy(), np.array([1, 2, 3, 4]), 0.0)
    zz = z.copy()
    loss2, d2 = _core.softmax_cross_entropy(zz, np.array([1, 2, 3, 4]), 0.0, dlogits_out=zz)
    assert d2 is zz and loss2 == loss and np.array_equal(d2, d)


# ---------------------------------------------------------------------------- memory


@pytest.mark.parametrize("case", [c for c in CASES if c.huge], ids=lambda c: c.name)
def test_output_larger_than_memory_is_a_named_memory_error(case):
    overrides, output = case.huge
    with pytest.raises(MemoryError, match=rf"^{output}: an array of shape \(.*\) needs "
                                          r"[\d.]+ [KMGTPE]iB, more than the "):
        case.fn(**{**case.args, **overrides})


def test_failed_allocation_is_a_named_memory_error():
    """Under an address-space limit the allocation itself fails: the error names the array."""
    code = textwrap.dedent("""
        import resource, numpy as np
        from resnet_cpp import _core
        vm = int(open("/proc/self/status").read().split("VmSize:")[1].split()[0]) * 1024
        resource.setrlimit(resource.RLIMIT_AS, (vm + (1 << 29), vm + (1 << 29)))
        try:  # y (1, 1, 1, 2^29): 2 GiB, beyond the limit
            _core.shortcut_a_forward(np.zeros((1, 1, 1, 1), np.float32), 1 << 29, 1)
        except MemoryError as e:
            print(e)
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    # (With less than 2 GiB available, the check before allocating names it instead.)
    assert r.stdout.startswith(("out: allocating an array of shape (1, 1, 1, 536870912) failed",
                                "out: an array of shape (1, 1, 1, 536870912) needs")), r.stdout


# ---------------------------------------------------------------------------- values and threads


RACE = textwrap.dedent("""
    import sys, threading, time
    import numpy as np
    sys.path.insert(0, {tests!r})
    import boundary as B
    builder = [b for b in B.BUILDERS if B.build(b).name == {name!r}][0]
    # Large sizes keep the kernel running while the other thread writes.
    big = {{"N": 4096, "K": 256, "C": 64}}
    case = builder(lambda n, lo, hi: big.get(n, hi), np.random.default_rng(0))
    arr = case.args[{param!r}]
    good = arr.copy()
    bad = np.where(np.arange(arr.size).reshape(arr.shape) % 2 == 0, {bound}, -2**31 + 7).astype(arr.dtype)
    stop = False
    def flip():  # yields the GIL in both states: calls start with either, kernels see both
        while not stop:
            arr[...] = good
            time.sleep(0)
            arr[...] = bad
            time.sleep(0)
    t = threading.Thread(target=flip)
    t.start()
    ok = refused = 0
    end = time.time() + 1.5
    while time.time() < end:
        try:
            case.fn(**case.args)
            ok += 1
        except ValueError:
            refused += 1
    stop = True
    t.join()
    print(ok, refused)
""")


@pytest.mark.parametrize("case,param", [(c, p) for c in CASES for p in c.indices],
                         ids=lambda v: v if isinstance(v, str) else v.name)
def test_index_values_changed_by_another_thread_never_crash(case, param):
    code = RACE.format(tests=os.path.dirname(__file__), name=case.name, param=param,
                       bound=case.indices[param])
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"the process died ({r.returncode}): {r.stderr[-2000:]}"
    ok, refused = map(int, r.stdout.split())
    assert refused > 0  # the other thread's values were seen and refused


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_concurrent_calls_from_python_threads(case):
    base = _results(case, copy.deepcopy(case.args))
    results, errors = [], []

    def work():
        try:
            for _ in range(3):
                results.append(_results(case, copy.deepcopy(case.args)))
        except Exception as e:  # reported below: a thread's exception would be lost
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for got in results:
        for g, b in zip(got, base):
            assert (g is None and b is None) or np.array_equal(g, b, equal_nan=True), case.name
