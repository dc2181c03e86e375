"""The resnet-cpp command: train (smoke), resume, eval, predict, plot, info, user errors."""
from __future__ import annotations

import dataclasses
import json
import os
import re
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
    assert main(["eval", "--checkpoint", str(tmp_path / "missing.npz")]) == 2
    err = capsys.readouterr().err
    assert "--checkpoint" in err and "missing.npz: no such file" in err and "Traceback" not in err
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


# ---------------------------------------------------------------------------- failures
# Every failure: one line on stderr naming the file or option, no traceback; exit code 2
# for usage errors, 1 for runtime errors.


def _npz(path, **arrays):
    x = np.random.default_rng(0).integers(0, 256, (16, 8, 8), dtype=np.uint8)
    good = dict(x_train=x, y_train=np.arange(16) % 2, x_test=x[:4], y_test=np.arange(4) % 2)
    np.savez(path, **{**good, **arrays})
    return str(path)


def _corrupt_npz(tmp_path):
    p = tmp_path / "data.npz"
    _npz(p)
    p.write_bytes(p.read_bytes()[:-40])  # the zip's central directory is cut
    return str(p)


def _readonly_out(tmp_path, monkeypatch):
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o500)
    if os.geteuid() == 0:  # root writes anyway: fail the directory as a read-only mount would
        from resnet_cpp.train import MetricsLog

        def refuse(log):
            raise PermissionError(13, "Permission denied", log.path)
        monkeypatch.setattr(MetricsLog, "rewrite", refuse)
    return str(out)


def _disk_full(tmp_path, monkeypatch):
    import errno

    def savez(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(ckpt.np, "savez", savez)
    return str(tmp_path / "full")


def _no_memory(tmp_path, monkeypatch):
    from resnet_cpp import _core

    def conv(*a, **k):
        raise MemoryError("out: an array of shape (1, 2, 3, 4) needs 9.0 TiB, more than the "
                          "8.0 GiB of memory available")
    monkeypatch.setattr(_core, "conv2d_forward", conv)
    return str(tmp_path / "mem")


NPZ_TRAIN = ["train", "--dataset", "npz", "--max-steps", "1", "--batch-size", "8",
             "--no-progress", "--epochs", "1"]

FAILURES = {  # name: (argv from (tmp_path, monkeypatch, run_dir), exit code, in the line)
    "out is a file": (lambda t, m, r: ["train", "--out", str(r / "metrics.jsonl"), *SMOKE], 2,
                      "--out "),
    "out read-only": (lambda t, m, r: [*NPZ_TRAIN, "--data-dir", _npz(t / "d.npz"), "--out",
                                       _readonly_out(t, m)], 1, "Permission denied"),
    "disk full": (lambda t, m, r: [*NPZ_TRAIN, "--data-dir", _npz(t / "d.npz"), "--out",
                                   _disk_full(t, m)], 1, "No space left on device: '"),
    "corrupt npz": (lambda t, m, r: [*NPZ_TRAIN, "--data-dir", _corrupt_npz(t)], 1,
                    "data.npz: not a readable .npz"),
    "empty test split": (lambda t, m, r: [*NPZ_TRAIN, "--data-dir", _npz(
        t / "e.npz", x_test=np.zeros((0, 8, 8), np.uint8), y_test=np.zeros(0, int))], 1,
        "e.npz: 'x_test' holds no images"),
    "huge label": (lambda t, m, r: [*NPZ_TRAIN, "--data-dir", _npz(
        t / "h.npz", y_train=np.full(16, 10**6))], 1, "h.npz: y_train[0] = 1000000"),
    "out of memory": (lambda t, m, r: [*NPZ_TRAIN, "--data-dir", _npz(t / "d.npz"), "--out",
                                       _no_memory(t, m)], 1, "out of memory: out: an array"),
    "missing dataset": (lambda t, m, r: [*NPZ_TRAIN, "--data-dir", str(t / "none.npz")], 2,
                        "none.npz"),
    "too many threads": (lambda t, m, r: ["train", "--threads", "100000"], 2, "--threads"),
    "predict output folder missing": (lambda t, m, r: [
        "predict", "--checkpoint", str(r / "last.npz"), str(r / "last.npz"), "--output",
        str(t / "no" / "p.npy")], 2, "--output "),
    "predict images missing": (lambda t, m, r: [
        "predict", "--checkpoint", str(r / "last.npz"), str(t / "x.npy")], 2, "x.npy"),
    "diverged": (lambda t, m, r: [*NPZ_TRAIN, "--max-steps", "3", "--data-dir",
                                  _npz(t / "d.npz"), "--lr", "1e30", "--out", str(t / "n")], 1,
                 "training diverged: "),
}


@pytest.mark.parametrize("name", FAILURES)
def test_failure_is_one_line_naming_the_cause(name, run_dir, tmp_path, monkeypatch, capsys):
    argv, code, what = FAILURES[name]
    argv = argv(tmp_path, monkeypatch, run_dir)
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse's usage errors
        rc = e.code
    err = capsys.readouterr().err
    assert rc == code, err
    assert err.count("\n") == 1 and err.startswith(f"resnet-cpp {argv[0]}: "), err
    assert what in err and "Traceback" not in err, err


def test_debug_shows_the_traceback(run_dir, monkeypatch, capsys):
    from resnet_cpp import checkpoint

    def boom(path):
        raise RuntimeError("unexpected")
    monkeypatch.setattr(checkpoint, "load", boom)
    argv = ["eval", "--checkpoint", str(run_dir / "last.npz")]
    assert main(argv) == 1
    assert "internal error: RuntimeError: unexpected (--debug shows" in capsys.readouterr().err
    for debug in (["--debug", *argv], [*argv, "--debug"]):
        with pytest.raises(RuntimeError, match="unexpected"):
            main(debug)


def test_eval_refuses_a_zero_std(run_dir, tmp_path, capsys):
    c = ckpt.load(run_dir / "last.npz")
    meta = {k: v for k, v in c.meta.items() if k not in ("format", "format_version", "checksum")}
    meta["normalization"]["std"] = [0.0]
    path = ckpt.save(tmp_path / "zero.npz", c.groups, meta)  # a valid checksum
    assert main(["eval", "--checkpoint", path]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "zero.npz: normalization needs 1 finite means and stds > 0" in err


def test_predict_output_name_is_kept_and_0_255_floats_warn(run_dir, tmp_path, capsys):
    from resnet_cpp.data import load_dataset

    _, test = load_dataset("bundled")
    x = test.images[:3, 0]
    np.save(tmp_path / "f.npy", x)
    ckp = str(run_dir / "last.npz")
    assert main(["predict", "--checkpoint", ckp, str(tmp_path / "f.npy"), "-o",
                 str(tmp_path / "p.txt")]) == 0
    assert sorted(os.listdir(tmp_path)) == ["f.npy", "p.txt"]  # not p.txt.npy
    assert np.load(tmp_path / "p.txt").shape == (3,)
    assert "warning" not in capsys.readouterr().err
    np.save(tmp_path / "f255.npy", x * 255)
    assert main(["predict", "--checkpoint", ckp, str(tmp_path / "f255.npy")]) == 0
    assert "f255.npy holds floats in [0, 255]; float images are read on the [0, 1] scale" in \
        capsys.readouterr().err


def test_sigterm_saves_and_exits_143(small_npz, tmp_path):
    """SIGTERM (schedulers, docker stop) mid-run: a checkpoint, exit 143, and it resumes."""
    out = tmp_path / "run"
    code = (
        "import os, signal, sys\n"
        "from resnet_cpp import train as T\n"
        "from resnet_cpp.cli import main\n"
        "step = T.Trainer._check_finite_weights\n"
        "sent = []\n"
        "def check(self, s):  # one real SIGTERM, arriving inside step 2\n"
        "    if s == 2 and not sent: sent.append(os.kill(os.getpid(), signal.SIGTERM))\n"
        "    step(self, s)\n"
        "T.Trainer._check_finite_weights = check\n"
        f"sys.exit(main(['train', '--dataset', 'npz', '--data-dir', {str(small_npz)!r}, '--out',"
        f" {str(out)!r}, '--batch-size', '8', '--epochs', '2', '--no-progress']))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 143, r.stderr
    assert "terminated: saved" in r.stdout + r.stderr
    assert ckpt.load(out / "last.npz").meta["position"]["global_step"] == 2
    assert main(["train", "--resume", str(out), "--no-progress"]) == 0
    assert ckpt.load(out / "last.npz").meta["position"]["global_step"] == 12


# ---------------------------------------------------------------------------- settings


def test_piped_output_is_one_line_per_epoch(small_npz, tmp_path):
    """With stderr (and stdout) to a pipe: no progress-bar frames, a summary line per epoch."""
    r = subprocess.run([sys.executable, "-m", "resnet_cpp", "train", "--dataset", "npz",
                        "--data-dir", str(small_npz), "--epochs", "2", "--batch-size", "16",
                        "--out", str(tmp_path / "run")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "\r" not in r.stdout + r.stderr
    assert len(re.findall(r"^epoch \d/2: train loss", r.stdout, re.MULTILINE)) == 2, r.stdout
    assert not re.search(r"^epoch", r.stderr, re.MULTILINE), r.stderr  # nothing per step


def test_predict_off_a_terminal_prints_no_bar(run_dir, tmp_path, capsys):
    from resnet_cpp.data import load_dataset

    _, test = load_dataset("bundled")
    np.save(tmp_path / "x.npy", np.round(test.images[:4, 0] * 255).astype(np.uint8))
    assert main(["predict", "--checkpoint", str(run_dir / "last.npz"), str(tmp_path / "x.npy"),
                 "--batch-size", "1"]) == 0  # 4 batches
    out = capsys.readouterr()
    assert out.err == "" and len(out.out.splitlines()) == 4


def test_settings_round_trip_through_a_checkpoint(small_npz, tmp_path):
    """What the command line gave comes back from the checkpoint as the same TrainConfig."""
    import resnet_cpp
    from resnet_cpp.cli import _given_settings, _saved_settings, _split, build_parser

    argv = ["train", "--dataset", "npz", "--data-dir", str(small_npz), "--out",
            str(tmp_path / "r"), "--max-steps", "1", "--batch-size", "8", "--no-progress",
            "--lr", "0.05", "--momentum", "0.8", "--nesterov", "--label-smoothing", "0.1",
            "--no-augment", "--warmup-epochs", "0.5", "--seed", "3"]
    assert main(argv) == 0
    data_cfg, cfg = _split(_given_settings(build_parser().parse_args(argv)))
    meta = ckpt.load(tmp_path / "r" / "last.npz").meta
    back_data, back = _split(_saved_settings(meta, "last.npz"))
    # precision: recorded as the process setting it ran with
    assert back.kept() == {**cfg.kept(), "precision": resnet_cpp.precision()}
    assert back_data == dataclasses.replace(data_cfg, model="resnet20")
    assert {k: meta["config"][k] for k in ("lr", "momentum", "nesterov", "warmup_epochs")} == \
        {"lr": 0.05, "momentum": 0.8, "nesterov": True, "warmup_epochs": 0.5}


# The layout of checkpoints written before TrainConfig: the Trainer's settings, and the
# command line's in config["cli"] (new_head: None, or the N of --new-head [N]).
OLD_CONFIG = ("epochs", "batch_size", "recipe", "optimizer", "schedule", "seed", "threads",
              "precision", "augment", "device", "label_smoothing", "steps_per_epoch",
              "world_size", "sync_bn")
OLD_CLI = ("dataset", "data_dir", "model", "version", "width", "shortcut", "epochs",
           "batch_size", "lr", "optimizer", "schedule", "warmup_epochs", "recipe",
           "label_smoothing", "augment", "seed", "weight_decay", "init_from", "new_head",
           "freeze_trunk", "trunk_lr", "freeze_bn", "image_size", "grayscale", "precision",
           "sync_bn")


def test_a_checkpoint_from_before_trainconfig_resumes(small_npz, tmp_path):
    run = tmp_path / "run"
    assert main(["train", "--dataset", "npz", "--data-dir", str(small_npz), "--out", str(run),
                 "--max-steps", "2", "--epochs", "2", "--batch-size", "16",
                 "--no-progress"]) == 0
    c = ckpt.load(run / "last.npz")
    meta = {k: v for k, v in c.meta.items() if k not in ("format", "format_version", "checksum")}
    cli = {k: meta["config"]["cli"][k] for k in OLD_CLI}
    meta["config"] = {**{k: meta["config"][k] for k in OLD_CONFIG},
                      "cli": {**cli, "new_head": None}}
    ckpt.save(run / "last.npz", c.groups, meta)
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    assert ckpt.load(run / "last.npz").meta["position"]["global_step"] == 6


def test_finetune_from_a_normalizing_checkpoint_resumes(run_dir, tmp_path):
    """The pretrained file records its normalization, which the fine-tuned run takes; a
    resumed run takes it from its own checkpoint (it does not read --init-from again)."""
    data = _npz(tmp_path / "d.npz")
    out = tmp_path / "ft"
    args = ["train", "--dataset", "npz", "--data-dir", data, "--batch-size", "8",
            "--no-progress"]
    assert main([*args, "--init-from", str(run_dir / "last.npz"), "--new-head", "--epochs",
                 "2", "--max-steps", "1", "--out", str(out)]) == 0
    want = ckpt.load(run_dir / "last.npz").normalization()
    assert main(["train", "--resume", str(out), "--no-progress"]) == 0
    c = ckpt.load(out / "last.npz")
    assert c.meta["position"]["global_step"] == 4
    for got, w in zip(c.normalization(), want):
        np.testing.assert_array_equal(got, w)
