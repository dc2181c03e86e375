"""Models, optimizers, checkpoints, fit and the CLI on the CUDA backend, against the CPU.

Runs wherever resnet_cpp._cuda is built and usable: on a GPU, and in CI on the CPU emulator
(tools/cuda_emu), so every shape here is small. Each model family is built twice from one
state_dict, once moved to the device, and must give the CPU's forward and backward.
"""
from __future__ import annotations

import numpy as np
import pytest

from cudatest import cuda_module_or_skip
from resnet_cpp import _core, cuda, models, nn, optim
from resnet_cpp import functional as F
from model_precision import randomize as _randomize
from ref_models import RefNet, ref_cifar_v1, ref_imagenet, ref_preact_v2
from test_models import getattr_path
from tolerance import BACKWARD, assert_close

_cuda = cuda_module_or_skip()


def host(a):
    return cuda.to_host(a)


def kink_free_input(model, ref_fn, rng, x_shape):
    """An input keeping every ReLU input 2e-5 away from 0 (see test_models: near the kink
    float32 rounding may pick the other branch on one backend and not the other)."""
    for _ in range(50):
        x = rng.standard_normal(x_shape).astype(np.float32)
        net = RefNet(model.state_dict())
        ref_fn(net, x)
        if net.kink > 2e-5:
            return x
    raise AssertionError("no input kept every ReLU input 2e-5 away from 0")


def check_device_matches_cpu(build, ref_fn, rng, x_shape, tol=BACKWARD):
    cpu = build()
    _randomize(cpu, rng)
    gpu = build()
    gpu.load_state_dict(cpu.state_dict())
    assert gpu.to("cuda") is gpu and gpu.device == "cuda"
    x = kink_free_input(cpu, ref_fn, rng, x_shape)
    logits = cpu(x)
    logits_d = gpu(cuda.to_device(x))
    assert isinstance(logits_d, cuda.DeviceArray)
    assert_close(host(logits_d), logits, **tol, name="logits")
    for name, b in cpu.named_buffers():
        if not name.endswith("num_batches_tracked"):
            assert_close(host(getattr_path(gpu, name)), b, **tol, name=name)
    dy = rng.standard_normal(logits.shape).astype(np.float32)
    dx = cpu.backward(dy)
    assert_close(host(gpu.backward(cuda.to_device(dy))), dx, **tol, name="dx")
    for (name, p), (_, pd) in zip(cpu.named_parameters(), gpu.named_parameters()):
        assert pd.device == "cuda" and pd.shape == p.shape
        assert_close(pd.host(pd.grad), p.host(p.grad), **tol, name=name + ".grad")


@pytest.mark.parametrize("shortcut", ["A", "B"])
def test_cifar_v1_matches_cpu(rng, shortcut):
    check_device_matches_cpu(
        lambda: models.CifarResNet(8, num_classes=5, in_channels=3, shortcut=shortcut,
                                   widths=(4, 8, 12), seed=0),
        lambda net, x: ref_cifar_v1(net, x, 1, shortcut), rng, (2, 3, 8, 8))


@pytest.mark.parametrize("width", ["paper", "keras"])
def test_preact_v2_matches_cpu(rng, width):
    check_device_matches_cpu(
        lambda: models.PreActResNet(20, num_classes=4, in_channels=2, width=width, seed=0),
        lambda net, x: ref_preact_v2(net, x, 2, width), rng, (2, 2, 8, 8))


@pytest.mark.parametrize("depth", [18, 50])
def test_imagenet_resnet_matches_cpu(rng, depth):
    block, counts = models.IMAGENET_DEPTHS[depth]
    # As in test_models: ResNet-50's 53 BN backward passes compound float32 error, and here
    # two float32 computations (summed in different orders) meet, so the same 3x allowance.
    tol = BACKWARD if depth == 18 else dict(rtol=3e-3, atol=3e-4)
    check_device_matches_cpu(
        lambda: models.ImageNetResNet(depth, num_classes=3, in_channels=3,
                                      widths=(4, 4, 8, 8), seed=0),
        lambda net, x: ref_imagenet(net, x, counts, block is models.Bottleneck),
        rng, (2, 3, 29, 29), tol)


def _train_steps(model, opt, x, labels, steps):
    crit = nn.CrossEntropyLoss()
    losses = []
    for _ in range(steps):
        loss = crit(model(x), labels)
        opt.zero_grad()
        model.backward(crit.backward(), need_dx=False)
        opt.step()
        losses.append(float(loss))
    return losses


@pytest.mark.parametrize("name,kw", [("sgd", dict(lr=0.1, momentum=0.9, weight_decay=5e-4)),
                                     ("adam", dict(lr=1e-2, weight_decay=1e-3)),
                                     ("adamw", dict(lr=1e-2, weight_decay=1e-2))])
def test_five_steps_give_the_cpu_parameters(name, kw):
    """Five optimizer steps on a fixed batch: the same losses, weights, momentum/moment
    buffers and BN statistics on both backends (state_dicts compared on the host)."""
    rng = np.random.default_rng(7)
    build = lambda: models.CifarResNet(8, num_classes=4, in_channels=2, shortcut="A",  # noqa: E731
                                       widths=(4, 6, 8), seed=3)
    cpu, gpu = build(), build().to("cuda")
    x = rng.standard_normal((8, 2, 8, 8)).astype(np.float32)
    labels = rng.integers(0, 4, size=8).astype(np.int64)
    opt_c = optim.create_optimizer(name, cpu.parameters(), **kw)
    opt_g = optim.create_optimizer(name, gpu.parameters(), **kw)
    losses_c = _train_steps(cpu, opt_c, x, labels, 5)
    losses_g = _train_steps(gpu, opt_g, cuda.to_device(x), cuda.to_device(labels), 5)
    assert_close(losses_g, losses_c, **BACKWARD, name="losses")
    sd_c, sd_g = cpu.state_dict(), gpu.state_dict()
    assert list(sd_g) == list(sd_c)
    for k in sd_c:
        assert isinstance(sd_g[k], np.ndarray) and sd_g[k].shape == sd_c[k].shape
        assert_close(sd_g[k], sd_c[k], **BACKWARD, name=k + " after 5 steps")
    st_c, st_g = opt_c.state_dict(), opt_g.state_dict()
    assert st_g["step"] == st_c["step"] == 5
    for k in st_c["arrays"]:
        assert_close(st_g["arrays"][k], st_c["arrays"][k], **BACKWARD, name=k)


def test_micro_batches_accumulate_and_a_second_backward_raises(rng):
    """The module contract on the device: two micro-batches' gradients add up in .grad
    (the second through a device scratch array) as on the CPU, and a second backward
    after one forward raises."""
    build = lambda: models.CifarResNet(8, num_classes=3, in_channels=2, shortcut="B",  # noqa: E731
                                       widths=(4, 6, 8), seed=3)
    cpu, gpu = build(), build().to("cuda")
    xs = [rng.standard_normal((2, 2, 8, 8)).astype(np.float32) for _ in range(2)]
    dy = rng.standard_normal((2, 3)).astype(np.float32)
    for model, to in ((cpu, np.asarray), (gpu, cuda.to_device)):
        model.zero_grad()
        for x in xs:
            model(to(x))
            model.backward(to(dy), need_dx=False)
        with pytest.raises(RuntimeError, match=r"^Linear\.backward: no forward left"):
            model.backward(to(dy))
    for (name, p), (_, pd) in zip(cpu.named_parameters(), gpu.named_parameters()):
        assert_close(pd.host(pd.grad), p.host(p.grad), **BACKWARD, name=name + ".grad")


def test_to_and_back_keeps_weights_and_layouts(rng):
    model = models.CifarResNet(8, num_classes=3, widths=(4, 6, 8), seed=1)
    before = model.state_dict()
    model.to("cuda")
    w = model.conv1.weight
    assert isinstance(w.data, cuda.DeviceArray) and w.data.shape == (3, 3, 3, 4)  # RSCK
    assert w.shape == (4, 3, 3, 3)  # the host (PyTorch) shape
    assert isinstance(model.bn1.running_mean, cuda.DeviceArray)
    assert isinstance(model.bn1.num_batches_tracked, np.ndarray)  # counters stay on the host
    after = model.state_dict()
    for k in before:
        assert isinstance(after[k], np.ndarray)
        np.testing.assert_array_equal(after[k], before[k])
    model.load_state_dict({k: v + 1 for k, v in before.items()})
    np.testing.assert_array_equal(host(model.conv1.weight.data),
                                  (before["conv1.weight"] + 1).transpose(2, 3, 1, 0))
    model.to("cpu")
    assert model.device == "cpu" and isinstance(model.conv1.weight.data, np.ndarray)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k] + 1)


def test_optimizer_follows_the_model(rng):
    model = models.CifarResNet(8, num_classes=3, widths=(4, 6, 8), seed=1)
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    opt.buffers[0][...] = 1.0
    with pytest.raises(ValueError, match=r"^device: the parameters are on cpu"):
        opt.to("cuda")
    model.to("cuda")
    opt.to("cuda")
    assert isinstance(opt.buffers[0], cuda.DeviceArray)
    np.testing.assert_array_equal(opt.state_dict()["arrays"]["0.momentum"], 1.0)


def test_bad_inputs_name_the_arguments_and_devices(rng):
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    # A host array passed to a device op.
    with pytest.raises(TypeError, match=r"^x: expected a resnet_cpp._cuda.DeviceArray"):
        _cuda.relu_forward(x)
    # A mixed-device call through functional names both arguments and their devices.
    with pytest.raises(TypeError, match=r"^conv2d: x is on cuda:0 but w is on the CPU"):
        F.conv2d(cuda.to_device(x), w)
    with pytest.raises(TypeError, match=r"^add: a is on the CPU .* but b is on cuda:0"):
        F.add(x, cuda.to_device(x))
    model = models.CifarResNet(8, num_classes=3, widths=(4, 6, 8), seed=1).to("cuda")
    with pytest.raises(TypeError, match=r"^x: the model is on cuda but x is on cpu"):
        model(x)
    with pytest.raises(ValueError, match=r"^device: expected 'cpu' or 'cuda', got 'tpu'"):
        model.to("tpu")
    with pytest.raises(ValueError, match=r"^dloss: scaling"):
        crit = nn.CrossEntropyLoss()
        crit(model(cuda.to_device(x)), cuda.to_device(np.zeros(2, np.int64)))
        crit.backward(2.0)


def test_device_loss_stays_on_the_device(rng):
    logits = cuda.to_device(rng.standard_normal((4, 3)).astype(np.float32))
    labels = np.array([0, 2, 1, 1], np.int64)
    labels_d = cuda.to_device(labels)
    crit = nn.CrossEntropyLoss(check_labels=False)
    syncs = _cuda.sync_count()
    loss = crit(logits, labels_d)
    assert isinstance(loss, cuda.DeviceArray) and loss.shape == ()
    assert _cuda.sync_count() == syncs  # nothing waited for the device yet
    want, _ = _core.softmax_cross_entropy(host(logits), labels)
    assert_close(float(loss), want, **BACKWARD, name="loss")


# ------------------------------------------------------------------ training on the device

def tiny_data(n_train=40, n_test=16):
    """Bundled images at 7x7 (every 4th pixel): 3 steps per epoch at batch 16, the last one
    a partial batch of 8 (which runs eagerly while full batches replay the graph)."""
    from resnet_cpp.data import Dataset, load_dataset

    train, test = load_dataset("bundled")

    def small(ds, n, name):
        return Dataset(np.ascontiguousarray(ds.images[:n, :, ::4, ::4]), ds.labels[:n],
                       ds.classes, name)

    return small(train, n_train, "tiny/train"), small(test, n_test, "tiny/test")


TINY_MODEL = {"name": "resnet20", "version": 1,
              "kwargs": {"num_classes": 10, "in_channels": 1, "seed": 0, "widths": [4, 8, 8]}}


def fit(data, device, out_dir=None, **kw):
    from resnet_cpp import train as T

    args = dict(epochs=2, batch_size=16, seed=5, progress=False, verbose=False,
                model_config=TINY_MODEL, augment=True, out_dir=out_dir, device=device)
    args.update(kw)
    model = models.create(TINY_MODEL["name"], version=1, **TINY_MODEL["kwargs"])
    trainer = T.Trainer(model, *data, **args)
    return trainer, trainer.fit()


def assert_state_close(sa, sb, what):
    assert list(sa) == list(sb)
    for k in sa:
        if k.endswith("num_batches_tracked"):
            np.testing.assert_array_equal(sa[k], sb[k], err_msg=k)
        else:
            # Two epochs of SGD on float32 from two kernel families: the differences grow
            # from ~1e-6 per op to ~1e-4 relative after 6 steps (measured on the emulator).
            assert_close(sa[k], sb[k], rtol=1e-2, atol=1e-3, name=f"{what}: {k}")


def test_fit_on_the_device_matches_the_cpu(monkeypatch):
    from resnet_cpp.train import device_step

    replays = []
    exit_ = device_step.CudaTrainStep.__exit__
    monkeypatch.setattr(device_step.CudaTrainStep, "__exit__",
                        lambda self, *e: (replays.append(self.graph_replays), exit_(self, *e)))
    data = tiny_data()
    cpu, hist_c = fit(data, "cpu")
    gpu, hist_g = fit(data, "cuda")
    assert gpu.model.device == "cuda" and hist_g.test is not None
    # Epoch 1: eager, then capture (which runs the step); epoch 2: two replays. The partial
    # last batch of each epoch is another shape: eager, then captured.
    assert replays == [2]
    assert_state_close(gpu.model.state_dict(), cpu.model.state_dict(), "cuda vs cpu")
    for rc_, rg in zip(hist_c.records, hist_g.records):
        assert_close(rg["train_loss"], rc_["train_loss"], rtol=1e-3, atol=1e-4, name="train loss")
        assert_close(rg["test_loss"], rc_["test_loss"], rtol=1e-2, atol=1e-3, name="test loss")
    # The graph replays exactly the ops an eager step runs.
    eager, _ = fit(data, "cuda", cuda_graph=False)
    for k, v in eager.model.state_dict().items():
        np.testing.assert_array_equal(gpu.model.state_dict()[k], v, err_msg=k)


def test_checkpoints_move_between_devices(tmp_path):
    """A run saved on the GPU resumes on the CPU, and one saved on the CPU on the GPU; both
    end where an uninterrupted CPU run ends."""
    data = tiny_data()
    ref, _ = fit(data, "cpu")
    for first, second in (("cuda", "cpu"), ("cpu", "cuda")):
        out = str(tmp_path / f"{first}-{second}")
        fit(data, first, out, max_steps=4)  # stops mid-epoch 2: last.npz holds the position
        resumed, hist = fit(data, second, out, resume=True)
        assert resumed.global_step == 6 and resumed.model.device == second
        assert_state_close(resumed.model.state_dict(), ref.model.state_dict(), f"{first}->{second}")


def test_steady_state_step_waits_once_and_allocates_nothing():
    from resnet_cpp.train.device_step import CudaTrainStep

    rng = np.random.default_rng(0)
    model = models.CifarResNet(8, num_classes=3, in_channels=1, widths=(4, 6, 8), seed=0).to("cuda")
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    crit = nn.CrossEntropyLoss(check_labels=False)
    x = _cuda.pinned_empty((4, 1, 8, 8))
    y = _cuda.pinned_empty((4,), "int64")
    x[...] = rng.standard_normal(x.shape)
    y[...] = [0, 1, 2, 1]
    for graph in (True, False):
        with CudaTrainStep(model, crit, opt, cuda_graph=graph) as step:
            for _ in range(3):  # eager, capture, replay
                step.step(x, y)
            syncs, mallocs = _cuda.sync_count(), _cuda.allocator_stats()["device_mallocs"]
            for _ in range(3):
                loss, logits = step.step(x, y)
            assert _cuda.sync_count() - syncs == 3, "one host wait per step"
            assert _cuda.allocator_stats()["device_mallocs"] == mallocs, "a step allocated"
            assert step.graph_replays == (4 if graph else 0)  # warm-up step 3 replayed too
            assert np.isfinite(loss) and logits.shape == (4, 3)


def test_bad_labels_are_reported_before_the_step():
    """The loss does not check labels on the device (that would wait for it): the training
    loop checks each batch on the host against the model's classes."""
    from resnet_cpp.data import Dataset

    train, test = tiny_data()
    labels = train.labels.copy()
    labels[5] = 12
    bad = Dataset(train.images, labels, [str(i) for i in range(13)], "bad labels")
    with pytest.raises(ValueError, match=r"^labels: labels\[\d+\] = 12 is outside \[0, K\) = \[0, 10\)"):
        fit((bad, test), "cuda", epochs=1)


def test_cli_train_eval_predict_on_the_device(tmp_path, capsys):
    from resnet_cpp.cli import main

    train, test = tiny_data()
    npz = tmp_path / "tiny.npz"
    u8 = lambda ds: np.round(ds.images[:, 0] * 255).astype(np.uint8)  # noqa: E731
    np.savez(npz, x_train=u8(train), y_train=train.labels, x_test=u8(test), y_test=test.labels,
             classes=np.array(train.classes))
    out = tmp_path / "run"
    assert main(["train", "--device", "cuda", "--max-steps", "3", "--dataset", "npz",
                 "--data-dir", str(npz), "--batch-size", "8", "--no-progress", "--out",
                 str(out)]) == 0
    assert "test accuracy:" in capsys.readouterr().out
    assert main(["eval", "--device", "cuda", "--checkpoint", str(out / "last.npz")]) == 0
    assert "accuracy" in capsys.readouterr().out
    np.save(tmp_path / "x.npy", u8(test)[:5])
    assert main(["predict", "--device", "cuda", "--checkpoint", str(out / "last.npz"),
                 str(tmp_path / "x.npy")]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 5
