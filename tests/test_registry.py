"""The implementation registry (cpp/registry.h): every kernel of _core has an ordered list,
the entry that runs is the first the ISA cap allows and that applies, and impl_name /
impl_list / impl_ops report it, with argument errors that name the argument."""
from __future__ import annotations

import pytest

import resnet_cpp
from conftest import ISA_ORDER, PROBE_SHAPE, THREADS, cap, isa_of, running
from resnet_cpp import _core

# _core functions that are settings or introspection, not kernels (everything else must
# have an implementation list).
NOT_KERNELS = {"active_isa", "amx_status", "bf16_active", "compiled_isas", "conv_algorithm",
               "crop_flip_params", "detected_isa", "impl_list", "impl_name", "impl_ops",
               "max_isa", "max_num_threads", "num_threads", "precision", "set_conv_algorithm",
               "set_max_isa",
               "set_num_threads", "set_precision",
               # (C,)-vector arithmetic between synchronized BN's two passes: no ISA paths
               "batch_norm_finalize"}
OPS = _core.impl_ops()
CONV_SHAPE = ["N", "H", "W", "C", "K", "R", "S", "stride", "pad"]


def test_every_kernel_has_a_list():
    functions = {n for n in dir(_core) if not n.startswith("_") and callable(getattr(_core, n))}
    assert set(OPS) == functions - NOT_KERNELS
    for op, shape in OPS.items():
        assert shape == (CONV_SHAPE if op.startswith("conv2d_") else []), op


@pytest.mark.parametrize("op", list(OPS))
def test_lists_are_named_and_end_with_scalar(op):
    impls = _core.impl_list(op)
    assert len(set(impls)) == len(impls), impls
    for e in impls:
        name, isa = e.split(":")
        assert name and isa in _core.compiled_isas(), e
    assert isa_of(impls[-1]) == "scalar"


@pytest.mark.parametrize("op", list(OPS))
def test_the_first_allowed_entry_runs(op):
    """Under each cap, the entry that runs is in the list and allowed by the cap; for ops
    whose entries apply to every call it is the first entry the cap allows, and under the
    scalar cap it is the list's last entry."""
    best = ISA_ORDER.index(_core.detected_isa())
    impls = _core.impl_list(op)
    for isa in _core.compiled_isas():
        if ISA_ORDER.index(isa) > best:
            continue
        with cap(isa, THREADS[0]):
            got = running(op)
        assert got in impls
        assert ISA_ORDER.index(isa_of(got)) <= ISA_ORDER.index(isa)
        if not OPS[op]:
            assert got == next(e for e in impls if ISA_ORDER.index(isa_of(e)) <= ISA_ORDER.index(isa))
        if isa == "scalar":
            assert got == impls[-1]


def test_settings_choose_among_entries():
    """The conv algorithm and precision settings pick entries; the ISA cap filters them."""
    old = (_core.conv_algorithm(), _core.precision())
    try:
        with cap("scalar", 1):
            resnet_cpp.set_conv_algorithm("winograd4")
            assert running("conv2d_forward") == "direct:scalar"  # no scalar Winograd
        for impl in _core.impl_list("conv2d_forward"):
            name, isa = impl.split(":")
            if ISA_ORDER.index(isa) > ISA_ORDER.index(_core.detected_isa()):
                continue
            _core.set_precision("bf16" if name == "direct_bf16" else "fp32")
            resnet_cpp.set_conv_algorithm(name if name.startswith("winograd") else "direct")
            with cap(isa, 1):
                assert running("conv2d_forward") == impl
                # Winograd is for 3x3 stride-1 layers only
                assert _core.impl_name("conv2d_forward", **{**PROBE_SHAPE, "stride": 2}) == (
                    impl if name == "direct_bf16" else f"direct:{isa}")
    finally:
        resnet_cpp.set_conv_algorithm(old[0])
        _core.set_precision(old[1])


def test_shape_by_position_or_name():
    values = [PROBE_SHAPE[k] for k in CONV_SHAPE]
    want = running("conv2d_backward_data")
    assert _core.impl_name("conv2d_backward_data", *values) == want
    assert _core.impl_name("conv2d_backward_data", *values[:4], **dict(zip(CONV_SHAPE[4:], values[4:]))) == want


BAD = [
    (("conv2d_fwd",), {}, ValueError, r"^op: expected one of 'conv2d_forward', "),
    (("relu_forward", 3), {}, TypeError, r"^shape: relu_forward takes none, got 1 positional"),
    (("relu_forward",), dict(n=3), TypeError, r"^n: not a shape argument \(relu_forward takes none\)"),
    (("conv2d_forward",), {k: v for k, v in PROBE_SHAPE.items() if k != "pad"}, TypeError,
     r"^pad: missing \(conv2d_forward takes N, H, W, C, K, R, S, stride, pad\)"),
    (("conv2d_forward", 2), PROBE_SHAPE, TypeError, r"^N: given twice"),
    (("conv2d_forward",), dict(PROBE_SHAPE, M=1), TypeError, r"^M: not a shape argument"),
    (("conv2d_forward",), dict(PROBE_SHAPE, stride=1.0), TypeError,
     r"^stride: expected an integer, got float"),
    (("conv2d_forward",), dict(PROBE_SHAPE, pad=True), TypeError, r"^pad: expected an integer, got bool"),
    (("conv2d_forward",), dict(PROBE_SHAPE, C=0), ValueError, r"^C: expected an integer >= 1, got 0"),
    (("conv2d_forward",), dict(PROBE_SHAPE, stride=0), ValueError, r"^stride: expected an integer >= 1"),
    (("conv2d_forward",), dict(PROBE_SHAPE, pad=3), ValueError, r"^pad: expected an integer in \[0, "),
    (("conv2d_forward",), dict(PROBE_SHAPE, H=1, pad=0), ValueError, r"^output size < 1"),
]


@pytest.mark.parametrize("args, kwargs, error, match", BAD, ids=lambda v: str(v)[:40])
def test_bad_arguments(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        _core.impl_name(*args, **kwargs)


def test_impl_list_names_the_op():
    with pytest.raises(ValueError, match=r"^op: expected one of .*, got 'relu'$"):
        _core.impl_list("relu")
