"""``allocation=latency``: a weight per prunable group from measured layer latency, so that the groups whose channels
cost the most time lose the most channels (after HALP and NetAdapt, kept simple).

A group's channels are the output channels of its producer convolutions and the input channels of its consumers.
Removing one of them saves, to first order, the time those convolutions spend on it:

    cost(g) = sum over producers p of ms(p's Conv block) / out_channels(p)
            + sum over consumers c of ms(c) / in_channels(c)

(``ms`` from the runtime's per-layer table; a producer's Conv block includes its activation, which scales with its
output width). Costs span two orders of magnitude in a YOLO detector (a stem channel at full resolution against a
deep 20 × 20 channel), so they are tempered into weights:

    weight(g) = clip((cost(g) / geometric mean of all costs) ** STRENGTH, 1 / MAX_WEIGHT, MAX_WEIGHT)

and a group pruned at ratio ``r`` keeps ``(1 - r) ** weight(g)`` of its channels (:func:`~.depgraph.weighted_ratio`):
weight 1 is the uniform allocation, 2 keeps the square of its share, 0.5 its square root. The rule is monotone in ``r`` for
every group, so a MACs target's bisection and a latency target's search still find the overall level, and per-step
ratios still compound to the run's total. With ``global_pruning`` each channel's normalised importance is divided by
its group's weight instead, so that channels are ranked by importance per unit of latency (HALP's criterion).

Every convolution of a group gets the group's weight; the groups of both halves of an unsplit block (``cv0``/``cv1``)
share the mean of their weights: the block must keep equal halves to convert back to its stock class.
"""

from __future__ import annotations

import math
from typing import Callable, Dict, List, Tuple

import torch.nn as nn

STRENGTH = 0.5  # the exponent that tempers relative latency per channel into a weight
MAX_WEIGHT = 2.0  # weights stay within [1 / MAX_WEIGHT, MAX_WEIGHT]


def group_costs(model: nn.Module, latency_of: Callable[[str], float], options) -> List[Tuple[Tuple[str, ...], float]]:
    """Milliseconds saved per removed channel of each prunable group.

    Args:
        model: A detector prepared for pruning (unsplit blocks), whose module names the latency table uses.
        latency_of: Milliseconds of a module and everything inside it (``LayerLatencyTable.ms_within``).
        options: The run's :class:`~.depgraph.PruneOptions` (``prune_head`` and ``ignore_layers`` decide the groups).

    Returns:
        ``(names of the group's prunable convolutions, cost)`` per group.
    """
    from ultralytics_prune_plugin.pruning.depgraph import build_group_pruner, trace_inputs
    from ultralytics_prune_plugin.pruning.policy import layer_index, prunable_convs

    names = {id(m): n for n, m in model.named_modules()}
    prunable = {id(conv) for _, conv in prunable_convs(model, options.prune_head)}
    ignored = set(options.ignore_layers)
    training = {m: m.training for m in model.modules()}
    try:
        pruner = build_group_pruner(model, trace_inputs(model), 0.0, pruning_ratio_dict={}, options=options)
        groups = list(pruner.DG.get_all_groups(ignored_layers=pruner.ignored_layers, root_module_types=[nn.Conv2d]))
    finally:  # the tracer switched everything to eval mode
        for module, flag in training.items():
            module.training = flag
    costs = []
    for group in groups:
        producers, consumers = _sides(group)
        members = tuple(names[id(m)] for m in producers if id(m) in prunable)
        if not members or any(layer_index(name) in ignored for name in members):
            continue
        cost = sum(latency_of(_block_name(names[id(p)])) / p.out_channels for p in producers)
        cost += sum(latency_of(names[id(c)]) / c.in_channels for c in consumers if c not in producers)
        costs.append((members, cost))
    return costs


def latency_weights(model: nn.Module, costs: List[Tuple[Tuple[str, ...], float]]) -> Dict[str, float]:
    """Tempered weights (see the module docstring) from :func:`group_costs`, by convolution name.

    Every convolution of a group gets the group's weight (Torch-Pruning reads one ratio per group). The two halves of
    an unsplit block must keep equal widths, so the groups holding them are joined and share the mean of their
    weights.

    Returns:
        Convolution name -> weight, for every convolution of a group with a positive cost.
    """
    positive = [(members, cost) for members, cost in costs if cost > 0.0]
    if not positive:
        return {}
    mean = math.exp(sum(math.log(cost) for _, cost in positive) / len(positive))
    weights = [min(max((cost / mean) ** STRENGTH, 1.0 / MAX_WEIGHT), MAX_WEIGHT) for _, cost in positive]
    group_of = {name: i for i, (members, _) in enumerate(positive) for name in members}
    joined = list(range(len(positive)))  # union-find over groups

    def root(i: int) -> int:
        while joined[i] != i:
            i = joined[i]
        return i

    for name, module in model.named_modules():
        if hasattr(module, "stock_class"):  # an unsplit block: both halves alike
            pair = [group_of.get(f"{name}.cv0.conv"), group_of.get(f"{name}.cv1.conv")]
            if None not in pair:
                joined[root(pair[0])] = root(pair[1])
    shared: Dict[int, List[float]] = {}
    for i, weight in enumerate(weights):
        shared.setdefault(root(i), []).append(weight)
    return {name: sum(shared[root(i)]) / len(shared[root(i)]) for name, i in group_of.items()}


def _sides(group) -> Tuple[List[nn.Conv2d], List[nn.Conv2d]]:
    """The convolutions whose output channels a DepGraph group removes, and those whose input channels it removes."""
    producers: List[nn.Conv2d] = []
    consumers: List[nn.Conv2d] = []
    for dep, _ in group:
        module, handler = dep.target.module, getattr(dep.handler, "__name__", "")
        if not isinstance(module, nn.Conv2d):
            continue
        side = producers if handler == "prune_out_channels" else consumers if handler == "prune_in_channels" else None
        if side is not None and module not in side:
            side.append(module)
    return producers, consumers


def _block_name(conv_name: str) -> str:
    """The Ultralytics ``Conv`` block around a convolution (``model.2.cv1`` for ``model.2.cv1.conv``): its time
    includes the activation, which scales with the output width; a bare convolution stands for itself."""
    return conv_name[: -len(".conv")] if conv_name.endswith(".conv") else conv_name
