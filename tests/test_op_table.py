"""_core and _cuda implement one op surface (cpp/bindings/ops.h): the same op names with the
same parameters (names, order, defaults). Any drift fails here, in CI on the emulated _cuda.

Only introspection: it needs a built _cuda, not a GPU. Parameter types are not compared: a
few legitimately differ (lr is a float for _core, a float or a device array for _cuda).
Functions that belong to one backend only are listed below, so a new op must be added to
both modules or declared here.
"""
from __future__ import annotations

import pathlib
import re

import pytest

from resnet_cpp import _core

try:
    from resnet_cpp import _cuda
except ImportError as e:
    _cuda = None
    _why = f"resnet_cpp._cuda not built ({e}); build with RESNET_CPP_CUDA=1 or tools/cuda_emu"

# Build, threads and ISA control, convolution algorithm and bf16 precision choice, host-side
# augmentation, and the split batch-norm passes of synchronized BN (MPI runs on the CPU).
CPU_ONLY = {"active_isa", "compiled_isas", "detected_isa", "max_isa", "set_max_isa",
            "num_threads", "set_num_threads", "set_conv_algorithm", "conv_algorithm",
            "impl_name", "impl_list", "impl_ops", "random_crop_flip", "crop_flip_params",
            "fma_peak_gflops", "max_num_threads",
            "amx_status", "precision", "set_precision", "bf16_active", "round_to_bf16",
            "batch_norm_stats", "batch_norm_finalize", "batch_norm_apply",
            "batch_norm_backward_reduce", "batch_norm_backward_apply"}
# Device, streams, graphs, memory and host<->device copies.
CUDA_ONLY = {"available", "why_unavailable", "device_summary", "device_info", "mem_info",
             "synchronize", "sync_count", "allocator_stats", "empty_cache", "set_stream",
             "current_stream", "create_stream", "destroy_stream", "stream_wait", "set_tf32",
             "tf32", "pinned_empty"}


def split_top_level(text: str) -> list[str]:
    """Split at commas outside brackets."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += {"(": 1, "[": 1, "{": 1, ")": -1, "]": -1, "}": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    return [p.strip() for p in parts + [cur] if p.strip()]


def parameters(doc: str) -> list[tuple[str, str | None]]:
    """[(name, default or None)] from a pybind11 docstring's signature line,
    ``name(a: T, b: T = 1, ...) -> R``."""
    line = doc.splitlines()[0]
    start = line.index("(") + 1
    depth, end = 1, start
    while depth:
        depth += {"(": 1, ")": -1}.get(line[end], 0)
        end += 1
    out = []
    for part in split_top_level(line[start:end - 1]):
        if part in ("*", "/"):
            out.append((part, None))
            continue
        name, _, default = part.partition("=")
        out.append((name.split(":")[0].strip(), default.strip() or None))
    return out


def functions(module) -> dict[str, list]:
    return {n: parameters(f.__doc__) for n in dir(module)
            if not n.startswith("_") and type(f := getattr(module, n)).__name__ in
            ("builtin_function_or_method",)}


def declared_ops() -> set[str]:
    """The ops of cpp/bindings/ops.h (one RC_OP(name) each)."""
    ops_h = pathlib.Path(__file__).resolve().parents[1] / "cpp" / "bindings" / "ops.h"
    return set(re.findall(r"^RC_OP\((\w+)\)", ops_h.read_text(), re.M))


def test_parser_reads_names_order_and_defaults():
    doc = ("conv2d_forward(x: object, w: typing.Annotated[list, 'a, b'], b: object = None, "
           "stride: typing.SupportsInt = 1, *, out: object = None) -> object\n\nmore")
    assert parameters(doc) == [("x", None), ("w", None), ("b", "None"), ("stride", "1"),
                               ("*", None), ("out", "None")]
    # Drift is visible: two different ops of _core compare unequal.
    assert parameters(_core.relu_forward.__doc__) != parameters(_core.add_forward.__doc__)
    assert parameters(_core.relu_forward.__doc__) == [("x", None), ("out", "None")]


@pytest.mark.skipif(_cuda is None, reason="_cuda not built")
def test_modules_share_one_op_table():
    core, gpu = functions(_core), functions(_cuda)
    shared = set(core) & set(gpu)
    assert set(core) - shared == CPU_ONLY, "ops only in _core: add them to _cuda or CPU_ONLY"
    assert set(gpu) - shared == CUDA_ONLY, "ops only in _cuda: add them to _core or CUDA_ONLY"
    assert shared == declared_ops()
    drift = {n: (core[n], gpu[n]) for n in sorted(shared) if core[n] != gpu[n]}
    assert not drift, f"parameters differ between _core and _cuda: {drift}"


def test_core_alone_has_no_stray_ops():
    """Without _cuda (the default build) the CPU module still exposes exactly the op table
    of ops.h plus CPU_ONLY."""
    assert len(declared_ops()) == 24
    assert set(functions(_core)) == declared_ops() | CPU_ONLY
