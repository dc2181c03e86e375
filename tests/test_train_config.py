"""The training loop's parts: TrainConfig (one definition of every setting: fit's keywords,
the CLI's options), RunState, MetricsLog and the progress output."""
from __future__ import annotations

import dataclasses
import io
import json
import sys

import pytest

from resnet_cpp import cli
from resnet_cpp import train as T
from resnet_cpp.train import MetricsLog, RunState, TrainConfig
from resnet_cpp.train import config as C
from resnet_cpp.train.progress import Progress
from test_train import make_model, tiny_data  # noqa: F401  (fixture)


def _train_help(capsys) -> str:
    """``resnet-cpp train --help`` without whitespace (argparse wraps lines, and may break
    them after a hyphen)."""
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    return "".join(capsys.readouterr().out.split())


def _squeeze(text: str) -> str:
    return "".join(text.split())


def test_every_setting_is_a_train_option_with_its_default(capsys):
    fields = dataclasses.fields(TrainConfig)
    assert {f.name for f in fields if C.option_flag(f) is None} == {"distributed"}  # mpirun's
    args = cli.build_parser().parse_args(["train"])
    for f in fields:
        if f.name != "distributed":
            assert getattr(args, f.name) is None, f.name  # unset: TrainConfig's default
    _, cfg = cli._split(cli._given_settings(args))
    assert cfg == TrainConfig()  # the command line adds no default of its own
    text = _train_help(capsys)
    for f in fields:
        flag = C.option_flag(f)
        if flag is not None:
            assert flag in text, flag
            assert _squeeze(f.metadata["help"] + C._default_note(f.default)) in text, f.name
    for flag in ("--no-progress", "--no-cuda-graph", "--outDIR", "--new-head[N]",
                 "--augment,--no-augment"):  # today's option names and forms
        assert flag in text, flag


def test_options_keep_their_types_and_validation():
    p = cli.build_parser()
    args = p.parse_args(["train", "--epochs", "3", "--lr", "0.05", "--no-augment", "--sync-bn",
                         "--new-head", "--out", "o", "--resume", "r", "--no-progress"])
    assert (args.epochs, args.lr, args.augment, args.sync_bn) == (3, 0.05, False, True)
    assert (args.new_head, args.out_dir, args.resume, args.progress) == (0, "o", "r", False)
    assert p.parse_args(["train", "--new-head", "3"]).new_head == 3
    for bad in (["--epochs", "0"], ["--lr", "-1"], ["--threads", "100000"],
                ["--optimizer", "rms"], ["--new-head", "0"]):
        with pytest.raises(SystemExit):
            p.parse_args(["train", *bad])


def test_a_new_setting_gets_an_option(monkeypatch, capsys):
    extended = dataclasses.make_dataclass(
        "Extended", [("warmup_restarts", int, C.setting(3, "restarts of the warmup", keep=True,
                                                        type=C.positive_int))],
        bases=(TrainConfig,))
    monkeypatch.setattr(cli, "TrainConfig", extended)
    assert _squeeze("--warmup-restarts WARMUP_RESTARTS restarts of the warmup (default: 3)") \
        in _train_help(capsys)
    args = cli.build_parser().parse_args(["train", "--warmup-restarts", "5"])
    assert args.warmup_restarts == 5 and "warmup_restarts" in extended.names_kept()


def test_fit_rejects_an_unknown_keyword(tiny_data):
    with pytest.raises(TypeError, match=r"^unexpected keyword argument 'lrr': not a setting of "
                       r"TrainConfig \(did you mean 'lr'"):
        T.fit(make_model(), *tiny_data, epochs=1, lrr=0.1)
    with pytest.raises(TypeError, match=r"'on_epochs'.*did you mean 'on_epoch'"):
        T.fit(make_model(), *tiny_data, on_epochs=print)
    with pytest.raises(TypeError, match=r"^config must be a TrainConfig, got dict"):
        T.fit(make_model(), *tiny_data, config={"epochs": 1})


def test_fit_takes_a_config_and_keywords_override_it(tiny_data):
    cfg = TrainConfig(epochs=1, batch_size=16, max_steps=1, progress=False, verbose=False)
    trainer = T.Trainer(make_model(), *tiny_data, config=cfg, lr=0.05)
    assert trainer.config == dataclasses.replace(cfg, lr=0.05) and cfg.lr is None
    assert trainer.optimizer.lr == 0.05 and trainer.batch_size == 16
    assert trainer.fit().stopped_at_max_steps and trainer.global_step == 1


@pytest.mark.parametrize("kw,error,match", [
    (dict(epochs="3"), TypeError, r"^epochs must be an integer, got str"),
    (dict(batch_size=0), ValueError, r"^batch_size must be >= 1, got 0"),
    (dict(lr=float("nan")), ValueError, r"^lr must be a finite number >= 0, got nan"),
    (dict(warmup_epochs=-1), ValueError, r"^warmup_epochs must be a finite number >= 0"),
    (dict(augment=1), TypeError, r"^augment must be True or False, got 1"),
    (dict(optimizer="rms"), ValueError, r"^unknown optimizer 'rms'; valid: sgd, adam"),
    (dict(device="tpu"), ValueError, r"^device: expected 'cpu' or 'cuda'"),
    (dict(resume=3), TypeError, r"^resume must be True, False or a path, got 3"),
])
def test_bad_settings_name_themselves(kw, error, match):
    with pytest.raises(error, match=match):
        TrainConfig(**kw)


def test_run_state_round_trip():
    state = RunState()
    state.add_step(0.5, 3, 4, 0.25)
    state.add_step(1.0, 1, 4, 0.5)
    state.best_accuracy = 0.75
    back = RunState()
    back.load_state_dict(json.loads(json.dumps(state.state_dict())))  # as a checkpoint holds it
    assert back == state and (back.batch, back.global_step, back.sums.seen) == (2, 2, 8)
    assert back.summary() == {"train_loss": 0.75, "train_acc": 0.5, "images_per_s": 8 / 0.75,
                              "epoch_time_s": 0.75}
    back.next_epoch()
    assert (back.epoch, back.batch, back.global_step, back.sums.seen) == (1, 0, 2, 0)
    bad = state.state_dict()
    bad["position"]["batch"] = -1
    for broken, error in ((bad, ValueError), ({"position": {}}, KeyError)):
        with pytest.raises(error):
            back.load_state_dict(broken)
    assert back.epoch == 1 and back.global_step == 2  # unchanged by a failed load


def test_metrics_file_follows_the_checkpoints(tmp_path):
    path = tmp_path / "metrics.jsonl"
    lines = lambda: [json.loads(s) for s in path.read_text().splitlines()]  # noqa: E731
    log = MetricsLog(str(path))
    log.rewrite()
    log.add({"epoch": 1})
    assert lines() == []  # written once its checkpoint is
    log.flush()
    log.add({"epoch": 2, "partial": True})
    log.flush()
    assert lines() == [{"epoch": 1}, {"epoch": 2, "partial": True}]
    resumed = MetricsLog(str(path))
    resumed.load(log.complete())
    resumed.rewrite()
    assert lines() == [{"epoch": 1}] and resumed.records == [{"epoch": 1}]


def test_progress_off_a_terminal_is_a_plain_line_a_minute_at_most(capsys):
    now = [0.0]
    bar = Progress(100, "epoch 1/2", clock=lambda: now[0])
    for t in (10, 59, 61, 100, 122):
        now[0] = t
        bar.update({"loss": "0.5"})
    bar.close()
    quiet = Progress(100, "epoch 2/2", enabled=False, clock=lambda: now[0])
    now[0] = 1000
    quiet.update({"loss": "0.5"})
    out = capsys.readouterr()
    assert out.out == "" and out.err.splitlines() == ["epoch 1/2: 3/100 batches, loss=0.5",
                                                      "epoch 1/2: 5/100 batches, loss=0.5"]


def test_progress_on_a_terminal_is_a_bar(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stderr", Terminal())
    with Progress(3, "predict") as bar:
        for _ in range(3):
            bar.update({"loss": "0.5"})
    assert "\r" in sys.stderr.getvalue() and "3/3" in sys.stderr.getvalue()
    monkeypatch.setattr(sys, "stderr", Terminal())
    with Progress(3, "predict", enabled=False) as bar:
        bar.update()
    assert sys.stderr.getvalue() == ""
