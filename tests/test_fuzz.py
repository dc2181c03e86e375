"""Fuzz test of the boundary: every public function of resnet_cpp.functional and _core.

hypothesis draws the sizes of a valid call (tests/boundary.py), then up to three mutations
of its arguments: other dtypes and byte orders, strided, Fortran-order, unaligned,
read-only, empty, reshaped or non-array values, an output aliasing an input (exactly or
shifted), out-of-range indices, and scalars that are negative, huge, NaN or of the wrong
type. Each call must either return results equal to the float64 reference or raise
TypeError, ValueError or MemoryError; anything else fails the test, and a crash ends the
run. The scalar-only functions (settings, introspection) are fuzzed below them.

Bounded in CI (RESNET_CPP_FUZZ_EXAMPLES examples per function, default 25, derandomized);
by hand, e.g. ``RESNET_CPP_FUZZ_EXAMPLES=2000 python3 -m pytest -q tests/test_fuzz.py``
(then random). The outcome counts are printed at the end of the run.
"""
from __future__ import annotations

import collections
import copy
import os
import warnings

import numpy as np
import pytest

import boundary as B
import resnet_cpp
from resnet_cpp import _core

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

EXAMPLES = int(os.environ.get("RESNET_CPP_FUZZ_EXAMPLES", "25"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                derandomize="RESNET_CPP_FUZZ_EXAMPLES" not in os.environ,
                suppress_health_check=list(HealthCheck))
ALLOWED = (TypeError, ValueError, MemoryError)
OUTCOMES: collections.Counter = collections.Counter()  # (function, outcome) -> calls

INT_VALUES = [-1, 0, 1, 3, 2**31, 2**63 - 1, -2**63, 2**64, 1.5, "3", None, True]
# No huge values that are valid: the kernels compute in float32, where (momentum * buf) or
# g*g overflow to inf long before the float64 reference does (as in PyTorch). 3.5e38 is
# just past float32's range, which the bindings refuse.
FLOAT_VALUES = [float("nan"), float("inf"), -1.0, 0.0, 1e308, 3.5e38, -1e-30, "x", None]
OTHER_VALUES = [None, (), (1, 2), "x", 0, object()]
DTYPES = [np.float64, np.float16, np.int32, np.int64, np.uint8, np.bool_, np.complex64]


def _mutate_array(a: np.ndarray, how: str, draw, args: dict):
    if how == "dtype":  # (NaN, of unwritten outputs, or complex cast to integers: no warnings)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return a.astype(draw(st.sampled_from(DTYPES)))
    if how == "byteswap":
        return a.astype(a.dtype.newbyteorder())
    if how == "strided" and a.ndim:
        big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
        big[..., ::2] = a
        return big[..., ::2]
    if how == "fortran":
        return np.asfortranarray(a)
    if how == "transposed":
        return a.T
    if how == "unaligned":
        u = np.zeros(a.nbytes + 1, np.uint8)[1:].view(a.dtype).reshape(a.shape)
        u[...] = a
        return u
    if how == "readonly":
        r = a.copy()
        r.flags.writeable = False
        return r
    if how == "more_dims":
        return a[None]
    if how == "fewer_dims":
        return a.reshape(-1) if a.ndim > 1 or not a.size else np.array(a.flat[0])
    if how == "resized" and a.ndim:  # one dimension longer or shorter, values repeated
        axis = draw(st.integers(0, a.ndim - 1))
        if a.shape[axis]:
            n = max(0, a.shape[axis] + draw(st.sampled_from([-1, 1, 5])))
            return np.take(a, np.arange(n) % a.shape[axis], axis=axis)
    if how == "empty" and a.ndim:
        return a[:0]
    if how == "list":
        return a.tolist()
    if how == "bad_index" and a.dtype.kind == "i" and a.size:
        b = a.copy()
        b.flat[draw(st.integers(0, a.size - 1))] = draw(st.sampled_from([-1, 2**31 - 1, 10**6]))
        return b
    if how == "alias":  # exactly another array argument, or a view shifted into it
        others = [k for k, v in args.items() if isinstance(v, np.ndarray) and v is not a]
        if others:
            other = args[draw(st.sampled_from(others))]
            if draw(st.booleans()) or other.nbytes < 8 or not other.flags.c_contiguous:
                return other
            flat = other.reshape(-1).view(np.uint8)[4:]
            n = min(a.nbytes, flat.nbytes) // max(a.itemsize, 1)
            return flat[:n * a.itemsize].view(a.dtype)
    return draw(st.sampled_from(OTHER_VALUES))


ARRAY_MUTATIONS = ["dtype", "byteswap", "strided", "fortran", "transposed", "unaligned",
                   "readonly", "more_dims", "fewer_dims", "resized", "empty", "list",
                   "bad_index", "alias", "other"]


def _mutate(args: dict, draw) -> list[str]:
    """Apply up to three mutations in place; returns what was done (for the failure report)."""
    done = []
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from(sorted(args)))
        v = args[name]
        if isinstance(v, np.ndarray):
            how = draw(st.sampled_from(ARRAY_MUTATIONS))
            args[name] = _mutate_array(v, how, draw, args)
        elif isinstance(v, bool):
            how, args[name] = "bool", draw(st.sampled_from([2, np.bool_(True), None, "yes"]))
        elif isinstance(v, int):
            how, args[name] = "int", draw(st.sampled_from(INT_VALUES))
        elif isinstance(v, float):
            how, args[name] = "float", draw(st.sampled_from(FLOAT_VALUES))
        elif v is None:
            how = "array"
            shape = draw(st.lists(st.integers(0, 4), min_size=0, max_size=4))
            args[name] = np.ones(shape, np.float32)
        else:
            how, args[name] = "other", draw(st.sampled_from(OTHER_VALUES))
        done.append(f"{name}:{how}")
    return done


def _record(name: str, outcome: str) -> None:
    OUTCOMES[(name, outcome)] += 1


@pytest.mark.parametrize("builder", B.BUILDERS, ids=lambda b: B.build(b).name)
@FUZZ
@given(data=st.data())
def test_array_function(builder, data):
    draw = data.draw
    case = builder(lambda n, lo, hi: draw(st.integers(lo, hi), label=n),
                   np.random.default_rng(draw(st.integers(0, 2**32 - 1), label="values")))
    args = dict(case.args)
    done = _mutate(args, draw)
    before = copy.deepcopy(args)
    try:
        result = case.fn(**args)
    except ALLOWED as e:
        _record(case.name, type(e).__name__)
        return
    except Exception as e:  # noqa: BLE001 - anything else is a finding
        raise AssertionError(f"{case.name} with {done} raised {type(e).__name__}: {e}") from e
    try:
        case.check(result, args, before)
    except AssertionError as e:
        raise AssertionError(f"{case.name} with {done} returned a wrong result: {e}") from e
    _record(case.name, "equal to the reference")


# ---------------------------------------------------------------------------- scalar functions


REFUSED = object()


def _call(name: str, fn, *args):
    """fn(*args): its result, or REFUSED after an allowed exception (both recorded)."""
    try:
        r = fn(*args)
    except ALLOWED as e:
        _record(f"_core.{name}", type(e).__name__)
        return REFUSED
    _record(f"_core.{name}", "equal to the reference")
    return r


SMALL = st.one_of(st.integers(-2, 9), st.sampled_from([2**16, 2**31, 2**63 - 1, -2**63, 2**64,
                                                       1.5, None, "1"]))


@FUZZ
@given(st.sampled_from(["conv2d_forward", "conv2d_backward_data", "conv2d_backward_weight",
                        "conv2d", "", 3]),
       st.tuples(*[st.integers(1, 9)] * 5, st.integers(1, 3), st.integers(1, 3),
                 st.integers(1, 2), st.integers(0, 1)), st.integers(0, 18), SMALL)
def test_impl_name(op, dims, i, bad):
    """N, H, W, C, K, R, S, stride, pad: plausible sizes, one of them replaced half the time."""
    dims = list(dims)
    if i < 9:
        dims[i] = bad
    impl = _call("impl_name", _core.impl_name, op, *dims)
    if impl is not REFUSED:
        N, H, W, C, K, R, S, stride, pad = dims
        assert impl in _core.impl_list(op)
        # Winograd is only ever chosen for 3x3 stride-1 convolutions.
        assert not impl.startswith("winograd") or (R, S, stride) == (3, 3, 1)


@FUZZ
@given(SMALL, SMALL, SMALL, st.sampled_from([True, False, None, 2, "x"]))
def test_crop_flip_params(seed, i, padding, flip):
    r = _call("crop_flip_params", _core.crop_flip_params, seed, i, padding, flip)
    if r is not REFUSED:
        oy, ox, flipped = r
        assert 0 <= oy <= 2 * padding and 0 <= ox <= 2 * padding
        assert flipped in (True, False) and (flip or not flipped)
        assert _core.crop_flip_params(seed, i, padding, flip) == r  # a function of its inputs


SETTERS = [  # (setter, getter, valid values)
    ("set_conv_algorithm", "conv_algorithm", ["auto", "fast", "direct", "winograd2", "winograd4"]),
    ("set_max_isa", "max_isa", ["scalar", "avx2", "avx512"]),
    ("set_num_threads", "num_threads", list(range(1, _core.max_num_threads() + 1))),
]


@pytest.mark.parametrize("setter,getter,valid", SETTERS, ids=[s[0] for s in SETTERS])
@FUZZ
@given(value=st.one_of(st.sampled_from(["auto", "avx2", "scalar", "AVX2", "", "x" * 300, None,
                                        0, -1, 1, 2, 2**31, 2**64, 1.5]),
                       st.integers(-5, 40)))
def test_setting(setter, getter, valid, value):
    old = getattr(_core, getter)()
    try:
        if _call(setter, getattr(_core, setter), value) is REFUSED and value in valid:
            pytest.fail(f"{setter}({value!r}) refused a valid value")
        now = getattr(_core, getter)()
        if value in valid and (setter != "set_num_threads" or _core.openmp):
            assert now == value
        elif value not in valid:
            assert now == old  # a refused value changes nothing
    finally:
        getattr(_core, setter)(old)


@FUZZ
@given(st.sampled_from(["active_isa", "compiled_isas", "conv_algorithm", "detected_isa",
                        "max_isa", "max_num_threads", "num_threads"]),
       st.lists(st.sampled_from([None, 1, "x"]), max_size=2))
def test_introspection(name, extra):
    r = _call(name, getattr(_core, name), *extra)
    if r is not REFUSED:
        assert not extra  # they take no arguments
        info = resnet_cpp.build_info()
        assert r == info[name] if name in info else r >= 1


@FUZZ
@given(st.one_of(st.integers(-3, 1000), st.sampled_from([0, -2**63, 2**64, 1.5, None, "9"])))
def test_fma_peak_gflops(iters):
    # Valid counts stay small here: 2^40 iterations (the upper bound) would run for hours.
    r = _call("fma_peak_gflops", _core.fma_peak_gflops, iters)
    assert r is REFUSED or r > 0


def summary(per_function: bool) -> list[str]:
    """Lines reporting the calls made and their outcomes (conftest prints them at the end)."""
    by_fn: dict = collections.defaultdict(collections.Counter)
    for (fn, outcome), n in OUTCOMES.items():
        by_fn[fn][outcome] += n
    totals = collections.Counter()
    for c in by_fn.values():
        totals.update(c)
    lines = [f"fuzz: {sum(totals.values())} calls of {len(by_fn)} functions: "
             + ", ".join(f"{n} {k}" for k, n in totals.most_common())]
    if per_function:
        lines += [f"  {fn}: " + ", ".join(f"{n} {k}" for k, n in c.most_common())
                  for fn, c in sorted(by_fn.items())]
    return lines
