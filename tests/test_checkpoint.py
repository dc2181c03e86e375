"""Checkpoint files: round trip, damage detection, atomic writes, strict model loading."""
from __future__ import annotations

import json
import os
from collections import OrderedDict

import numpy as np
import pytest

from resnet_cpp import checkpoint as ckpt


def sample(rng):
    groups = {"model": {"conv1.weight": rng.standard_normal((16, 3, 3, 3)).astype(np.float32),
                        "bn1.running_var": np.ones(16, np.float32),
                        "bn1.num_batches_tracked": np.array(7, np.int64)},
              "optimizer": {"0.momentum": rng.standard_normal((16, 3, 3, 3)).astype(np.float32)}}
    meta = {"model": {"name": "resnet20", "version": 1, "kwargs": {"num_classes": 10}},
            "position": {"epoch": 2, "batch": 5, "seed": 3},
            "metrics": {"test_acc": np.float64(0.5)}}
    return groups, meta


def test_round_trip(tmp_path, rng):
    groups, meta = sample(rng)
    path = ckpt.save(tmp_path / "a.npz", groups, meta)
    c = ckpt.load(path)
    assert set(c.groups) == {"model", "optimizer"}
    for g, items in groups.items():
        assert set(c.groups[g]) == set(items)
        for k, a in items.items():
            assert c.groups[g][k].dtype == a.dtype and c.groups[g][k].shape == a.shape
            np.testing.assert_array_equal(c.groups[g][k], a)
    assert c.meta["model"] == meta["model"] and c.meta["position"] == meta["position"]
    assert c.meta["metrics"]["test_acc"] == 0.5
    assert c.meta["format_version"] == ckpt.FORMAT_VERSION and len(c.meta["checksum"]) == 64
    assert c.optimizer_state() is None  # no optimizer scalars in meta
    with np.load(path, allow_pickle=False) as z:  # a plain npz, no pickles
        assert "__meta__" in z.files and z["__meta__"].dtype == np.uint8


def test_truncated_file_raises(tmp_path, rng):
    path = ckpt.save(tmp_path / "a.npz", *sample(rng))
    data = open(path, "rb").read()
    for cut in (len(data) // 2, len(data) - 10, 100):
        open(path, "wb").write(data[:cut])
        with pytest.raises(ckpt.CheckpointError, match="truncated or corrupted"):
            ckpt.load(path)


def test_flipped_byte_raises(tmp_path, rng):
    path = ckpt.save(tmp_path / "a.npz", *sample(rng))
    data = bytearray(open(path, "rb").read())
    data[len(data) // 3] ^= 0xFF  # inside the conv weight's bytes
    open(path, "wb").write(bytes(data))
    with pytest.raises(ckpt.CheckpointError, match="corrupted"):
        ckpt.load(path)


def test_checksum_mismatch_raises(tmp_path, rng):
    # A well-formed zip whose array no longer matches the stored checksum.
    groups, meta = sample(rng)
    path = ckpt.save(tmp_path / "a.npz", groups, meta)
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["model/conv1.weight"] = arrays["model/conv1.weight"] + 1
    np.savez(path, **arrays)
    with pytest.raises(ckpt.CheckpointError, match="checksum"):
        ckpt.load(path)


def test_not_a_checkpoint(tmp_path):
    with pytest.raises(ckpt.CheckpointError, match="does not exist"):
        ckpt.load(tmp_path / "missing.npz")
    np.savez(tmp_path / "plain.npz", x=np.zeros(3))
    with pytest.raises(ckpt.CheckpointError, match="not a resnet_cpp checkpoint"):
        ckpt.load(tmp_path / "plain.npz")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(ckpt.CheckpointError, match="truncated or corrupted"):
        ckpt.load(tmp_path / "text.npz")


def test_future_format_version_raises(tmp_path, monkeypatch, rng):
    monkeypatch.setattr(ckpt, "FORMAT_VERSION", 99)
    path = ckpt.save(tmp_path / "a.npz", *sample(rng))
    monkeypatch.undo()
    with pytest.raises(ckpt.CheckpointError, match="format version 99"):
        ckpt.load(path)


def _rewrite_meta(path, edit):
    """Rewrite a checkpoint's metadata JSON through `edit`, keeping its stored checksum."""
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(arrays["__meta__"].tobytes())
    edit(meta)
    arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    np.savez(path, **arrays)


@pytest.mark.parametrize("edit", [
    lambda m: m["normalization"]["mean"].__setitem__(0, 0.9),
    lambda m: m["model"]["kwargs"].__setitem__("num_classes", 11),
    lambda m: m["position"].__setitem__("epoch", 3),
    lambda m: m.__setitem__("extra", 1),
], ids=["mean", "num_classes", "position", "new key"])
def test_metadata_is_covered_by_the_checksum(tmp_path, rng, edit):
    groups, meta = sample(rng)
    path = ckpt.save(tmp_path / "a.npz", groups, {**meta, "normalization": {"mean": [0.25],
                                                                            "std": [0.5]}})
    ckpt.load(path)
    _rewrite_meta(path, edit)
    with pytest.raises(ckpt.CheckpointError, match="checksum mismatch"):
        ckpt.load(path)


def test_format_1_still_loads_with_a_warning(tmp_path, rng):
    groups, meta = sample(rng)
    arrays = {f"{g}/{k}": np.asarray(a) for g, items in groups.items() for k, a in items.items()}
    v1 = {**meta, "format": ckpt.FORMAT, "format_version": 1, "checksum": ckpt._checksum(arrays)}
    path = tmp_path / "v1.npz"
    np.savez(path, **arrays, __meta__=np.frombuffer(
        json.dumps(v1, default=ckpt._json_default).encode(), np.uint8))
    with pytest.warns(UserWarning, match="format version 1, whose checksum covers the arrays"):
        c = ckpt.load(path)
    np.testing.assert_array_equal(c.model_state["conv1.weight"], groups["model"]["conv1.weight"])
    arrays["model/conv1.weight"][0, 0, 0, 0] += 1  # its arrays are still verified
    np.savez(path, **arrays, __meta__=np.frombuffer(
        json.dumps(v1, default=ckpt._json_default).encode(), np.uint8))
    with pytest.raises(ckpt.CheckpointError, match="checksum mismatch"):
        ckpt.load(path)


@pytest.mark.parametrize("norm,bad", [
    ({"mean": [0.5], "std": [0.0]}, "stds > 0"),
    ({"mean": [float("nan")], "std": [1.0]}, "finite"),
    ({"mean": [0.5, 0.5], "std": [1.0, 1.0]}, "needs 1 finite"),
    ({"mean": [0.5]}, "malformed normalization"),
])
def test_normalization_is_validated(tmp_path, rng, norm, bad):
    groups, meta = sample(rng)
    good = ckpt.save(tmp_path / "good.npz", groups, {**meta, "data": {"image_shape": [1, 4, 4]},
                                                     "normalization": {"mean": [0.5],
                                                                       "std": [0.25]}})
    mean, std = ckpt.load(good).normalization()
    assert mean.dtype == np.float32 and mean.tolist() == [0.5] and std.tolist() == [0.25]
    path = ckpt.save(tmp_path / "a.npz", groups, {**meta, "data": {"image_shape": [1, 4, 4]},
                                                  "normalization": norm})
    with pytest.raises(ckpt.CheckpointError, match=rf"a.npz: .*{bad}"):
        ckpt.load(path).normalization()


def test_remove_stale_temps_keeps_live_writers(tmp_path):
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    names = {f".last.npz.{dead}.0123456789ab.tmp": False,        # its writer is gone
             f".best.npz.{os.getpid()}.0123456789ab.tmp": True,  # a live writer (this process)
             ".last.npz.tmp": True, "last.npz": True, "metrics.jsonl.tmp": True}
    for n in names:
        (tmp_path / n).write_bytes(b"x")
    removed = ckpt.remove_stale_temps(tmp_path)
    assert removed == [str(tmp_path / n) for n, keep in names.items() if not keep]
    assert sorted(os.listdir(tmp_path)) == sorted(n for n, keep in names.items() if keep)


@pytest.mark.parametrize("fail_in", ["savez", "replace"])
def test_failed_write_keeps_old_file(tmp_path, monkeypatch, rng, fail_in):
    groups, meta = sample(rng)
    path = ckpt.save(tmp_path / "last.npz", groups, meta)
    before = open(path, "rb").read()

    def boom(*args, **kwargs):
        if fail_in == "savez":  # write some bytes, then fail as a full disk would
            args[0].write(b"PK\x03\x04 partial")
        raise OSError("disk full")

    target = np if fail_in == "savez" else os
    monkeypatch.setattr(target, fail_in, boom)
    new_groups = {"model": {"conv1.weight": np.zeros((2, 2), np.float32)}}
    with pytest.raises(OSError, match="disk full") as e:
        ckpt.save(path, new_groups, {})
    assert e.value.filename == path  # named even when the failing write names no file
    monkeypatch.undo()
    assert open(path, "rb").read() == before
    assert sorted(os.listdir(tmp_path)) == ["last.npz"]  # no temp file left behind
    c = ckpt.load(path)
    np.testing.assert_array_equal(c.model_state["conv1.weight"], groups["model"]["conv1.weight"])


def test_rejects_object_arrays_and_bad_groups(tmp_path):
    with pytest.raises(TypeError, match="object"):
        ckpt.save(tmp_path / "a.npz", {"model": {"x": np.array([{}], dtype=object)}}, {})
    with pytest.raises(ValueError, match="must not contain"):
        ckpt.save(tmp_path / "a.npz", {"a/b": {"x": np.zeros(1)}}, {})
    assert not os.listdir(tmp_path)


class StubModel:
    def __init__(self):
        self.sd = OrderedDict(w=np.ones((2, 3), np.float32), b=np.zeros(3, np.float32))

    def state_dict(self):
        return OrderedDict((k, v.copy()) for k, v in self.sd.items())

    def load_state_dict(self, sd, strict=True):
        for k, v in sd.items():
            np.copyto(self.sd[k], v)


def test_load_model_state_checks_everything_first():
    m = StubModel()
    with pytest.raises(ckpt.CheckpointError, match=r"missing \['b'\]"):
        ckpt.load_model_state(m, {"w": np.zeros((2, 3), np.float32)})
    with pytest.raises(ckpt.CheckpointError, match="unexpected"):
        ckpt.load_model_state(m, {"w": np.zeros((2, 3)), "b": np.zeros(3), "c": np.zeros(1)})
    # 'w' would load fine but 'b' has the wrong shape: nothing may be copied.
    with pytest.raises(ckpt.CheckpointError, match="'b' has shape"):
        ckpt.load_model_state(m, {"w": np.zeros((2, 3), np.float32), "b": np.zeros(4)})
    assert (m.sd["w"] == 1).all()
    ckpt.load_model_state(m, {"w": np.full((2, 3), 2, np.float32), "b": np.ones(3)})
    assert (m.sd["w"] == 2).all() and (m.sd["b"] == 1).all()


def test_checkpoint_file_mode_follows_umask(tmp_path):
    old = os.umask(0o022)
    try:
        path = ckpt.save(tmp_path / "c.npz", {"model": {"w": np.zeros(2, np.float32)}}, {})
    finally:
        os.umask(old)
    assert os.stat(path).st_mode & 0o777 == 0o644
