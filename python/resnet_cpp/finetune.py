"""Fine-tuning: start from pretrained weights, train a new head, freeze or slow the trunk.

``rc.train.fit(model, data, init_from=..., new_head=True, freeze_trunk=..., trunk_lr=...,
freeze_bn=...)`` and ``resnet-cpp train --init-from FILE --new-head ...`` use these:

- ``init_from``: weights in any format ``resnet_cpp.io`` reads (PyTorch, safetensors, a
  resnet_cpp checkpoint). With ``new_head`` the file's classifier is dropped and the
  model's own, freshly initialized ``fc`` (sized for the new classes) is trained.
- ``freeze_trunk``: every parameter but the head's gets ``requires_grad = False``; it is
  left out of the optimizer (no update, no weight decay: bit for bit unchanged) and the
  model skips the trunk's backward.
- ``trunk_lr``: the trunk trains in its own parameter group at this rate, the head at the
  run's ``lr``; a schedule scales both alike.
- ``freeze_bn``: BN layers use and keep their running statistics (``model.freeze_bn()``).
"""
from __future__ import annotations

from .io import Weights, load_into, read_weights

__all__ = ["prepare", "param_groups"]


def prepare(model, *, init_from=None, new_head: bool = False, freeze_trunk: bool = False,
            trunk_lr: float | None = None, freeze_bn: bool = False) -> Weights | None:
    """Load ``init_from`` into ``model`` and set its frozen parts; returns the Weights read.

    Raises ValueError for contradictory settings or weights that do not fit the model.
    """
    if new_head and init_from is None:
        raise ValueError("new_head needs init_from (the pretrained weights)")
    if freeze_trunk and trunk_lr is not None:
        raise ValueError("give freeze_trunk or trunk_lr, not both (a frozen trunk has no lr)")
    if trunk_lr is not None and trunk_lr < 0:
        raise ValueError(f"trunk_lr must be >= 0, got {trunk_lr}")
    if init_from is None and not (freeze_trunk or trunk_lr is not None or freeze_bn):
        return None  # plain training: the model is left as it is
    if not hasattr(model, "fc") or not hasattr(model, "freeze_bn"):
        raise TypeError(f"model: fine-tuning needs a zoo model (with fc and freeze_bn), got "
                        f"{type(model).__name__}")
    weights = None
    if init_from is not None:
        weights = init_from if isinstance(init_from, Weights) else read_weights(init_from)
        load_into(model, weights, new_head=new_head)
    model.requires_grad_(not freeze_trunk)
    model.fc.requires_grad_(True)
    model.freeze_bn(freeze_bn)
    return weights


def param_groups(model, trunk_lr: float | None = None) -> list:
    """The trainable parameters, as one list or, with ``trunk_lr``, as the groups
    ``[{"params": trunk, "lr": trunk_lr}, {"params": head}]``."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    if trunk_lr is None:
        return trainable
    head = {id(p) for p in model.fc.parameters()}
    return [{"params": [p for p in trainable if id(p) not in head], "lr": float(trunk_lr)},
            {"params": [p for p in trainable if id(p) in head]}]
