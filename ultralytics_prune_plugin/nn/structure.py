"""How a pruned network is recognised and kept intact: a mark in its ``yaml`` dict, and state that must not leak."""

from __future__ import annotations

from typing import Any, Dict, Optional

import torch
from torch import nn

PRUNE_MARK = "prune_plugin"  # key in ``model.yaml``: the network no longer matches the architecture its yaml describes


def mark_restructured(model: nn.Module, **info: Any) -> None:
    """Record in ``model.yaml`` that ``model`` was restructured, so no trainer rebuilds it from its yaml.

    Args:
        model (nn.Module): An Ultralytics ``DetectionModel``.
        **info: What was done (method, rate, ...); merged into earlier records.
    """
    yaml = getattr(model, "yaml", None)
    if isinstance(yaml, dict):
        yaml[PRUNE_MARK] = {**yaml.get(PRUNE_MARK, {}), **info}


def restructure_info(model: nn.Module) -> Optional[Dict[str, Any]]:
    """Return what :func:`mark_restructured` recorded on ``model``, or None."""
    yaml = getattr(model, "yaml", None)
    return yaml.get(PRUNE_MARK) if isinstance(yaml, dict) else None


def is_restructured(model: nn.Module) -> bool:
    """Return True when ``model`` cannot be rebuilt from its yaml: it carries the prune mark.

    Pruned models hold only stock blocks (the pruners restore them), so the mark is the one sign of pruning. A
    ``C2f_v2`` block still counts, for models pickled by plugin versions that kept them and did not mark.
    """
    from ultralytics_prune_plugin.nn.c2f_v2 import C2f_v2

    return restructure_info(model) is not None or any(isinstance(m, C2f_v2) for m in model.modules())


def forget_cached_state(model: nn.Module) -> nn.Module:
    """Drop state cached from an earlier run, in place.

    The loss object (``criterion``) keeps its old device and hyperparameters. Plain tensors that a forward pass left
    on a module with their autograd history (Ultralytics 8.1's ``OBB`` head keeps its last ``angle``) are detached:
    a tensor with history cannot be deep-copied, which counting MACs and saving checkpoints do.
    """
    for module in model.modules():
        if "criterion" in module.__dict__:
            del module.__dict__["criterion"]
        for name, value in list(module.__dict__.items()):
            if isinstance(value, torch.Tensor) and value.grad_fn is not None:
                module.__dict__[name] = value.detach()
    return model
