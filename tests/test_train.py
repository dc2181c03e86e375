"""The training loop: checkpoints, exact resume, interrupts, divergence, evaluation."""
from __future__ import annotations

import json
import os
import re
import signal

import numpy as np
import pytest

from resnet_cpp import checkpoint as ckpt
from resnet_cpp import models, optim
from resnet_cpp import train as T
from resnet_cpp.data import Dataset, load_dataset

MODEL = {"name": "resnet20", "version": 1,
         "kwargs": {"num_classes": 10, "in_channels": 1, "seed": 0, "widths": [4, 8, 16]}}


@pytest.fixture(scope="module")
def tiny_data():
    """48 train / 32 test bundled images downsampled to 14x14: 3 steps per epoch at batch 16."""
    train, test = load_dataset("bundled")

    def small(ds, n, name):
        x = np.ascontiguousarray(ds.images[:n, :, ::2, ::2])
        return Dataset(x, ds.labels[:n], ds.classes, name)

    return small(train, 48, "tiny/train"), small(test, 32, "tiny/test")


def make_model():
    return models.create(MODEL["name"], version=MODEL["version"], **MODEL["kwargs"])


def run(tiny_data, out_dir, **kw):
    train, test = tiny_data
    args = dict(epochs=2, batch_size=16, seed=5, out_dir=str(out_dir), progress=False,
                verbose=False, model_config=MODEL, augment=True)
    args.update(kw)
    trainer = T.Trainer(kw.pop("model", None) or make_model(), train, test,
                        **{k: v for k, v in args.items() if k != "model"})
    return trainer


def metrics(out_dir):
    with open(os.path.join(out_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def assert_same_state(a, b):
    assert_same_state_dicts(a.state_dict(), b.state_dict())


def assert_same_state_dicts(sa, sb):
    assert list(sa) == list(sb)
    for k in sa:
        np.testing.assert_array_equal(sa[k], sb[k], err_msg=k)


@pytest.fixture(scope="module")
def reference_run(tiny_data, tmp_path_factory):
    """An uninterrupted 2-epoch run (6 steps) every resume test compares against."""
    out = tmp_path_factory.mktemp("ref")
    trainer = run(tiny_data, out)
    history = trainer.fit()
    return trainer, history, out


def test_fit_writes_checkpoints_and_metrics(reference_run):
    trainer, history, out = reference_run
    assert len(history) == 2 and not history.interrupted
    assert sorted(os.listdir(out)) == ["best.npz", "last.npz", "metrics.jsonl"]
    recs = metrics(out)
    assert [r["epoch"] for r in recs] == [1, 2] and [r["step"] for r in recs] == [3, 6]
    for r in recs:
        assert np.isfinite(r["train_loss"]) and 0 <= r["test_acc"] <= 1
    c = ckpt.load(out / "last.npz")
    assert c.meta["position"] == {**c.meta["position"], "epoch": 2, "batch": 0,
                                  "global_step": 6}
    assert c.meta["model"] == MODEL and c.meta["data"]["image_shape"] == [1, 14, 14]
    # The checkpoint alone rebuilds a model that computes exactly what the trained one does.
    rebuilt = c.build_model()
    assert_same_state(rebuilt, trainer.model)
    x = np.ascontiguousarray(trainer.train_data.images[:4])
    trainer.model.eval()
    np.testing.assert_array_equal(rebuilt(x), trainer.model(x))


@pytest.mark.parametrize("how,at", [("callback", 3), ("callback", 4), ("sigint", 4),
                                    ("sigterm", 2), ("max_steps", 2)])
def test_resume_is_bit_exact(tiny_data, reference_run, tmp_path, how, at):
    ref_trainer, _, ref_out = reference_run
    first = run(tiny_data, tmp_path, max_steps=at if how == "max_steps" else None)
    if how == "callback":  # KeyboardInterrupt raised from a hook after step `at`
        def hook(tr):
            if tr.global_step == at:
                raise KeyboardInterrupt
        first.on_step = hook
    elif how in ("sigint", "sigterm"):  # a real signal arriving in optimizer step `at`
        step = first.optimizer.step
        signum = signal.SIGINT if how == "sigint" else signal.SIGTERM

        def step_with_signal():
            if first.optimizer.step_count + 1 == at:
                os.kill(os.getpid(), signum)
            step()
        first.optimizer.step = step_with_signal
    h1 = first.fit()
    assert h1.interrupted == (how != "max_steps")
    assert h1.signal == {"sigterm": signal.SIGTERM, "max_steps": None}.get(how, signal.SIGINT)
    assert h1.stopped_at_max_steps == (how == "max_steps")
    pos = ckpt.load(tmp_path / "last.npz").meta["position"]
    assert pos["global_step"] == at  # the deferred Ctrl-C let step `at` finish
    assert (pos["epoch"], pos["batch"]) == divmod(at, 3) or (pos["epoch"], pos["batch"]) == \
        (at // 3 - 1, 3)

    second = run(tiny_data, tmp_path, resume=True)
    h2 = second.fit()
    assert not h2.interrupted and second.global_step == 6
    assert_same_state(second.model, ref_trainer.model)
    for a, b in zip(second.optimizer.state_dict()["arrays"].values(),
                    ref_trainer.optimizer.state_dict()["arrays"].values()):
        np.testing.assert_array_equal(a, b)
    strip = ("images_per_s", "epoch_time_s")
    assert [{k: v for k, v in r.items() if k not in strip} for r in metrics(tmp_path)] == \
        [{k: v for k, v in r.items() if k not in strip} for r in metrics(ref_out)]


def test_each_step_has_its_own_gradient_and_the_scheduled_lr(tiny_data, tmp_path):
    """fit zeroes the gradients before each backward (backward passes add into .grad) and
    steps the schedule once after each optimizer step, as documented: step i runs at
    schedule.lr_at(i) (cosine with warmup here), each parameter group at its ratio."""
    trainer = run(tiny_data, tmp_path, lr=0.1, trunk_lr=0.01, schedule="cosine",
                  warmup_epochs=1)
    model, opt, sched = trainer.model, trainer.optimizer, trainer.schedule
    backward, step, seen = model.backward, opt.step, []

    def checked_backward(*args, **kwargs):
        assert not any(p.grad.any() for p in model.parameters()), "no zero_grad before backward"
        return backward(*args, **kwargs)

    def recorded_step():
        seen.append([g["lr"] for g in opt.param_groups])  # [trunk, head]
        step()

    model.backward, opt.step = checked_backward, recorded_step
    trainer.fit()
    want = [sched.lr_at(i) for i in range(6)]
    assert want[0] < want[2] and want[2] > want[5]  # warmup, then decay
    np.testing.assert_allclose([head for _, head in seen], want, rtol=1e-12)
    np.testing.assert_allclose([trunk for trunk, _ in seen], [0.1 * w for w in want], rtol=1e-12)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tiny_data, tmp_path):
    saved = {}

    def poison(tr, record):  # after epoch 1's checkpoint: make the next loss NaN
        saved.update(tr.model.state_dict())
        for p in tr.optimizer.params:  # (a fused BN+ReLU maps NaN to 0; the fc does not)
            p.data[...] = np.nan

    trainer = run(tiny_data, tmp_path, on_epoch=poison)
    with pytest.raises(T.TrainingDiverged, match="loss is nan at epoch 2, batch 1.*last good "
                       "checkpoint .*last.npz was kept"):
        trainer.fit()
    c = ckpt.load(tmp_path / "last.npz")
    assert c.meta["position"]["global_step"] == 3
    for k, a in saved.items():
        np.testing.assert_array_equal(c.model_state[k], a)
    assert len(metrics(tmp_path)) == 1


def test_nan_weights_found_at_a_save_name_the_step_that_made_them(tiny_data, tmp_path):
    def poison(tr):  # after step 2, which is also the last one (max_steps)
        if tr.global_step == 2:
            tr.optimizer.params[-1].data[...] = np.nan

    trainer = run(tiny_data, tmp_path, on_step=poison, max_steps=2)
    with pytest.raises(T.TrainingDiverged, match=r"became NaN/inf at epoch 1, batch 2 \(step 2\)"):
        trainer.fit()


def test_second_signal_exits_at_once():
    """The first signal waits for the step to end; a second one kills the process at once."""
    import subprocess
    import sys

    code = ("import os, signal\n"
            "from resnet_cpp.train.interrupts import InterruptGuard\n"
            "with InterruptGuard() as guard:\n"
            "    with guard.critical():\n"
            "        os.kill(os.getpid(), signal.SIGTERM)\n"
            "        print('held', flush=True)\n"
            "        os.kill(os.getpid(), signal.SIGINT)\n"
            "        print('not reached', flush=True)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == -signal.SIGINT and r.stdout == "held\n", (r.returncode, r.stdout)


def test_stale_temporary_files_are_removed_at_start(tiny_data, tmp_path):
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    stale = tmp_path / f".last.npz.{dead}.00112233aabb.tmp"  # a save killed mid-write
    stale.write_bytes(b"PK partial")
    run(tiny_data, tmp_path, epochs=1, max_steps=1).fit()
    assert sorted(os.listdir(tmp_path)) == ["last.npz", "metrics.jsonl"]


def test_nan_input_diverges_before_any_checkpoint(tiny_data, tmp_path):
    train, test = tiny_data
    x = train.images.copy()
    x[5] = np.nan  # one bad image in the first batch
    bad = Dataset(x, train.labels, train.classes, "nan")
    # ReLU propagates NaN (as PyTorch), so the bad image shows up in that batch's loss.
    with pytest.raises(T.TrainingDiverged, match="training diverged: loss is nan at epoch 1.*"
                       "no checkpoint was written"):
        T.fit(make_model(), bad, test, epochs=1, batch_size=16, out_dir=str(tmp_path),
              progress=False, verbose=False, normalize=False, augment=False)
    assert not os.path.exists(tmp_path / "last.npz")


def test_resume_rejects_a_different_run(tiny_data, reference_run, tmp_path):
    _, _, ref_out = reference_run
    trainer = run(tiny_data, tmp_path, batch_size=8, resume=str(ref_out))
    with pytest.raises(ckpt.CheckpointError, match="batch_size=16"):
        trainer.fit()
    trainer = run(tiny_data, tmp_path, optimizer="adam", resume=str(ref_out))
    with pytest.raises(ckpt.CheckpointError, match=r"has optimizer='sgd', this run "
                       r"optimizer='adam'; a resumed run keeps its settings"):
        trainer.fit()
    # The same settings, but an optimizer over other parameters: its state cannot fit.
    model = make_model()
    opt = optim.SGD(model.parameters()[:-2], lr=0.1, momentum=0.9, weight_decay=1e-4)
    trainer = run(tiny_data, tmp_path, model=model, optimizer=opt, resume=str(ref_out))
    before = trainer.model.state_dict()
    with pytest.raises(ckpt.CheckpointError, match="optimizer state does not fit"):
        trainer.fit()
    assert_same_state_dicts(trainer.model.state_dict(), before)  # nothing half-loaded
    assert trainer.global_step == 0


@pytest.mark.parametrize("change,saved", [(dict(lr=0.5), None), (dict(label_smoothing=0.1), 0.0),
                                          (dict(augment=False), True), (dict(epochs=3), 2)])
def test_resume_with_a_changed_setting_fails_naming_it(tiny_data, reference_run, tmp_path,
                                                       change, saved):
    _, _, ref_out = reference_run
    trainer = run(tiny_data, tmp_path, resume=str(ref_out), **change)
    (name, value), = change.items()
    with pytest.raises(ckpt.CheckpointError, match=re.escape(
            f"has {name}={saved!r}, this run {name}={value!r}; a resumed run keeps its "
            "settings")):
        trainer.fit()
    assert trainer.global_step == 0  # nothing loaded


def test_settings_round_trip_through_the_checkpoint(reference_run):
    trainer, _, out = reference_run
    saved = ckpt.load(out / "last.npz").meta["config"]
    assert saved == trainer.checkpoint_config()
    # As given, but for what the recipe fills in: the names and the batch size used.
    used = {"recipe": "he2015", "optimizer": "sgd", "schedule": "multistep", "batch_size": 16}
    assert {k: saved[k] for k in T.TrainConfig.names_kept()} == {**trainer.config.kept(), **used}
    assert saved["lr"] is None and saved["seed"] == 5 and saved["augment"] is True


def test_evaluate(tiny_data, reference_run):
    trainer, _, _ = reference_run
    _, test = tiny_data
    model = trainer.model
    model.train()
    res = T.evaluate(model, test, batch_size=7, mean=trainer.mean, std=trainer.std)
    assert model.training  # mode restored
    model.eval()
    x = (test.images - trainer.mean[:, None, None]) / trainer.std[:, None, None]
    pred = np.argmax(model(np.ascontiguousarray(x, dtype=np.float32)), axis=1)
    assert res.n == 32 and res.confusion.shape == (10, 10) and res.confusion.sum() == 32
    assert res.accuracy == pytest.approx(np.mean(pred == test.labels))
    for k in range(10):
        sel = test.labels == k
        assert res.confusion[k].sum() == sel.sum()
        if sel.any():
            assert res.per_class_accuracy[k] == pytest.approx(np.mean(pred[sel] == k))
    assert np.isfinite(res.loss) and "confusion matrix" in res.format()


def test_bad_arguments(tiny_data):
    train, test = tiny_data
    for kw, match in [(dict(epochs=0), "epochs"), (dict(label_smoothing=1.0), "label_smooth"),
                      (dict(optimizer="rmsprop"), "valid: sgd"),
                      (dict(recipe="x"), "valid: he2015"), (dict(schedule="x"), "valid:"),
                      (dict(max_steps=0), "max_steps"), (dict(threads=0), "threads"),
                      (dict(threads=100000), r"threads must be in \[1, ")]:
        args = dict(epochs=1, batch_size=16, progress=False, verbose=False)
        args.update(kw)
        with pytest.raises(ValueError, match=match):
            T.Trainer(make_model(), train, test, **args)


def test_progress_and_resume_without_checkpoint(tiny_data, tmp_path, capsys):
    # resume=True with an empty out_dir starts from scratch; the progress bar (tqdm, or
    # plain lines without it) and the per-epoch line go to the terminal.
    trainer = run(tiny_data, tmp_path, epochs=1, resume=True, progress=True, verbose=True,
                  max_steps=1)
    history = trainer.fit()
    assert history.stopped_at_max_steps and trainer.global_step == 1
    out = capsys.readouterr()
    text = out.out + out.err
    assert "starting from scratch" in text and "stopped at max_steps=1" in text
    assert "test loss" in text and "img/s" in text
