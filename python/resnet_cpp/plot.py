"""Loss and accuracy curves of a run: ``DIR/metrics.jsonl`` -> ``DIR/curves.png``.

matplotlib is optional (``pip install "resnet_cpp[plot]"``); without it ``plot_run``
raises ImportError saying so.
"""
from __future__ import annotations

import json
import os

__all__ = ["read_metrics", "plot_run"]


def read_metrics(path: str) -> list[dict]:
    """The records of a metrics.jsonl file (one JSON object per line)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} does not exist (is this a run directory?)")
    records = []
    with open(path) as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{i}: not a JSON line ({e})") from None
    return records


def plot_run(run_dir: str, output: str | None = None) -> str:
    """Write train/test loss and accuracy per epoch to ``output`` (default DIR/curves.png)."""
    records = read_metrics(os.path.join(run_dir, "metrics.jsonl"))
    if not records:
        raise ValueError(f"{run_dir}/metrics.jsonl has no records yet")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        raise ImportError('plotting needs matplotlib: pip install "resnet_cpp[plot]"') from None

    epochs = [r["epoch"] for r in records]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for key, label, ax, scale in (("train_loss", "train", ax_loss, 1),
                                  ("test_loss", "test", ax_loss, 1),
                                  ("train_acc", "train", ax_acc, 100),
                                  ("test_acc", "test", ax_acc, 100)):
        pts = [(e, r[key] * scale) for e, r in zip(epochs, records) if key in r]
        if pts:
            ax.plot(*zip(*pts), marker="o", label=label)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(os.path.basename(os.path.abspath(run_dir)))
    fig.tight_layout()
    output = output or os.path.join(run_dir, "curves.png")
    fig.savefig(output, dpi=100)
    plt.close(fig)
    return output
