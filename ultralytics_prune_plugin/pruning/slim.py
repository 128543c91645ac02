"""Network Slimming pruning: remove the channels whose BatchNorm scale factor |γ| falls below one global threshold.

Liu et al. (ICCV 2017) sort the |γ| of all prunable BatchNorms, take the threshold at the ``rate`` quantile and
remove every channel below it. This module does that on an Ultralytics YOLOv8 detector, with the channel removal
itself done by Torch-Pruning's ``DependencyGraph`` so that every layer consuming a pruned channel (the next
convolution, the ``C2f_v2`` concatenation, the ``Detect`` head's input convolutions) shrinks with it.

Decisions:

* **Which BatchNorms**: exactly :func:`ultralytics_prune_plugin.pruning.policy.prunable_batchnorms`, the set that
  sparse training penalises. ``Detect`` heads are never pruned; their input convolutions lose the channels that the
  neck loses.
* **Coupled BatchNorms**: a Bottleneck shortcut ``x + cv2(cv1(x))`` ties the ``C2f_v2.cv1`` BatchNorm and every
  bottleneck ``cv2`` BatchNorm of that block to the same channel indices (yolov8n: blocks 2, 4, 6 and 8). DepGraph
  returns them as one group, and a channel is removed from all of them or from none. Its importance is the
  **maximum** |γ| over the coupled BatchNorms: a channel goes only when it is below the threshold in *every*
  BatchNorm of the group, since a channel that one branch still uses cannot be removed without cutting that branch.
  The mean (Torch-Pruning's ``BNScaleImportance`` reduction) can remove a channel that one branch uses strongly when
  the other branches' scales are small; the maximum never does. A removed coupled channel counts once per BatchNorm
  it is removed from, so it weighs as many prunable channels as there are BatchNorms in its group.
* **Global threshold and floors**: the BatchNorm channels are ranked by importance; the ``k = round(rate * N)``
  lowest (``N`` prunable BatchNorm channels, coupled channels weighted as above) are removed, skipping channels that
  a layer needs to keep ``min_channels`` (never fewer than 1, never more than the layer has). ``threshold`` is the
  importance of the last removed channel: every removed channel has |γ| ≤ threshold, every kept channel has
  |γ| ≥ threshold or is one of its layer's ``min_channels`` largest. When floors bind, the threshold rises above the
  plain ``rate`` quantile so that the rate is still met; when even that cannot meet the rate, ``k`` is clamped to the
  most that the floors allow and the threshold is the one of that clamped ``k``. So the threshold that is reported
  is the one that was used, and no layer ever ends below its floor (the public slimming forks clamped only the
  printed rate and left layers empty). Ties at the threshold are broken by rank, so exactly ``k`` channels go even
  when many |γ| are equal.
* **round_to**: the kept width of each group is rounded *up* to a multiple of ``round_to`` (capped at its width),
  by keeping the largest-|γ| channels among those below the threshold; the applied rate drops accordingly.
* **Equal halves**: the two halves of an unsplit block (``C2f_v2.cv0`` and ``cv1``, see
  :mod:`ultralytics_prune_plugin.nn.c2f_v2`) are separate groups, and one threshold generally keeps a different number
  of channels in each. A stock block splits one convolution with ``chunk(2)``, so it needs equal halves; with
  ``equal_halves=True`` (the default) each half therefore keeps ``max(kept_first, kept_second)`` channels: the
  narrower half takes back its highest-importance removed channels. That costs the MACs that zero-padding the narrower
  half would cost, but keeps real weights. Afterwards every ``C2f_v2`` is turned back into its stock block, so the
  pruned model holds only Ultralytics and torch classes. ``equal_halves=False`` keeps the unconstrained selection
  and leaves the ``C2f_v2`` blocks in place (a checkpoint of that model needs this plugin); it exists to measure the
  constraint's cost.
* ``applied_rate`` is measured on the pruned model: removed prunable BatchNorm channels over all of them, so it
  includes what ``round_to`` and the equal-halves constraint gave back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, FrozenSet, List, Optional, Tuple

import torch
import torch.nn as nn
import torch_pruning as tp
from ultralytics.utils import LOGGER

from ultralytics_prune_plugin.nn.c2f_v2 import C2f_v2, restore_stock_blocks
from ultralytics_prune_plugin.nn.structure import forget_cached_state, mark_restructured
from ultralytics_prune_plugin.pruning.counting import ImageSize, count_macs_params
from ultralytics_prune_plugin.pruning.depgraph import prepare_for_pruning, trace_inputs
from ultralytics_prune_plugin.pruning.policy import (
    ignored_module_ids,
    opaque_for_tracing,
    prunable_batchnorms,
    protected_widths,
)
from ultralytics_prune_plugin.pruning.sparsity import SPARSE_THRESHOLD, gamma_statistics
from ultralytics_prune_plugin.report.console import warn

MIN_SPARSE_FRACTION = 0.1  # fewer prunable |γ| than this below SPARSE_THRESHOLD: the model was not sparse-trained


@dataclass
class LayerRow:
    """One prunable BatchNorm layer of the slim pruning table.

    Attributes:
        name: Qualified name of the ``Conv`` block that owns the BatchNorm (e.g. ``model.2.cv1``).
        before: Channels before pruning.
        after: Channels after pruning.
    """

    name: str
    before: int
    after: int


@dataclass
class SlimResult:
    """What :func:`slim_prune` did.

    Attributes:
        requested_rate: The ``rate`` asked for.
        applied_rate: Fraction of prunable BatchNorm channels actually removed.
        threshold: The |γ| threshold used (importance of the last removed channel; 0.0 when none was removed).
        max_rate: The largest rate that ``min_channels`` (and ``round_to``) allow.
        clamped: True when ``requested_rate`` exceeded ``max_rate`` and was clamped to it.
        layers: One row per prunable BatchNorm: its layer name and channels before and after.
        macs_before: MACs of one forward pass at ``imgsz`` before pruning.
        macs_after: MACs after pruning.
        params_before: Parameters before pruning.
        params_after: Parameters after pruning.
        imgsz: Image size of the MACs counts.
    """

    requested_rate: float
    applied_rate: float
    threshold: float
    max_rate: float
    clamped: bool
    layers: List[LayerRow] = field(default_factory=list)
    macs_before: int = 0
    macs_after: int = 0
    params_before: int = 0
    params_after: int = 0
    imgsz: ImageSize = 640

    def table(self) -> str:
        """Return the per-layer channel table followed by a one-line summary, for logs."""
        width = max([len(row.name) for row in self.layers] + [5])
        lines = [f"{'layer':<{width}}  {'before':>6}  {'after':>6}"]
        lines += [f"{row.name:<{width}}  {row.before:>6}  {row.after:>6}" for row in self.layers]
        lines.append(self.summary())
        return "\n".join(lines)

    def summary(self) -> str:
        """Return one line: rates, threshold, MACs and parameters before and after."""
        clamp = f" (clamped from {self.requested_rate:g}: min_channels allows at most {self.max_rate:.3f})"
        return (
            f"slim pruning: removed {self.applied_rate:.1%} of prunable channels{clamp if self.clamped else ''}, "
            f"|γ| threshold {self.threshold:.4g}; MACs {self.macs_before / 1e9:.3f}G -> {self.macs_after / 1e9:.3f}G, "
            f"params {self.params_before:,} -> {self.params_after:,}"
        )


@dataclass
class _Group:
    """BatchNorms coupled to the same channels, with the importance of each root channel.

    Attributes:
        root: The BatchNorm the group is rooted at (its channel indices are the group's indices).
        members: Number of prunable BatchNorms in the group.
        scores: Importance per root channel: max |γ| over the coupled prunable BatchNorms.
        min_keep: Channels the group must keep.
        member_ids: ``id`` of each prunable BatchNorm in the group (to find the halves of an unsplit block).
    """

    root: nn.BatchNorm2d
    members: int
    scores: torch.Tensor
    min_keep: int
    member_ids: FrozenSet[int] = frozenset()

    @property
    def width(self) -> int:
        """Current number of channels."""
        return int(self.scores.numel())


# Sparsity report ------------------------------------------------------------------------------------------------------
def gamma_sparsity_report(
    model: nn.Module, rate: Optional[float] = None, train_args: Optional[Dict[str, Any]] = None
) -> Dict[str, object]:
    """Say whether the prunable |γ| of ``model`` look sparse-trained, for a warning before slim pruning.

    Args:
        model: An Ultralytics detection model.
        rate: The slim pruning rate about to be used, if known; the warning then also compares it with the fraction
            of near-zero scales.
        train_args: The model checkpoint's training arguments, if known (``sparse``, ``sr``, ``epochs``,
            ``optimizer``): the warning then says whether sparse training ran and what to change.

    Returns:
        ``fraction_below`` (fraction of prunable |γ| < 1e-2), ``median``, ``p10``, ``count``, ``sparse`` (bool) and
        ``warning`` (a message, or None when the scales look ready for pruning at ``rate``).
    """
    stats = gamma_statistics(model)
    fraction = stats["fraction_below"]
    sparse = fraction >= MIN_SPARSE_FRACTION
    warning = None
    dense = (
        f"only {fraction:.1%} of {stats['count']} prunable |γ| are < {SPARSE_THRESHOLD:g} (median |γ| "
        f"{stats['p50']:.3g}), so slim pruning will cost more accuracy"
    )
    if not sparse and train_args and train_args.get("sparse"):
        how = ", ".join(f"{k}={train_args[k]}" for k in ("sr", "sr_final", "epochs", "optimizer") if k in train_args)
        sgd = str(train_args.get("optimizer", "")).upper() == "SGD"  # advise SGD only to a run that did not use it
        warning = (
            f"the model was sparse-trained ({how}) but γ is still dense: {dense}; for sparser γ raise 'sr' (e.g. "
            + ("10×) or train more epochs" if sgd else
               "10×), train more epochs, or use 'optimizer=SGD' (an adaptive optimizer rescales the L1 term)")
        )
    elif not sparse:
        if "sparse" in (train_args or {}):
            warning = f"the model was not sparse-trained (its training arguments say sparse=False) and γ is dense: {dense}"
        else:
            warning = f"γ not sparse (model not sparse-trained?): {dense}"
        warning += "; train with 'sparse=True' first (yolo sparse ...)"
    elif rate is not None and fraction < rate:
        warning = (
            f"only {fraction:.1%} of prunable |γ| are < {SPARSE_THRESHOLD:g} but rate={rate:g} removes {rate:.0%} of "
            "the channels, so channels with larger |γ| will be cut and slim pruning will cost more accuracy"
        )
    return {
        "fraction_below": fraction,
        "median": stats["p50"],
        "p10": stats["p10"],
        "count": stats["count"],
        "sparse": sparse,
        "warning": warning,
    }


# Dependency groups ----------------------------------------------------------------------------------------------------
def build_dependency_graph(model: nn.Module) -> tp.DependencyGraph:
    """Trace ``model`` into a Torch-Pruning dependency graph, leaving every module's training flag as it was."""
    flags = {module: module.training for module in model.modules()}
    try:
        with torch.enable_grad(), opaque_for_tracing(model):
            return tp.DependencyGraph().build_dependency(
                model,
                trace_inputs(model),
                forward_fn=lambda m, x: m(x),
                verbose=False,
            )
    finally:
        for module, training in flags.items():
            module.training = training


def _full_group(graph: tp.DependencyGraph, bn: nn.BatchNorm2d):
    """Return the DepGraph group of all channels of ``bn`` (output-channel pruning rooted at ``bn``)."""
    return graph.get_pruning_group(bn, tp.prune_batchnorm_out_channels, list(range(bn.num_features)))


def _group_is_safe(graph: tp.DependencyGraph, group, protected: set) -> bool:
    """Return False when the group would remove output channels of a module inside a ``Detect`` head."""
    for dep, _ in group:
        module = dep.target.module
        if id(module) in protected and graph.is_out_channel_pruning_fn(dep.handler):
            return False
    return True


def _group_scores(group, prunable: set, width: int) -> Tuple[torch.Tensor, List[nn.BatchNorm2d]]:
    """Return the max |γ| per root channel over the group's prunable BatchNorms, and those BatchNorms."""
    scores = torch.zeros(width, dtype=torch.float64)
    members = []
    for item in group:
        module = item.dep.target.module
        if not isinstance(module, nn.BatchNorm2d) or id(module) not in prunable or module in members:
            continue
        gamma = module.weight.detach().abs().double().cpu()[list(item.idxs)]
        root = torch.as_tensor(list(item.root_idxs), dtype=torch.long)
        scores[root] = torch.maximum(scores[root], gamma)
        members.append(module)
    return scores, members


def _min_keep(width: int, min_channels: int, round_to: Optional[int]) -> int:
    """Channels a layer of ``width`` must keep: ``min_channels`` (at least 1), rounded up to ``round_to``, capped."""
    keep = max(1, min(min_channels, width))
    if round_to:
        keep = math.ceil(keep / round_to) * round_to
    return min(keep, width)


def coupled_groups(
    model: nn.Module, graph: tp.DependencyGraph, min_channels: int, round_to: Optional[int] = None
) -> List[_Group]:
    """Split the prunable BatchNorms of ``model`` into DepGraph groups of coupled channels, with their importances.

    Groups that would change a ``Detect`` head's outputs are left out (with a warning); none exist in YOLOv8.

    Args:
        model: A detector prepared with :func:`prepare_for_pruning`.
        graph: Its dependency graph.
        min_channels: Per-layer minimum width.
        round_to: Optional multiple for kept widths.

    Returns:
        One :class:`_Group` per set of coupled prunable BatchNorms, in model order.
    """
    bns = prunable_batchnorms(model)
    prunable = {id(bn) for _, bn in bns}
    protected = ignored_module_ids(model)
    covered, groups = set(), []
    for name, bn in bns:
        if id(bn) in covered or bn not in graph.module2node:
            continue
        group = _full_group(graph, bn)
        scores, members = _group_scores(group, prunable, bn.num_features)
        covered.update(id(m) for m in members)
        if not _group_is_safe(graph, group, protected):
            warn(f"slim pruning: '{name}' is coupled to a Detect head output; left unpruned")
            continue
        keep = _min_keep(bn.num_features, min_channels, round_to)
        groups.append(_Group(bn, len(members), scores, keep, frozenset(id(m) for m in members)))
    return groups


# Selection ------------------------------------------------------------------------------------------------------------
def select_channels(groups: List[_Group], rate: float) -> Tuple[List[torch.Tensor], float, float, bool]:
    """Choose the channels to remove: the lowest-importance ones over all groups, within each group's floor.

    Args:
        groups: The coupled groups.
        rate: Requested fraction of prunable BatchNorm channels to remove.

    Returns:
        ``(removed, threshold, max_rate, clamped)``: per group the sorted root indices to remove; the importance of
        the last removed channel (0.0 if none); the largest rate the floors allow; whether ``rate`` exceeded it.
    """
    total = sum(g.width * g.members for g in groups)
    capacity = sum((g.width - g.min_keep) * g.members for g in groups)
    max_rate = capacity / total if total else 0.0
    target = min(round(rate * total), capacity)
    scores = torch.cat([g.scores for g in groups]) if groups else torch.zeros(0, dtype=torch.float64)
    owner = torch.cat([torch.full((g.width,), i, dtype=torch.long) for i, g in enumerate(groups)]) if groups else None
    local = torch.cat([torch.arange(g.width) for g in groups]) if groups else None
    removed = [[] for _ in groups]
    removed_total, threshold = 0, 0.0
    for entry in torch.argsort(scores, stable=True).tolist():
        if removed_total >= target:
            break
        i = int(owner[entry])
        group = groups[i]
        if group.width - len(removed[i]) <= group.min_keep:
            continue
        removed[i].append(int(local[entry]))
        removed_total += group.members
        threshold = float(scores[entry])
    return [torch.tensor(sorted(r), dtype=torch.long) for r in removed], threshold, max_rate, rate > max_rate


def round_kept(group: _Group, removed: torch.Tensor, round_to: Optional[int]) -> torch.Tensor:
    """Give back the largest-|γ| removed channels until the kept width is a multiple of ``round_to`` (or all)."""
    if not round_to or removed.numel() == 0:
        return removed
    kept = group.width - removed.numel()
    give_back = min(group.width, math.ceil(kept / round_to) * round_to) - kept
    if give_back <= 0:
        return removed
    order = torch.argsort(group.scores[removed], descending=True, stable=True)
    return torch.sort(removed[order[give_back:]]).values


def equalize_halves(model: nn.Module, groups: List[_Group], removed: List[torch.Tensor]) -> List[torch.Tensor]:
    """Make both halves of every unsplit block keep the same number of channels, the larger of the two.

    For each ``C2f_v2`` the groups holding ``cv0``'s and ``cv1``'s BatchNorms are found; the half that keeps fewer
    channels gets back its highest-importance removed channels until it keeps as many as the other. A half whose
    BatchNorm is in no group keeps all its channels. Since a group can in principle hold a half of two blocks, this
    repeats until nothing changes (widths only grow, so it ends).

    Args:
        model: The prepared detector (its blocks unsplit).
        groups: The coupled groups of :func:`coupled_groups`.
        removed: Per group, the root indices about to be removed.

    Returns:
        The new per-group removed indices (sorted); the input list is not modified.
    """
    removed = list(removed)
    where = {member: i for i, group in enumerate(groups) for member in group.member_ids}

    def kept(bn: Optional[nn.BatchNorm2d]) -> int:
        i = where.get(id(bn))
        return bn.num_features if i is None else groups[i].width - removed[i].numel()

    halves = [
        (block.cv0.bn, block.cv1.bn)
        for block in model.modules()
        if isinstance(block, C2f_v2) and getattr(block.cv0, "bn", None) is not None and hasattr(block.cv1, "bn")
    ]
    changed = True
    while changed:
        changed = False
        for pair in halves:
            target = max(kept(bn) for bn in pair)
            for bn in pair:
                i = where.get(id(bn))
                if i is None or kept(bn) >= target:
                    continue
                give_back = target - kept(bn)
                order = torch.argsort(groups[i].scores[removed[i]], descending=True, stable=True)
                removed[i] = torch.sort(removed[i][order[give_back:]]).values
                changed = True
    return removed


# Pruning --------------------------------------------------------------------------------------------------------------
def _prune_group(graph: tp.DependencyGraph, group: _Group, idxs: torch.Tensor) -> None:
    """Remove root channels ``idxs`` of ``group`` and every coupled channel, through DepGraph."""
    if idxs.numel() == 0:
        return
    pruning_group = graph.get_pruning_group(group.root, tp.prune_batchnorm_out_channels, idxs.tolist())
    if not graph.check_pruning_group(pruning_group):
        raise RuntimeError(f"slim pruning would empty a layer coupled to {group.root}; this is a bug")
    pruning_group.prune()


def _bn_widths(model: nn.Module) -> Dict[str, int]:
    """Return the width of every prunable BatchNorm, by the name of its ``Conv`` block."""
    return {_layer_name(name): bn.num_features for name, bn in prunable_batchnorms(model)}


def _layer_name(bn_name: str) -> str:
    """``model.2.cv1.bn`` -> ``model.2.cv1``: name the Conv block that owns the BatchNorm."""
    return bn_name[: -len(".bn")] if bn_name.endswith(".bn") else bn_name


def _head_widths(model: nn.Module) -> Dict[str, int]:
    """Return the output width of every protected layer (head outputs, the classifier, attention projections)."""
    return protected_widths(model)


def slim_prune(
    model: nn.Module,
    rate: float,
    min_channels: int = 8,
    imgsz: ImageSize = 640,
    round_to: Optional[int] = None,
    verbose: bool = True,
    train_args: Optional[Dict[str, Any]] = None,
    equal_halves: bool = True,
) -> SlimResult:
    """Prune ``model`` in place by Network Slimming: one global |γ| threshold over the prunable BatchNorms.

    See the module docstring for how coupled BatchNorms, the threshold, ``min_channels``, ``round_to`` and the
    equal halves work. The model is first prepared with
    :func:`~ultralytics_prune_plugin.pruning.depgraph.prepare_for_pruning` (float32, chunk-split blocks → ``C2f_v2``,
    gradients on, cached criterion dropped); its training/eval mode is kept. At the end the blocks are turned back
    into stock blocks and the model is marked as restructured.

    Args:
        model: An Ultralytics ``DetectionModel`` (for a ``YOLO`` object pass ``yolo.model``), ideally sparse-trained.
        rate: Fraction of prunable BatchNorm channels to remove, ``0 <= rate < 1``.
        min_channels: No pruned layer keeps fewer channels than this (a narrower layer keeps all its channels).
        imgsz: Image size at which MACs are counted.
        round_to: Optional multiple that kept widths are rounded up to.
        verbose: Log the sparsity warning, the per-layer table and the summary.
        train_args: The model checkpoint's training arguments, if known, for the sparsity warning's wording.
        equal_halves: Keep both halves of each unsplit block equally wide and restore the stock blocks. False leaves
            ``C2f_v2`` blocks with unequal halves in the model (only to measure what the constraint costs).

    Returns:
        A :class:`SlimResult`; its layer names are those of the unsplit model (``model.2.cv0``, ``model.2.cv1``).

    Raises:
        ValueError: If ``rate`` or ``min_channels`` is out of range.
        RuntimeError: If a ``Detect`` head's output widths changed (never expected).
    """
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"rate must be in [0, 1), got {rate}")
    if min_channels < 1:
        raise ValueError(f"min_channels must be >= 1, got {min_channels}")
    prepare_for_pruning(model)
    report = gamma_sparsity_report(model, rate, train_args)
    if verbose and report["warning"]:
        warn(f"slim pruning: {report['warning']}")
    macs_before, params_before = count_macs_params(model, imgsz)
    widths_before, heads_before = _bn_widths(model), _head_widths(model)

    graph = build_dependency_graph(model)
    groups = coupled_groups(model, graph, min_channels, round_to)
    removed, threshold, max_rate, clamped = select_channels(groups, rate)
    removed = [round_kept(group, idxs, round_to) for group, idxs in zip(groups, removed)]
    if equal_halves:
        removed = equalize_halves(model, groups, removed)
    for group, idxs in zip(groups, removed):
        _prune_group(graph, group, idxs)
    forget_cached_state(model)

    if _head_widths(model) != heads_before:
        raise RuntimeError("slim pruning changed the output channels of a Detect head; this is a bug")
    widths_after = _bn_widths(model)
    macs_after, params_after = count_macs_params(model, imgsz)
    total = sum(widths_before.values())
    result = SlimResult(
        requested_rate=rate,
        applied_rate=(total - sum(widths_after.values())) / total if total else 0.0,
        threshold=threshold,
        max_rate=max_rate,
        clamped=clamped,
        layers=[LayerRow(name, widths_before[name], widths_after[name]) for name in widths_before],
        macs_before=macs_before,
        macs_after=macs_after,
        params_before=params_before,
        params_after=params_after,
        imgsz=imgsz,
    )
    if equal_halves:
        restore_stock_blocks(model)
    mark_restructured(model, method="slim")
    if verbose:
        LOGGER.info(result.table())
    return result
