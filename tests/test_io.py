"""resnet_cpp.io reading: PyTorch files without torch (zip and legacy formats, wrappers,
refusal of code-running pickles), safetensors, key mapping, config inference, load_into.

The torch-written checkpoints are loaded in a subprocess in which ``import torch`` fails,
and must give the logits torch computed for the same input.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections import OrderedDict

import numpy as np
import pytest
from tolerance import assert_close

import resnet_cpp as rc
from resnet_cpp import io as rio

PYTHON_DIR = os.path.dirname(os.path.dirname(rc.__file__))


def _calibrate(torch, net, shape):
    """Random BN affine params, running stats of real activations, eval mode: eval-mode
    logits of a well-scaled net that depend on every buffer."""
    torch.manual_seed(1)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.momentum = None  # cumulative average over the calibration batches
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.1)
        net.train()
        for _ in range(2):
            net(torch.randn(*shape))
    return net.eval()


def _akamaster_resnet20(torch, num_classes=10, option="A"):
    """The CIFAR ResNet-20 of akamaster/pytorch_resnet_cifar10 (re-typed): ``linear``
    head, option-A shortcut as a parameter-free lambda, option B as ``shortcut.0/1``."""
    tnn, tF = torch.nn, torch.nn.functional

    class Lambda(tnn.Module):
        def __init__(self, f):
            super().__init__()
            self.f = f

        def forward(self, x):
            return self.f(x)

    class Block(tnn.Module):
        def __init__(self, cin, planes, stride):
            super().__init__()
            self.conv1 = tnn.Conv2d(cin, planes, 3, stride, 1, bias=False)
            self.bn1 = tnn.BatchNorm2d(planes)
            self.conv2 = tnn.Conv2d(planes, planes, 3, 1, 1, bias=False)
            self.bn2 = tnn.BatchNorm2d(planes)
            self.shortcut = tnn.Sequential()
            if stride != 1 or cin != planes:
                if option == "A":
                    pad = planes // 4
                    self.shortcut = Lambda(lambda x: tF.pad(x[:, :, ::2, ::2],
                                                            (0, 0, 0, 0, pad, pad)))
                else:
                    self.shortcut = tnn.Sequential(
                        tnn.Conv2d(cin, planes, 1, stride, bias=False), tnn.BatchNorm2d(planes))

        def forward(self, x):
            out = tF.relu(self.bn1(self.conv1(x)))
            return tF.relu(self.bn2(self.conv2(out)) + self.shortcut(x))

    class Net(tnn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = tnn.Conv2d(3, 16, 3, 1, 1, bias=False)
            self.bn1 = tnn.BatchNorm2d(16)
            cin, stages = 16, []
            for planes, stride in ((16, 1), (32, 2), (64, 2)):
                stages.append(tnn.Sequential(*[Block(cin if i == 0 else planes, planes,
                                                     stride if i == 0 else 1)
                                                for i in range(3)]))
                cin = planes
            self.layer1, self.layer2, self.layer3 = stages
            self.linear = tnn.Linear(64, num_classes)

        def forward(self, x):
            out = tF.relu(self.bn1(self.conv1(x)))
            out = self.layer3(self.layer2(self.layer1(out)))
            out = tF.avg_pool2d(out, out.size()[3])
            return self.linear(out.view(out.size(0), -1))

    return Net()


LOAD_WITHOUT_TORCH = textwrap.dedent("""
    import sys
    sys.modules["torch"] = None  # `import torch` raises ImportError from here on
    try:
        import torch
    except ImportError:
        pass
    else:
        raise SystemExit("torch is importable")
    import numpy as np
    import resnet_cpp as rc
    for pth, x_path, out in zip(*[iter(sys.argv[1:])] * 3):
        model, w = rc.io.build_model(pth)
        np.save(out, model(np.load(x_path)))
        print(pth, w.format, model.config["name"], model.config.get("shortcut", "-"))
    assert "torch" not in [m.split(".")[0] for m in sys.modules if sys.modules[m] is not None]
""")


@pytest.fixture(scope="module")
def torch_files(tmp_path_factory):
    """torch.save'd random nets: torchvision ResNet-18 (plain state_dict, zip format) and
    akamaster ResNet-20 ({"state_dict": DataParallel keys}, legacy format), with inputs
    and torch's eval-mode logits."""
    torch = pytest.importorskip("torch")
    from test_models import _torch_resnet

    d = tmp_path_factory.mktemp("torch")
    files = []
    cases = [("resnet18", lambda: _torch_resnet(18, (64, 128, 256, 512), 1000)[1],
              (2, 3, 64, 64), False),
             ("resnet20", lambda: _akamaster_resnet20(torch), (3, 3, 32, 32), True)]
    for name, build, shape, legacy in cases:
        torch.manual_seed(0)
        net = _calibrate(torch, build(), shape)
        x = torch.randn(*shape)
        with torch.no_grad():
            logits = net(x).numpy()
        sd = net.state_dict()
        if legacy:
            sd = {"state_dict": OrderedDict(("module." + k, v) for k, v in sd.items()),
                  "best_prec1": 91.25, "epoch": 180}
        pth = d / f"{name}.pth"
        torch.save(sd, pth, _use_new_zipfile_serialization=not legacy)
        np.save(d / f"{name}_x.npy", x.numpy())
        files.append((name, pth, d / f"{name}_x.npy", logits))
    return d, files


def test_torch_checkpoints_load_without_torch(torch_files):
    d, files = torch_files
    args = []
    for name, pth, x, _ in files:
        args += [str(pth), str(x), str(d / f"{name}_ours.npy")]
    env = {**os.environ, "PYTHONPATH": PYTHON_DIR}
    r = subprocess.run([sys.executable, "-c", LOAD_WITHOUT_TORCH, *args], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "resnet18.pth torch resnet18 -" in r.stdout
    assert "resnet20.pth torch resnet20 A" in r.stdout  # inferred: option-A shortcut
    for name, _, _, logits in files:
        ours = np.load(d / f"{name}_ours.npy")
        # float32 both; different conv algorithms: error relative to the largest logit
        assert_close(ours, logits, rtol=0, atol=1e-4 * np.abs(logits).max(), name=name)


def test_wrappers_prefix_dtypes_and_views(tmp_path):
    torch = pytest.importorskip("torch")
    base = torch.arange(24, dtype=torch.float64).reshape(4, 6)
    sd = {"w": torch.randn(3, 2), "t": torch.randn(2, 3).t(), "view": base[1:3, ::2],
          "base": base, "bf16": torch.tensor([1.5, -2.25, 3e38], dtype=torch.bfloat16),
          "f16": torch.tensor([0.1], dtype=torch.float16), "n": torch.tensor(7),
          "flag": torch.tensor([True, False]), "p": torch.nn.Parameter(torch.ones(2)),
          "empty": torch.zeros(0, 3)}
    want = {k: (v.detach().float() if v.dtype == torch.bfloat16 else v.detach()).numpy()
            for k, v in sd.items()}
    for wrap in ("plain", "state_dict", "model", "module"):
        inner = {("module." + k if wrap == "module" else k): v for k, v in sd.items()}
        obj = inner if wrap in ("plain", "module") else {wrap: inner, "epoch": 3}
        for legacy in (False, True):
            path = tmp_path / f"{wrap}{legacy}.pth"
            torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
            got = rio.load_torch(path)
            assert list(got) == list(want), (wrap, legacy)
            for k, v in want.items():
                assert got[k].dtype == v.dtype and got[k].shape == v.shape, k
                np.testing.assert_array_equal(got[k], v, err_msg=k)


class _RunsCode:
    """Unpickling this object would run a shell command that creates the marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_code_running_pickle_is_refused(tmp_path, legacy):
    torch = pytest.importorskip("torch")
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pth"
    torch.save({"conv1.weight": torch.ones(2), "x": _RunsCode(marker)}, path,
               _use_new_zipfile_serialization=not legacy)
    with pytest.raises(rio.UnsafePickleError, match=r"refused to load global posix\.system"):
        rio.load_torch(path)
    with pytest.raises(rio.UnsafePickleError):
        rio.read_weights(path)
    assert not marker.exists()
    # The same object through the plain pickle module does run: the test can fail.
    import pickle
    pickle.loads(pickle.dumps(_RunsCode(marker)))
    assert marker.exists()


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
def test_other_globals_and_bad_files_are_refused(tmp_path):
    import argparse
    import pickle

    torch = pytest.importorskip("torch")
    path = tmp_path / "ns.pth"
    torch.save({"model": {"w": torch.ones(1)}, "args": argparse.Namespace(lr=0.1)}, path)
    with pytest.raises(rio.UnsafePickleError, match=r"argparse\.Namespace"):
        rio.load_torch(path)
    script = torch.jit.script(torch.nn.Linear(2, 2))
    torch.jit.save(script, tmp_path / "ts.pt")
    with pytest.raises(ValueError, match="TorchScript archive"):
        rio.load_torch(tmp_path / "ts.pt")
    good = tmp_path / "good.pth"
    torch.save({"w": torch.ones(4)}, good, _use_new_zipfile_serialization=False)
    (tmp_path / "short.pth").write_bytes(good.read_bytes()[:-3])
    with pytest.raises(ValueError, match="truncated at storage"):
        rio.load_torch(tmp_path / "short.pth")
    (tmp_path / "junk.bin").write_bytes(b"definitely not a checkpoint")
    with pytest.raises(ValueError, match="not a PyTorch, safetensors or .npz file"):
        rio.read_weights(tmp_path / "junk.bin")
    (tmp_path / "list.pth").write_bytes(pickle.dumps(
        [{"w": 1}], protocol=2))  # a pickle, but no legacy magic number
    with pytest.raises(ValueError, match="wrong magic number"):
        rio.load_torch(tmp_path / "list.pth")
    with pytest.raises(FileNotFoundError, match="no such file"):
        rio.load_torch(tmp_path / "missing.pth")


def FloatStorage():  # noqa: N802 -- pickled by name, renamed to torch.FloatStorage below
    """Stand-in whose pickled name is rewritten into torch's."""


def _rebuild_tensor_v2():
    """Stand-in whose pickled name is rewritten into torch._utils'."""


def test_tensor_outside_its_storage_is_refused(tmp_path):
    """A hand-made zip file whose tensor claims more elements than its storage holds."""
    import io
    import pickle
    import zipfile

    class Writer(pickle.Pickler):  # the persistent id torch writes for a storage
        def persistent_id(self, obj):
            return ("storage", FloatStorage, "0", "cpu", 4) if obj == "STORAGE" else None

    class Tensor:
        def __reduce__(self):  # offset 2, size 3, stride 1: elements 2..4 of 4
            return _rebuild_tensor_v2, ("STORAGE", 2, (3,), (1,), False, OrderedDict())

    buf = io.BytesIO()
    Writer(buf, protocol=2).dump({"w": Tensor()})
    raw = buf.getvalue()
    for ours, torch_name in ((b"FloatStorage", b"torch\nFloatStorage"),
                             (b"_rebuild_tensor_v2", b"torch._utils\n_rebuild_tensor_v2")):
        raw = raw.replace(__name__.encode() + b"\n" + ours, torch_name)
    path = tmp_path / "oob.pth"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("oob/data.pkl", raw)
        zf.writestr("oob/data/0", np.zeros(4, np.float32).tobytes())
    with pytest.raises(ValueError, match="runs past its storage"):
        rio.load_torch(path)
    with zipfile.ZipFile(path, "w") as zf:  # the same tensor within bounds loads
        zf.writestr("ok/data.pkl", raw.replace(b"K\x03\x85", b"K\x02\x85"))
        zf.writestr("ok/data/0", np.arange(4, dtype=np.float32).tobytes())
    np.testing.assert_array_equal(rio.load_torch(path)["w"], [2.0, 3.0])


# --------------------------------------------------------------------------- key names


def _small_models():
    return [
        ("resnet20", dict(version=1, shortcut="A", num_classes=10)),
        ("resnet20", dict(version=1, shortcut="B", widths=(4, 8, 8), num_classes=3)),
        ("resnet29", dict(version=2, width="paper", in_channels=1, num_classes=10)),
        ("resnet29", dict(version=2, width="keras", num_classes=2)),
        ("resnet18", dict(version=1, widths=(8, 8, 16, 16), num_classes=7)),
        ("resnet50", dict(version=1, widths=(4, 4, 8, 8), num_classes=1000)),
        ("resnet101", dict(version=1, widths=(4, 4, 4, 4), num_classes=1)),
    ]


@pytest.mark.parametrize("name,kw", _small_models())
def test_infer_config_recovers_the_architecture(name, kw):
    model = rc.models.create(name, seed=0, **kw)
    cfg = rio.infer_config(model.state_dict())
    want = {"in_channels": 3, **kw, "name": name}
    if "widths" in want:
        want["widths"] = tuple(want["widths"])
    assert cfg == want


def test_infer_config_rejects_other_layouts():
    with pytest.raises(ValueError, match=r"^state_dict: no conv1.weight"):
        rio.infer_config({"features.0.weight": np.zeros((2, 3, 3, 3))})
    sd = rc.models.create("resnet20").state_dict()
    sd = {k: v for k, v in sd.items() if not k.startswith("layer3.2.")}
    with pytest.raises(ValueError, match=r"blocks per stage \[3, 3, 2\]"):
        rio.infer_config(sd)


def test_option_b_reimplementation_keys_map_to_ours(rng):
    """akamaster's option B names its projection shortcut.0/1 and the head linear."""
    ours = rc.models.create("resnet20", shortcut="B", widths=(4, 8, 8), seed=0).eval()
    theirs = OrderedDict()
    for k, v in ours.state_dict().items():
        k = k.replace("downsample.", "shortcut.")
        theirs["module." + (k.replace("fc.", "linear.", 1) if k.startswith("fc.") else k)] = v
    assert any(".shortcut.1.running_var" in k for k in theirs)
    other = rc.models.create("resnet20", shortcut="B", widths=(4, 8, 8), seed=1).eval()
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    assert not np.array_equal(other(x), ours(x))
    rio.load_into(other, theirs)
    np.testing.assert_array_equal(other(x), ours(x))


def test_load_into_new_head_and_mismatches(tmp_path):
    src = rc.models.create("resnet20", widths=(4, 8, 8), num_classes=10, seed=0)
    sd = src.state_dict()
    dst = rc.models.create("resnet20", widths=(4, 8, 8), num_classes=5, seed=1)
    head = dst.fc.weight.data.copy()
    before = dst.state_dict()
    with pytest.raises(ValueError, match=r"its head has 10 classes, the model 5; pass new_head"):
        rio.load_into(dst, sd)
    bad = dict(sd)
    bad["layer9.weight"] = np.zeros(1, np.float32)
    with pytest.raises(ValueError, match=r"unexpected keys \['layer9.weight'\]"):
        rio.load_into(dst, bad, new_head=True)
    del bad["layer9.weight"], bad["layer1.0.conv1.weight"]
    with pytest.raises(ValueError, match=r"missing keys \['layer1.0.conv1.weight'\]"):
        rio.load_into(dst, bad, new_head=True)
    for k, v in dst.state_dict().items():  # failed loads changed nothing
        np.testing.assert_array_equal(v, before[k])
    rio.load_into(dst, sd, new_head=True)
    np.testing.assert_array_equal(dst.fc.weight.data, head)
    np.testing.assert_array_equal(dst.layer3[2].conv2.weight.data,
                                  src.layer3[2].conv2.weight.data)


# --------------------------------------------------------------------------- safetensors


def test_safetensors_round_trip_with_metadata(tmp_path, rng):
    pytest.importorskip("safetensors")
    model = rc.models.create("resnet29", version=2, width="keras", num_classes=4, seed=3)
    meta = {"model": {"name": "resnet29", "version": 2, "width": "keras", "num_classes": 4,
                      "in_channels": 3}, "classes": ["a", "b", "c", "d"]}
    path = rio.save_safetensors(tmp_path / "m.safetensors", model.state_dict(), meta)
    assert rio.detect_format(path) == "safetensors"
    back, w = rio.build_model(path)
    assert w.meta == meta and w.format == "safetensors"
    for k, v in model.state_dict().items():
        assert w.state_dict[k].dtype == v.dtype
        np.testing.assert_array_equal(w.state_dict[k], v, err_msg=k)
    x = rng.standard_normal((2, 3, 16, 16)).astype(np.float32)
    np.testing.assert_array_equal(back(x), model.eval()(x))
    (tmp_path / "bad.safetensors").write_bytes(b"\x07\x00\x00\x00\x00\x00\x00\x00{broken")
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        rio.read_weights(tmp_path / "bad.safetensors")


def test_safetensors_written_by_torch_loads(tmp_path):
    torch = pytest.importorskip("torch")
    st_torch = pytest.importorskip("safetensors.torch")
    from test_models import _torch_resnet

    _, net = _torch_resnet(18, (4, 8, 8, 16), 6)
    st_torch.save_file(net.state_dict(), tmp_path / "tv.safetensors")
    model, w = rio.build_model(tmp_path / "tv.safetensors")
    assert w.meta == {} and model.num_classes == 6
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        want = net.eval()(x).numpy()
    assert_close(model(x.numpy()), want, rtol=0, atol=1e-4 * np.abs(want).max(), name="logits")


def test_npz_files(tmp_path):
    """A training checkpoint (with its model config) and a plain np.savez of a state_dict."""
    from resnet_cpp import checkpoint as ckpt

    model = rc.models.create("resnet20", widths=(4, 4, 8), num_classes=3, seed=0)
    ckpt.save(tmp_path / "c.npz", {"model": model.state_dict()},
              {"model": {"name": "resnet20", "version": 1,
                         "kwargs": {"widths": [4, 4, 8], "num_classes": 3, "seed": 0}},
               "data": {"classes": ["x", "y", "z"], "image_shape": [3, 8, 8]},
               "normalization": {"mean": [0.5] * 3, "std": [0.25] * 3}})
    w = rio.read_weights(tmp_path / "c.npz")
    assert w.format == "npz" and w.meta["classes"] == ["x", "y", "z"]
    assert w.meta["model"] == {"name": "resnet20", "version": 1, "widths": [4, 4, 8],
                               "num_classes": 3}
    assert rio.build_model(w)[0].num_classes == 3
    np.savez(tmp_path / "plain.npz", **model.state_dict())
    w = rio.read_weights(tmp_path / "plain.npz")
    assert w.meta == {} and set(w.state_dict) == set(model.state_dict())
