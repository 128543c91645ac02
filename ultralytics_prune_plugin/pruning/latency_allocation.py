"""``allocation=latency``: a weight per prunable group from measured layer latency, so that the groups whose channels
cost the most time lose the most channels (after HALP and NetAdapt, kept simple).

A group's channels are the output channels of its producer convolutions and the input channels of its consumers.
Its cost is the time one of its channels measurably costs, read from two per-layer latency tables of the runtime:
the input's, and that of a reference copy pruned uniformly at :data:`REFERENCE_RATE` (NetAdapt's and HALP's lookup of
a layer's latency at more than one width, reduced to two points):

    cost(g) = (ms its producers save on their output side + ms its consumers save on their input side)
              / channels g lost in the reference

(:func:`conv_savings` splits each convolution's saving between its two sides). A first-order cost, a layer's time ÷
its width at full width, was measured first (commit a239146, ``benchmarks/results_speedup.md``) and was no better
per MAC than uniform pruning at ``target_speedup=2`` (MACs cut for about 2×: yolov8n 2.31× against 2.17×, yolo11n
2.48× against 2.63×, yolo26n 2.32× against 2.29×): it prices the narrow full-resolution layers by their full-width
time, but they run less efficiently per MAC once narrower. Costs span two orders of magnitude in a YOLO detector, so
they are tempered into weights:

    weight(g) = clip((cost(g) / geometric mean of all costs) ** STRENGTH, 1 / MAX_WEIGHT, MAX_WEIGHT)

and a group pruned at ratio ``r`` keeps ``(1 - r) ** weight(g)`` of its channels (:func:`~.depgraph.weighted_ratio`):
weight 1 is the uniform allocation, 2 keeps the square of its share, 0.5 its square root. The rule is monotone in
``r`` for every group, so a MACs target's bisection and a latency target's search still find the overall level, and
per-step ratios still compound to the run's total. With ``global_pruning`` each channel's normalised importance is
divided by its group's weight instead, so that channels are ranked by importance per unit of latency (HALP's
criterion).

Every convolution of a group gets the group's weight; the groups of both halves of an unsplit block (``cv0``/``cv1``)
share the mean of their weights: the block must keep equal halves to convert back to its stock class.
"""

from __future__ import annotations

import math
from copy import deepcopy
from typing import Callable, Dict, List, Optional, Tuple

import torch.nn as nn

STRENGTH = 0.5  # the exponent that tempers relative latency per channel into a weight
MAX_WEIGHT = 2.0  # weights stay within [1 / MAX_WEIGHT, MAX_WEIGHT]
REFERENCE_RATE = 0.5  # the uniform rate of the reference model whose table gives the second width of every layer
FLOOR_MS = 1e-6  # a group whose measured saving is not positive counts as (almost) free: it gets the smallest weight

LatencyOf = Callable[[str], float]  # module name -> ms of it and everything inside it (LayerLatencyTable.ms_within)


def reference_model(model: nn.Module, imgsz: int, round_to: Optional[int], options) -> nn.Module:
    """A copy of ``model`` pruned uniformly at :data:`REFERENCE_RATE` (same groups, ``round_to``), unsplit again so
    that its module names are ``model``'s: its latency table is the second point of every layer's cost."""
    from dataclasses import replace

    from ultralytics_prune_plugin.pruning.depgraph import prepare_for_pruning, prune_once

    uniform = replace(options, global_pruning=False, latency_weights={}, layer_ratios={}, gradients=None)
    reference = deepcopy(model)
    prune_once(reference, imgsz, REFERENCE_RATE, round_to=round_to, options=uniform)
    return prepare_for_pruning(reference)


def conv_savings(model: nn.Module, reference: nn.Module, latency_of: LatencyOf,
                 reference_latency_of: LatencyOf) -> Dict[str, Tuple[float, float]]:
    """Milliseconds each convolution saves between ``model`` and ``reference``: ``(output side, input side)``.

    A convolution's saving is split between the groups on its two sides in proportion to how much each side shrank
    (log of the width ratios: a 1x1 convolution halved on both sides owes half its saving to each); a depthwise
    convolution, whose input and output channels are one group, owes all of it to its output side. The activation of
    an Ultralytics ``Conv`` block scales with the output width: its saving goes to the output side.
    """
    widths = dict(reference.named_modules())
    savings = {}
    for name, conv in model.named_modules():
        other = widths.get(name)
        if not isinstance(conv, nn.Conv2d) or not isinstance(other, nn.Conv2d):
            continue
        saved = latency_of(name) - reference_latency_of(name)
        out_side = math.log(conv.out_channels / other.out_channels)
        in_side = 0.0 if conv.groups > 1 else math.log(conv.in_channels / other.in_channels)
        share = out_side / (out_side + in_side) if out_side + in_side > 0 else 0.5
        block = _block_name(name)
        activation = 0.0
        if block != name:
            before = latency_of(block) - latency_of(name)
            activation = before - (reference_latency_of(block) - reference_latency_of(name))
        savings[name] = (saved * share + activation, saved * (1.0 - share))
    return savings


def group_costs(model: nn.Module, reference: nn.Module, latency_of: LatencyOf, reference_latency_of: LatencyOf,
                options) -> List[Tuple[Tuple[str, ...], float]]:
    """Milliseconds saved per removed channel of each prunable group, measured between two widths.

    A group's saving is what its producers save on their output side and its consumers on their input side
    (:func:`conv_savings`) between ``model`` and the uniformly pruned ``reference``, divided by the channels the
    group lost there. Measuring two widths, not one, sees what a first-order estimate (time ÷ width) cannot: a
    narrow convolution at full resolution runs less efficiently per MAC, so halving it saves less than half its time.

    Args:
        model: A detector prepared for pruning (unsplit blocks), whose module names the latency tables use.
        reference: :func:`reference_model` of ``model``.
        latency_of: ``model``'s table (``LayerLatencyTable.ms_within``).
        reference_latency_of: ``reference``'s table.
        options: The run's :class:`~.depgraph.PruneOptions` (``prune_head`` and ``ignore_layers`` decide the groups).

    Returns:
        ``(names of the group's prunable convolutions, cost)`` per group that lost channels in ``reference``.
    """
    from ultralytics_prune_plugin.pruning.depgraph import build_group_pruner, trace_inputs
    from ultralytics_prune_plugin.pruning.policy import layer_index, prunable_convs

    names = {id(m): n for n, m in model.named_modules()}
    widths = dict(reference.named_modules())
    prunable = {id(conv) for _, conv in prunable_convs(model, options.prune_head)}
    ignored = set(options.ignore_layers)
    savings = conv_savings(model, reference, latency_of, reference_latency_of)
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
        removed = producers[0].out_channels - widths[names[id(producers[0])]].out_channels
        if removed <= 0:
            continue
        saved = sum(savings[names[id(p)]][0] for p in producers)
        saved += sum(savings[names[id(c)]][1] for c in consumers if c not in producers)
        costs.append((members, saved / removed))
    return costs


def latency_weights(model: nn.Module, costs: List[Tuple[Tuple[str, ...], float]]) -> Dict[str, float]:
    """Tempered weights (see the module docstring) from :func:`group_costs`, by convolution name.

    Every convolution of a group gets the group's weight (Torch-Pruning reads one ratio per group). The two halves of
    an unsplit block must keep equal widths, so the groups holding them are joined and share the mean of their
    weights.

    Returns:
        Convolution name -> weight, for every convolution of a group in ``costs``.
    """
    positive = [(members, max(cost, FLOOR_MS)) for members, cost in costs]
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
