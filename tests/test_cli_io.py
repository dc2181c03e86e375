"""The three user journeys on the command line: train on a folder of images and predict,
fine-tune from a PyTorch checkpoint, export to ONNX and safetensors."""
from __future__ import annotations

import numpy as np
import pytest
from test_images import make_folder

import resnet_cpp as rc
from resnet_cpp import checkpoint as ckpt
from resnet_cpp.cli import main

pytest.importorskip("PIL")
QUIET = ["--no-progress", "--threads", "1"]


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory):
    """ResNet-20 trained on generated PNGs of three colors (train/ and val/ splits)."""
    root = tmp_path_factory.mktemp("imgs")
    make_folder(root / "train", per_class=16, seed=0)
    make_folder(root / "val", per_class=4, seed=1)
    out = root / "run"
    assert main(["train", "--dataset", "folder", "--data-dir", str(root), "--image-size", "12",
                 "--epochs", "5", "--batch-size", "8", "--lr", "0.05", "--out", str(out),
                 *QUIET]) == 0
    return root, out


def test_folder_trains_and_predicts(folder_run, capsys):
    root, out = folder_run
    c = ckpt.load(out / "last.npz")
    assert c.meta["data"]["classes"] == ["blue", "green", "red"]
    assert c.meta["data"]["preprocess"]["size"] == 12
    assert c.meta["normalization"]["mean"] == pytest.approx([0.485, 0.456, 0.406])
    # dominant colors are easy: 5 epochs of 48 images reach 100% (seeds 0, 1, 2 measured)
    assert c.meta["metrics"]["test_acc"] >= 0.75
    capsys.readouterr()
    assert main(["predict", "--checkpoint", str(out / "last.npz"), str(root / "val"),
                 "--top-k", "2", "--no-progress"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 12
    right = 0
    for line in lines:
        path, k1, name1, p1, k2, name2, p2 = line.split("\t")
        assert path.startswith(str(root / "val")) and name1 != name2
        assert 1.0 >= float(p1) >= float(p2) >= 0.0
        right += f"/{name1}/" in path
    assert right >= 9
    assert main(["eval", "--checkpoint", str(out / "last.npz")]) == 0
    assert "(4 images)" in capsys.readouterr().out  # the val split, per class


def test_export_onnx_and_safetensors(folder_run, tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("safetensors")
    root, out = folder_run
    onnx_path, st_path = tmp_path / "m.onnx", tmp_path / "m.safetensors"
    assert main(["export", "--checkpoint", str(out / "last.npz"), "--onnx", str(onnx_path),
                 "--safetensors", str(st_path)]) == 0
    assert "opset 17" in capsys.readouterr().out
    model, w = rc.io.build_model(st_path)
    assert w.meta["classes"] == ["blue", "green", "red"] and w.meta["preprocess"]["size"] == 12
    ds = rc.data.image_folder(root / "val", rc.data.Preprocess(size=12))
    x, _ = next(iter(ds.make_loader(12, shuffle=False, mean=ds.mean, std=ds.std)))
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    want = model(x)
    got = sess.run(None, {"input": x})[0]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * np.abs(want).max())
    # The safetensors file carries classes and preprocessing: predict gives the same lines.
    for ck in (out / "last.npz", st_path):
        assert main(["predict", "--checkpoint", str(ck), str(root / "val"),
                     "--no-progress"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 24 and lines[:12] == lines[12:]
    assert main(["export", "--checkpoint", str(out / "last.npz")]) == 2
    assert "give --onnx" in capsys.readouterr().err


def test_finetune_from_a_pytorch_checkpoint(folder_run, tmp_path, capsys):
    """--init-from a torch .pth (akamaster ResNet-20): the model comes from the file, the
    head is new, and the frozen trunk leaves training bit for bit as loaded."""
    torch = pytest.importorskip("torch")
    from test_io import _akamaster_resnet20

    root, _ = folder_run
    torch.manual_seed(0)
    net = _akamaster_resnet20(torch, num_classes=10)
    pth = tmp_path / "resnet20.pth"
    torch.save({"state_dict": {"module." + k: v for k, v in net.state_dict().items()}}, pth)
    out = tmp_path / "ft"
    assert main(["train", "--dataset", "folder", "--data-dir", str(root), "--init-from",
                 str(pth), "--new-head", "3", "--freeze-trunk", "--freeze-bn", "--epochs", "2",
                 "--batch-size", "16", "--max-steps", "2", "--out", str(out), *QUIET]) == 0
    assert "training resnet20 v1 on folder" in capsys.readouterr().out
    pth.unlink()  # a resumed run needs only its own checkpoint
    assert main(["train", "--resume", str(out), *QUIET]) == 0
    c = ckpt.load(out / "last.npz")
    assert c.meta["position"]["epoch"] == 2 and c.meta["config"]["freeze_trunk"] is True
    assert c.meta["config"]["cli"]["image_size"] == 32  # a CIFAR model: 32x32 crops
    theirs = {k: v.numpy() for k, v in net.state_dict().items()}
    for k, v in c.model_state.items():
        if k.startswith("fc."):
            assert v.shape[0] == 3
        else:
            np.testing.assert_array_equal(v, theirs[k], err_msg=k)
    torch.save(net.state_dict(), pth)
    assert main(["train", "--dataset", "folder", "--data-dir", str(root), "--init-from",
                 str(pth), "--new-head", "5", "--out", str(tmp_path / "x"), *QUIET]) == 2
    assert "--new-head 5: the training data has 3 classes" in capsys.readouterr().err
    assert main(["train", "--dataset", "folder", "--data-dir", str(root), "--init-from",
                 str(pth), "--out", str(tmp_path / "y"), *QUIET]) == 2
    assert "pass new_head=True (CLI: --new-head)" in capsys.readouterr().err
    assert main(["train", "--new-head", "--out", str(tmp_path / "z"), *QUIET]) == 2
    assert "give --init-from FILE" in capsys.readouterr().err
