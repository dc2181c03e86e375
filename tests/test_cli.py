"""The resnet-cpp command: train (smoke), resume, eval, predict, plot, info, user errors."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from resnet_cpp import checkpoint as ckpt
from resnet_cpp.cli import main

SMOKE = ["--max-steps", "2", "--batch-size", "16", "--epochs", "1", "--no-progress",
         "--seed", "1"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A 2-step ResNet-20 run on the bundled data."""
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", "--out", str(out), *SMOKE]) == 0
    return out


def test_train_smoke(run_dir, capsys):
    assert sorted(os.listdir(run_dir)) == ["last.npz", "metrics.jsonl"]
    c = ckpt.load(run_dir / "last.npz")
    assert c.meta["position"]["global_step"] == 2
    assert c.meta["model"]["name"] == "resnet20" and c.meta["config"]["cli"]["dataset"] == \
        "bundled"
    with open(run_dir / "metrics.jsonl") as f:
        assert json.loads(f.readline())["partial"] is True


@pytest.fixture(scope="module")
def small_npz(tmp_path_factory):
    """48/20 bundled images at 14x14 as an npz dataset (fast steps and evaluation)."""
    from resnet_cpp.data import load_dataset

    train, test = load_dataset("bundled")
    path = tmp_path_factory.mktemp("npz") / "small.npz"
    to_u8 = lambda ds, n: np.round(ds.images[:n, 0, ::2, ::2] * 255).astype(np.uint8)  # noqa
    np.savez(path, x_train=to_u8(train, 48), y_train=train.labels[:48],
             x_test=to_u8(test, 20), y_test=test.labels[:20], classes=np.array(train.classes))
    return path


def test_train_options_and_test_accuracy(small_npz, tmp_path, capsys):
    assert main(["train", "--dataset", "npz", "--data-dir", str(small_npz), "--out",
                 str(tmp_path / "r"), "--max-steps", "1", "--batch-size", "8", "--no-progress",
                 "--optimizer", "adamw", "--schedule", "cosine", "--warmup-epochs", "0.5",
                 "--label-smoothing", "0.1", "--no-augment", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "test accuracy:" in out and "(20 images)" in out
    c = ckpt.load(tmp_path / "r" / "last.npz")
    assert c.meta["optimizer"]["name"] == "adamw" and c.meta["schedule"]["name"] == "warmup"


def test_resume_continues_the_run(small_npz, tmp_path, capsys):
    run = str(tmp_path / "run")
    common = ["--no-progress", "--batch-size", "16"]
    assert main(["train", "--dataset", "npz", "--data-dir", str(small_npz), "--out", run,
                 "--max-steps", "2", "--epochs", "2", *common]) == 0
    assert main(["train", "--resume", run, "--max-steps", "4", *common]) == 0
    assert "resumed from" in capsys.readouterr().out
    assert ckpt.load(os.path.join(run, "last.npz")).meta["position"]["global_step"] == 4
    # A resumed run keeps its settings: a conflicting one is a user error.
    assert main(["train", "--resume", run, "--lr", "0.5"]) == 2
    assert "drop --lr" in capsys.readouterr().err


def test_eval(run_dir, capsys):
    assert main(["eval", "--checkpoint", str(run_dir / "last.npz")]) == 0
    out = capsys.readouterr().out
    assert "accuracy:" in out and "per-class accuracy" in out and "confusion matrix" in out
    assert "T-shirt/top" in out and "Ankle boot" in out
    assert "(100 images)" in out  # the bundled test split is balanced: 100 per class


def test_predict(run_dir, tmp_path, capsys):
    from resnet_cpp.data import load_dataset

    _, test = load_dataset("bundled")
    x8 = np.round(test.images[:5, 0] * 255).astype(np.uint8)  # (N,H,W) uint8
    np.save(tmp_path / "u8.npy", x8)
    assert main(["predict", "--checkpoint", str(run_dir / "last.npz"),
                 str(tmp_path / "u8.npy")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 5 and all(len(line.split("\t")) == 4 for line in lines)
    # (N,C,H,W) float in [0,1] with the same pixels predicts the same, saved to a file.
    np.save(tmp_path / "f32.npy", (x8[:, None] / np.float32(255)).astype(np.float32))
    assert main(["predict", "--checkpoint", str(run_dir / "last.npz"),
                 str(tmp_path / "f32.npy"), "-o", str(tmp_path / "pred.npy")]) == 0
    pred = np.load(tmp_path / "pred.npy")
    assert pred.dtype == np.int64 and pred.tolist() == [int(line.split("\t")[1])
                                                       for line in lines]
    np.save(tmp_path / "rgb.npy", np.zeros((2, 3, 28, 28), np.float32))
    assert main(["predict", "--checkpoint", str(run_dir / "last.npz"),
                 str(tmp_path / "rgb.npy")]) == 2
    assert "the model expects (1, 28, 28)" in capsys.readouterr().err


def test_plot(run_dir, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    assert main(["plot", str(copy)]) == 0
    assert (copy / "curves.png").stat().st_size > 0


def test_plot_without_matplotlib(run_dir, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["plot", str(run_dir)]) == 2
    assert 'pip install "resnet_cpp[plot]"' in capsys.readouterr().err


def test_info(capsys):
    assert main(["info"]) == 0
    assert "compiled_isas" in capsys.readouterr().out
    r = subprocess.run([sys.executable, "-m", "resnet_cpp", "info"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and "active_isa" in r.stdout


@pytest.mark.parametrize("argv", [["train", "--epochs", "0"], ["train", "--optimizer", "rms"],
                                  ["train", "--lr", "nan"], ["train", "--dataset", "imagenet"],
                                  ["eval"], ["frobnicate"]])
def test_bad_arguments_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_user_errors_have_no_traceback(run_dir, tmp_path, capsys):
    assert main(["eval", "--checkpoint", str(tmp_path / "missing.npz")]) == 1
    err = capsys.readouterr().err
    assert "does not exist" in err and "Traceback" not in err
    broken = tmp_path / "broken.npz"
    broken.write_bytes((run_dir / "last.npz").read_bytes()[:1000])
    assert main(["predict", "--checkpoint", str(broken), str(broken)]) == 1
    assert "truncated or corrupted" in capsys.readouterr().err
    assert main(["train", "--out", str(run_dir), *SMOKE]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert main(["train", "--dataset", "cifar10", "--data-dir", str(tmp_path / "none"),
                 *SMOKE, "--out", str(tmp_path / "x")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["train", "--width", "keras", *SMOKE, "--out", str(tmp_path / "y")]) == 2
    assert "needs --version 2" in capsys.readouterr().err
    assert main(["train", "--model", "resnet21", *SMOKE, "--out", str(tmp_path / "z")]) == 2
    assert "valid:" in capsys.readouterr().err
