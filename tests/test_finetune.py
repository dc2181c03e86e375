"""Fine-tuning: init from a checkpoint, new head, frozen trunk (bit-identical), trunk lr in
its own parameter group, frozen BN statistics, and the skipped backward of a frozen trunk."""
from __future__ import annotations

import numpy as np
import pytest
from tolerance import assert_close

import resnet_cpp as rc
from resnet_cpp import finetune
from resnet_cpp import train as T
from resnet_cpp.data import Dataset, load_dataset

ARCH = dict(widths=(4, 8, 8), in_channels=1)


@pytest.fixture(scope="module")
def data():
    """64 train / 16 test bundled images at 14x14, relabelled to 3 classes (a new task)."""
    train, test = load_dataset("bundled")

    def small(ds, n, name):
        return Dataset(np.ascontiguousarray(ds.images[:n, :, ::2, ::2]), ds.labels[:n] % 3,
                       ["a", "b", "c"], name)

    return small(train, 64, "ft/train"), small(test, 16, "ft/test")


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A 10-class model with BN statistics away from their defaults, saved as .npz."""
    model = rc.models.create("resnet20", num_classes=10, seed=0, **ARCH)
    rng = np.random.default_rng(0)
    for k, b in model.named_buffers():
        if k.endswith("running_var"):
            b[...] = rng.uniform(0.5, 2.0, b.shape)
    path = tmp_path_factory.mktemp("pre") / "pretrained.npz"
    np.savez(path, **model.state_dict())
    return path, model.state_dict()


def fit(data, **kw):
    model = rc.models.create("resnet20", num_classes=3, seed=1, **ARCH)
    args = dict(epochs=1, batch_size=16, seed=0, progress=False, verbose=False, lr=0.05)
    args.update(kw)
    T.fit(model, data[0], data[1], **args)
    return model


def trunk(sd):
    return {k: v for k, v in sd.items() if not k.startswith("fc.")}


def test_frozen_trunk_and_bn_stay_bit_identical(data, pretrained):
    path, src = pretrained
    head = rc.models.create("resnet20", num_classes=3, seed=1, **ARCH).fc.weight.data.copy()
    model = fit(data, init_from=path, new_head=True, freeze_trunk=True, freeze_bn=True)
    after = model.state_dict()
    for k, v in trunk(src).items():  # parameters and BN buffers, num_batches_tracked too
        np.testing.assert_array_equal(after[k], v, err_msg=k)
    assert not np.array_equal(after["fc.weight"], head)  # the head did train
    # The trunk's backward was skipped: no gradient was ever written into it.
    assert all(not p.grad.any() for n, p in model.named_parameters() if not n.startswith("fc."))


def test_frozen_trunk_with_live_bn_statistics(data, pretrained):
    path, src = pretrained
    model = fit(data, init_from=path, new_head=True, freeze_trunk=True)
    after = model.state_dict()
    for n, _ in model.named_parameters():
        if not n.startswith("fc."):
            np.testing.assert_array_equal(after[n], src[n], err_msg=n)
    assert not np.array_equal(after["bn1.running_mean"], src["bn1.running_mean"])


def test_frozen_bn_alone_keeps_statistics_and_trains_the_rest(data, pretrained):
    path, src = pretrained
    model = fit(data, init_from=path, new_head=True, freeze_bn=True)
    after = model.state_dict()
    for k, b in model.named_buffers():
        np.testing.assert_array_equal(b, src[k], err_msg=k)
    assert not np.array_equal(after["layer1.0.conv1.weight"], src["layer1.0.conv1.weight"])
    assert not np.array_equal(after["bn1.weight"], src["bn1.weight"])  # gamma still trains
    assert all(m.training for m in model.modules()
               if not isinstance(m, rc.nn.BatchNorm2d))
    assert model.freeze_bn(False).layer1[0].bn1.training  # unfreezing restores train mode


def test_trunk_lr_is_its_own_parameter_group(data, pretrained):
    path, src = pretrained
    seen = []

    def record(trainer):
        g = trainer.optimizer.param_groups
        seen.append((trainer.optimizer.lr, g[0]["lr"], g[1]["lr"]))

    model = fit(data, init_from=path, new_head=True, trunk_lr=0.005, schedule="cosine",
                on_step=record)
    assert len(seen) == 4 and len({lr for lr, _, _ in seen}) == 4  # 4 steps, cosine decay
    for lr, trunk_group, head_group in seen:  # the schedule scales both groups alike
        assert head_group == lr and trunk_group == pytest.approx(lr / 10)
    assert not np.array_equal(model.state_dict()["layer3.0.conv2.weight"],
                              src["layer3.0.conv2.weight"])


def test_resume_with_parameter_groups_is_bit_exact(data, pretrained, tmp_path):
    path, _ = pretrained
    kw = dict(init_from=path, new_head=True, trunk_lr=0.01, freeze_bn=True, momentum=0.9)
    whole = fit(data, out_dir=str(tmp_path / "a"), **kw)
    fit(data, out_dir=str(tmp_path / "b"), max_steps=2, **kw)
    resumed = fit(data, out_dir=str(tmp_path / "b"), resume=True, **kw)
    for k, v in whole.state_dict().items():
        np.testing.assert_array_equal(resumed.state_dict()[k], v, err_msg=k)
    with pytest.raises(ValueError, match=r"trunk_lr=0\.01, this run trunk_lr=0\.02"):
        fit(data, out_dir=str(tmp_path / "b"), resume=True, **{**kw, "trunk_lr": 0.02})


def test_finetune_errors(data, pretrained):
    path, _ = pretrained
    with pytest.raises(ValueError, match=r"^new_head needs init_from"):
        fit(data, new_head=True)
    with pytest.raises(ValueError, match=r"^give freeze_trunk or trunk_lr, not both"):
        fit(data, init_from=path, new_head=True, freeze_trunk=True, trunk_lr=0.01)
    with pytest.raises(ValueError, match=r"its head has 10 classes, the model 3; pass new_head"):
        fit(data, init_from=path)
    with pytest.raises(TypeError, match=r"^model: fine-tuning needs a zoo model"):
        finetune.prepare(rc.nn.Linear(2, 2), freeze_bn=True)


def test_backward_skips_a_frozen_prefix(rng):
    """Freezing conv1, bn1 and layer1: the other gradients equal a full backward's, the
    frozen ones are never written, and asking for dx still runs everything."""
    model = rc.models.create("resnet20", num_classes=4, seed=0, **ARCH)
    x = rng.standard_normal((4, 1, 8, 8)).astype(np.float32)
    dy = rng.standard_normal((4, 4)).astype(np.float32)
    model(x)
    model.backward(dy, need_dx=False)
    full = {n: p.grad.copy() for n, p in model.named_parameters()}
    for name in ("conv1", "bn1", "layer1"):
        getattr(model, name).requires_grad_(False)
    model.zero_grad()
    for _, p in model.named_parameters():
        if not p.requires_grad:
            p.grad.fill(np.nan)
    model(x)
    assert model.backward(dy, need_dx=False) is None
    for n, p in model.named_parameters():
        if n.split(".")[0] in ("conv1", "bn1", "layer1"):
            assert np.isnan(p.grad).all(), n
        else:
            np.testing.assert_array_equal(p.grad, full[n], err_msg=n)
    model(x)
    dx = model.backward(dy)  # need_dx: the frozen prefix runs, for the input gradient
    assert dx.shape == x.shape and not np.isnan(model.conv1.weight.grad).any()
    model.requires_grad_(False)
    model.fc.requires_grad_(True)
    model(x)
    model.zero_grad()
    assert model.backward(dy, need_dx=False) is None
    assert_close(model.fc.weight.grad, full["fc.weight"], name="head grad")


def test_parameter_requires_grad_survives_pickling():
    import pickle

    model = rc.models.create("resnet20", num_classes=2, seed=0, **ARCH)
    model.layer2.requires_grad_(False)
    back = pickle.loads(pickle.dumps(model))
    assert [p.requires_grad for p in back.parameters()] == \
        [p.requires_grad for p in model.parameters()]
    assert "requires_grad=False" in repr(back.layer2[0].conv1.weight)
