"""Group sparse learning before DepGraph pruning: ``yolo sparse method=group`` (``yolo train sparse=True method=group``).

Fang et al., "DepGraph: Towards Any Structural Pruning" (CVPR 2023), train with a group-level penalty before pruning:
every channel of a coupled group (the convolution that produces it, its BatchNorm, the convolutions that read it)
is pushed towards zero together, the less important channels harder. Torch-Pruning's ``GroupNormPruner`` holds the
groups and its ``regularize()`` adds that penalty's gradient; this module runs it inside training.

* **Which groups**: those rooted at the convolutions that DepGraph pruning may remove
  (:func:`~ultralytics_prune_plugin.pruning.policy.prunable_convs`), traced with the architecture policy's ignored
  layers: the same set the pruner later ranks.
* **Split blocks**: Torch-Pruning cannot rank the channels of ``C2f``'s ``chunk``, so the trainer trains the unsplit
  form (``C2f_v2``, numerically the same) and saves stock blocks (see ``PruneAwareTrainerMixin``).
* **When**: like the Network Slimming penalty, an optimizer step pre-hook: once per optimizer step, after AMP
  unscaling and gradient clipping, with the rate ``sr`` of the epoch (``sr_final`` schedules it).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch_pruning as tp
from torch import nn
from torch.utils.hooks import RemovableHandle

from ultralytics_prune_plugin.pruning.policy import ignored_layers, opaque_for_tracing, prunable_convs

# Torch-Pruning's default: the least important channel of a group is penalised alpha times harder than the most.
GROUP_ALPHA = 4.0


def build_group_regularizer(model: nn.Module, reg: float) -> tp.pruner.GroupNormPruner:
    """Trace ``model`` (unsplit blocks) and return a ``GroupNormPruner`` over its prunable groups only.

    The model's training flags are restored after tracing (the tracer switches everything to eval mode).
    """
    from ultralytics_prune_plugin.pruning.depgraph import trace_inputs

    flags = {m: m.training for m in model.modules()}
    device = next(model.parameters()).device
    try:
        with torch.enable_grad(), opaque_for_tracing(model):
            pruner = tp.pruner.GroupNormPruner(
                model,
                trace_inputs(model).to(device),
                importance=tp.importance.GroupMagnitudeImportance(p=2),
                reg=reg,
                alpha=GROUP_ALPHA,
                pruning_ratio=0.0,
                ignored_layers=ignored_layers(model),
                forward_fn=lambda m, x: m(x),
                in_channel_groups={},
                out_channel_groups={},
            )
    finally:
        for m, training in flags.items():
            m.training = training
    prunable = {id(conv) for _, conv in prunable_convs(model)}
    pruner._groups = [g for g in pruner._groups if id(g[0].dep.target.module) in prunable]
    return pruner


def register_group_penalty(
    optimizer: torch.optim.Optimizer, model: nn.Module, pruner: tp.pruner.GroupNormPruner, sr_fn: Callable[[], float]
) -> RemovableHandle:
    """Add the group penalty (rate ``sr_fn()``) to the gradients inside every ``optimizer.step()`` call."""

    def group_pre_step_hook(opt, args, kwargs):
        sr = sr_fn()
        if sr:
            pruner.reg = sr
            pruner.regularize(model, alpha=GROUP_ALPHA)

    return optimizer.register_step_pre_hook(group_pre_step_hook)


def group_count(pruner: tp.pruner.GroupNormPruner) -> int:
    """The number of groups the penalty covers."""
    return len(pruner._groups)
