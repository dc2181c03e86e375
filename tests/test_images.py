"""Image folders read with Pillow: discovery and splits, the standard preprocessing,
deterministic augmentation in the background loader, and errors naming the file."""
from __future__ import annotations

import sys

import numpy as np
import pytest

from resnet_cpp.data import (ImageDataset, Preprocess, image_files, image_folder,
                             load_image_folder)

Image = pytest.importorskip("PIL.Image")

COLORS = {"blue": (0, 0, 255), "green": (0, 200, 0), "red": (230, 0, 0)}


def make_folder(root, per_class=6, seed=0):
    """root/<color>/<i>.png: noisy images of one dominant color, sizes and modes varied."""
    rng = np.random.default_rng(seed)
    for name, rgb in COLORS.items():
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            h, w = rng.integers(14, 30, size=2)
            a = np.clip(np.array(rgb) + rng.normal(0, 25, (h, w, 3)), 0, 255).astype(np.uint8)
            im = Image.fromarray(a)
            if i % 3 == 1:
                im = im.convert("RGBA")  # modes other than RGB are converted on reading
            elif i % 3 == 2:
                im = im.convert("P")
            im.save(root / name / f"{i}.png")
    return root


def test_folder_classes_and_held_out_split(tmp_path):
    root = make_folder(tmp_path / "imgs", per_class=10)
    (root / "empty").mkdir()  # no images: not a class
    (root / "red" / "notes.txt").write_text("ignored: not an image")
    full = image_folder(root, Preprocess(size=16))
    assert full.classes == ["blue", "green", "red"] and len(full) == 30
    assert full.shape == (3, 16, 16) and np.bincount(full.labels).tolist() == [10, 10, 10]
    train, test = load_image_folder(root, Preprocess(size=16), test_fraction=0.2, seed=3)
    assert np.bincount(test.labels).tolist() == [2, 2, 2] and len(train) == 24
    assert not set(train.paths) & set(test.paths)
    again = load_image_folder(root, Preprocess(size=16), test_fraction=0.2, seed=3)[1]
    assert again.paths == test.paths  # the split is a function of the seed


def test_train_val_subfolders_share_the_class_list(tmp_path):
    make_folder(tmp_path / "d" / "train", per_class=2)
    (tmp_path / "d" / "val" / "red").mkdir(parents=True)
    Image.new("RGB", (8, 8), COLORS["red"]).save(tmp_path / "d" / "val" / "red" / "x.png")
    train, test = load_image_folder(tmp_path / "d")
    assert test.classes == train.classes and test.labels.tolist() == [2]
    (tmp_path / "d" / "val" / "cyan").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "d" / "val" / "cyan" / "y.png")
    with pytest.raises(ValueError, match=r"classes \['cyan'\] are not among"):
        load_image_folder(tmp_path / "d")


def test_eval_preprocessing_is_resize_then_center_crop(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    Image.fromarray(a).save(tmp_path / "x.png")
    pre = Preprocess(size=16, resize=20)
    got = image_files([tmp_path / "x.png"], pre).decode([0])[0]
    # shorter side 40 -> 20 (so 60 -> 30), then the central 16x16: rows 2..17, cols 7..22
    want = np.asarray(Image.fromarray(a).resize((30, 20), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(got, want[2:18, 7:23].transpose(2, 0, 1))
    gray = image_files([tmp_path / "x.png"], Preprocess(size=16, resize=20, channels=1))
    assert gray.decode([0]).shape == (1, 1, 16, 16) and gray.mean.shape == (1,)
    assert Preprocess().resize_to == 256 and Preprocess(size=32).resize_to == 37


def test_augmented_batches_are_deterministic_and_normalized(tmp_path):
    root = make_folder(tmp_path / "imgs", per_class=4)
    ds = image_folder(root, Preprocess(size=12, scale=(0.3, 1.0)))
    loader = ds.make_loader(5, shuffle=True, augment=True, mean=ds.mean, std=ds.std, seed=7)
    first = [(x.copy(), y.copy()) for x, y in loader]
    again = [(x.copy(), y.copy()) for x, y in loader]
    assert len(first) == 3 and first[0][0].shape == (5, 3, 12, 12)
    for (x1, y1), (x2, y2) in zip(first, again):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    loader.set_epoch(1)
    assert not np.array_equal(next(iter(loader))[0], first[0][0])
    plain = ds.make_loader(12, shuffle=False, mean=ds.mean, std=ds.std)
    x, y = next(iter(plain))
    raw = ds.decode(range(12)).astype(np.float32) / 255
    want = (raw - ds.mean[:, None, None]) / ds.std[:, None, None]
    np.testing.assert_allclose(x, want, rtol=1e-6, atol=1e-6)
    assert y.tolist() == ds.labels[:12].tolist()


def test_unreadable_image_fails_at_its_batch(tmp_path):
    root = make_folder(tmp_path / "imgs", per_class=2)
    (root / "red" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    ds = image_folder(root, Preprocess(size=8))
    with pytest.raises(ValueError, match=r"broken\.png: cannot read the image"):
        for _ in ds.make_loader(2, shuffle=False):
            pass


def test_bad_arguments(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"^resize must be >= size"):
        Preprocess(size=32, resize=16)
    with pytest.raises(ValueError, match=r"^channels must be 1 or 3"):
        Preprocess(channels=4)
    with pytest.raises(ValueError, match=r"^scale must be"):
        Preprocess(scale=(0.0, 1.0))
    with pytest.raises(FileNotFoundError, match="no such image folder"):
        image_folder(tmp_path / "nope")
    with pytest.raises(ValueError, match="no class sub-folders with images"):
        image_folder(tmp_path)
    with pytest.raises(ValueError, match=r"^ImageDataset 'images': 1 paths but 2 labels"):
        ImageDataset(["a.png"], [0, 1], ["x"])
    Image.new("RGB", (4, 4)).save(tmp_path / "a.png")
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(ImportError, match=r'pip install "resnet_cpp\[images\]"'):
        image_files([tmp_path / "a.png"]).decode([0])
