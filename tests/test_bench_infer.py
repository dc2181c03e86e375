"""benchmarks/bench_infer.py on ResNet-20: its parity check against onnxruntime passes on the
real path (PyTorch twin -> torch.onnx.export -> onnxruntime) and fails when ours computes
something else; its JSON rows carry every side and the machine line; bad options are named."""
from __future__ import annotations

import json
import os
import re
import sys

import numpy as np
import pytest

import resnet_cpp as rc

torch = pytest.importorskip("torch")  # the bench extra (CI installs it)
pytest.importorskip("onnxruntime")  # the test and bench extras

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))
import bench_infer  # noqa: E402
from machine import machine_line  # noqa: E402


@pytest.fixture
def keep_threads():
    """main() sets resnet_cpp's and torch's thread counts: put them back."""
    ours, theirs = rc.num_threads(), torch.get_num_threads()
    yield
    rc.set_num_threads(ours)
    torch.set_num_threads(theirs)


def test_resnet20_batch2_agrees_with_onnxruntime_on_every_side(capsys, monkeypatch, keep_threads):
    monkeypatch.setattr(bench_infer, "MIN_REPEAT_S", 0.01)  # parity is the point, not timing
    bench_infer.main(["--model", "resnet20", "--batch", "2", "--repeats", "1", "--warmup", "0",
                      "--threads", "1", "--json"])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["side"] for r in rows] == list(bench_infer.SIDES)
    for r in rows:
        assert r["machine"] == machine_line(1)
        assert (r["model"], r["image"], r["batch"], r["threads"]) == ("resnet20", 32, 2, 1)
        assert 0 <= r["max_abs_diff"] <= r["parity_bound"] > 0
        assert r["ms"] > 0 and r["img_s"] == pytest.approx(2e3 / r["ms"])
    ort = rows[bench_infer.SIDES.index("onnxruntime")]
    assert ort["max_abs_diff"] == 0 and ort["vs_onnxruntime"] == 1


def test_parity_check_names_each_side_that_computes_something_else(keep_threads):
    prep = bench_infer.prepare("resnet20", threads=1)
    prep.model.fc.bias.data[3] += 0.01  # after export: ours (and its fused copy) now differ
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32), dtype=np.float32)
    calls = bench_infer.side_calls(prep, x)
    with pytest.raises(SystemExit, match=r"^parity: logits differ from onnxruntime's: "
                       r"resnet_cpp by 0\.01\d*, resnet_cpp_fused by 0\.01\d* \(bound ") as e:
        bench_infer.check_parity(calls)
    assert "torch_cl" not in str(e.value)


@pytest.mark.parametrize("argv,message", [
    (["--model", "resnet20,resnet18"],
     r"argument --model: expected a comma list of resnet50, resnet20, got resnet18"),
    (["--batch", "1,0"], r"argument --batch: expected a comma list of positive integers"),
    (["--batch", "one"], r"argument --batch: expected a comma list of positive integers"),
])
def test_bad_options_name_the_argument(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        bench_infer.parse_args(argv)
    assert e.value.code == 2
    assert re.search(message, capsys.readouterr().err)


def test_machine_line_names_cpu_isa_and_threads():
    line = machine_line("1,2")
    assert re.fullmatch(rf"CPU: \S.*; ISA {rc.active_isa()}; 1,2 threads", line)
    assert machine_line(1) == line.replace("1,2 threads", "1 thread")
    n = rc.num_threads()
    assert machine_line() == line.replace("1,2 threads", f"{n} thread{'s' * (n != 1)}")
