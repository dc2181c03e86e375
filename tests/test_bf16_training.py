"""bf16 mixed precision at model level: a ResNet-20 training step in bf16 against fp32
(README, "Precision": the model-level tolerances), and the fit / CLI option."""
from __future__ import annotations

import numpy as np
import pytest

import resnet_cpp
from resnet_cpp import _core, models, nn
from resnet_cpp import train as T
from resnet_cpp.cli import main
from test_conv_bf16 import BF16_PATHS
from test_train import MODEL, make_model, tiny_data  # noqa: F401  (fixture)

needs_bf16 = pytest.mark.skipif(not BF16_PATHS, reason="this CPU has no AVX512-BF16")


def _step(seed: int, forward: str, backward: str):
    """Logits, loss and parameter gradients of one ResNet-20 training step (batch 8, 32x32,
    at initialization) with the forward and the backward convolutions in the given
    precisions."""
    model = models.create("resnet20", version=1, num_classes=10, seed=seed)
    model.train()
    g = np.random.default_rng(100 + seed)
    x = g.standard_normal((8, 3, 32, 32)).astype(np.float32)
    labels = g.integers(0, 10, 8)
    crit = nn.CrossEntropyLoss()
    old = _core.precision()
    try:
        _core.set_precision(forward)
        logits = model(x)
        loss = crit(logits, labels)
        model.zero_grad()
        _core.set_precision(backward)
        model.backward(crit.backward())
    finally:
        _core.set_precision(old)
    return logits, loss, {k: p.grad.copy() for k, p in model.named_parameters()}


@needs_bf16
@pytest.mark.parametrize("seed", range(4))
def test_resnet20_step_bf16_against_fp32(seed):
    """Measured over 8 seeds: logits within 6.6e-3 of max|logits|, loss within 7e-4,
    bf16 backward (on an fp32 forward) within 1.2e-2 of each gradient's max, and the full
    bf16 gradient at cosine >= 0.985 to fp32's. The full-step gradient can only be
    compared loosely: ResNet-20's gradient at initialization moves by about 6% in pure
    fp32 when its input moves by 2^-9 (the bf16 rounding step; PyTorch's bf16 autocast
    moves it by 20%), so bf16's forward rounding moves it by about 11%."""
    logits, loss, grads = _step(seed, "fp32", "fp32")
    logits_b, loss_b, grads_b = _step(seed, "bf16", "bf16")
    assert np.max(np.abs(logits_b - logits)) <= 1.5e-2 * np.max(np.abs(logits))
    assert abs(loss_b - loss) <= 2e-3 * loss
    flat = lambda g: np.concatenate([v.ravel() for v in g.values()]).astype(np.float64)  # noqa
    a, b = flat(grads), flat(grads_b)
    assert a @ b / (np.linalg.norm(a) * np.linalg.norm(b)) >= 0.96
    assert not np.array_equal(a, b)  # bf16 ran
    _, _, grads_bwd = _step(seed, "fp32", "bf16")
    for k, g in grads.items():
        assert np.max(np.abs(grads_bwd[k] - g)) <= 2.5e-2 * np.max(np.abs(g)), k


def test_fit_sets_precision_for_the_run_and_restores_it(tiny_data, tmp_path):  # noqa: F811
    seen = []
    trainer = T.Trainer(make_model(), *tiny_data, epochs=1, batch_size=16, progress=False,
                        verbose=False, out_dir=str(tmp_path), max_steps=2, precision="bf16",
                        on_step=lambda t: seen.append((resnet_cpp.precision(),
                                                       resnet_cpp.bf16_active())))
    before = resnet_cpp.precision()
    if BF16_PATHS:
        trainer.fit()
    else:
        with pytest.warns(RuntimeWarning, match=r"precision 'bf16' needs AVX512-BF16"):
            trainer.fit()
    assert seen == [("bf16", bool(BF16_PATHS))] * 2
    assert resnet_cpp.precision() == before
    assert trainer.checkpoint_config()["precision"] == "bf16"
    with pytest.raises(ValueError, match=r"^precision must be 'fp32' or 'bf16'"):
        T.Trainer(make_model(), *tiny_data, epochs=1, precision="fp16")


def test_cli_precision_is_a_run_setting(tmp_path, capsys):
    out = tmp_path / "run"
    smoke = ["--max-steps", "1", "--batch-size", "8", "--epochs", "1", "--no-progress"]
    if BF16_PATHS:
        assert main(["train", "--out", str(out), "--precision", "bf16", *smoke]) == 0
    else:
        with pytest.warns(RuntimeWarning, match=r"needs AVX512-BF16"):
            assert main(["train", "--out", str(out), "--precision", "bf16", *smoke]) == 0
    from resnet_cpp import checkpoint as ckpt

    assert ckpt.load(out / "last.npz").meta["config"]["cli"]["precision"] == "bf16"
    # A resumed run keeps its precision; asking for another one is an error.
    assert main(["train", "--resume", str(out), "--precision", "fp32", "--no-progress"]) == 2
    assert "which has precision='bf16'; drop --precision 'fp32'" in capsys.readouterr().err
