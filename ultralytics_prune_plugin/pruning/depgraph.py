"""One step of DepGraph group pruning (Torch-Pruning 1.6) on an Ultralytics YOLOv8 detector.

Flow per outer step (see ``shared/notes/recipes.md`` section 1): :func:`prepare_for_pruning`, then
:func:`prune_once` with the per-step ratio from :func:`step_ratio`, then fine-tune and repeat. Every call builds a
new pruner, because the fine-tune reloads the model and an old pruner would point at dead modules.

Decisions, checked against the installed Torch-Pruning 1.6 and Ultralytics 8.1.47:

* Pruner: ``tp.pruner.BasePruner`` (``MetaPruner`` is now an alias of it) with
  ``tp.importance.GroupMagnitudeImportance(p=2)``: plain group L2 magnitude pruning. ``GroupNormPruner`` only adds a
  sparsity regulariser for training; its ``step()`` is the same.
* Mode: the pruner's tracer calls ``model.eval()`` itself (so the dummy forward never updates BatchNorm running
  statistics) and never switches back. :func:`prune_once` restores every module's training flag afterwards, so
  :func:`prepare_for_pruning` does not touch the mode at all.
* Tracing: in eval mode ``DetectionModel`` returns ``(y, [p3, p4, p5])``; Torch-Pruning flattens nested outputs, so
  no ``output_transform`` is needed and ``Detect.export`` stays as it is. An explicit ``forward_fn`` is passed:
  without one the tracer first tries ``model(*example_inputs)``, which unpacks a batch-1 tensor into a 3-D image,
  fails inside the first BatchNorm, and leaves the first convolution recorded twice (marked "reused").
* Width plan: Torch-Pruning keeps ``int(width * (1 - ratio))`` channels (floor), and its ``round_to`` rounds the
  kept width *down* to a multiple. With a fresh pruner each step these floors compound: 16 steps at
  ``step_ratio(0.5, 16)`` leave yolov8n's 16-channel layers with 1 channel, and ``round_to=8`` collapses every layer
  to 8 channels. :func:`prune_once` therefore tracks each prunable convolution's ideal (unrounded) width on the model
  (attribute ``pruning_ideal_widths``, pickled with it), shrinks it by ``1 - ratio`` each step, rounds it to the
  nearest multiple of ``round_to`` (at least one multiple, never above the current width) and hands the pruner one
  exact ratio per convolution. After ``k`` steps every prunable group keeps ``round(width * (1 - rate))`` channels.
* Stock blocks in, stock blocks out: :func:`prepare_for_pruning` unsplits every chunk-split block (``C2f``,
  ``C3k2``, ...) into a ``C2f_v2``; at the end :func:`prune_once` merges them back
  (:func:`~ultralytics_prune_plugin.nn.c2f_v2.restore_stock_blocks`), so a pruned model holds only Ultralytics and
  torch classes and its checkpoint loads without this plugin. The uniform per-group ratio keeps both halves of a
  block at the same width, which the merge requires. The ideal widths are keyed by the *unsplit* names
  (``model.2.cv0.conv``, ``model.2.cv1.conv`` = first and second half): the unsplit form is rebuilt identically at
  every step, so these names stay valid across the round trip (in the stock form ``model.2.cv1.conv`` is the
  merged convolution; read the dict on an unsplit model).
* Detect caches: ``Detect`` rebuilds ``anchors``/``strides`` whenever the feature-map shape it last saw changes;
  pruning never changes the head's output width or the spatial sizes, so the caches stay valid. ``model.criterion``
  (the cached ``v8DetectionLoss``) is deleted so that the loss path rebuilds it lazily on the right device.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, Optional, Tuple

import torch
import torch.nn as nn
import torch_pruning as tp

from ultralytics_prune_plugin.nn.c2f_v2 import restore_stock_blocks, unsplit_blocks
from ultralytics_prune_plugin.nn.structure import forget_cached_state, mark_restructured
from ultralytics_prune_plugin.pruning.counting import ImageSize, count_macs_params, dummy_input
from ultralytics_prune_plugin.pruning.policy import (
    heads,
    ignored_layers,
    layer_index,
    opaque_for_tracing,
    prunable_convs,
    protected_widths,
)

IDEAL_WIDTHS_ATTRIBUTE = "pruning_ideal_widths"


@dataclass(frozen=True)
class PruneOptions:
    """How one DepGraph step ranks and allocates the channels it removes (the ``yolo prune`` keys of the same names).

    Attributes:
        importance: ``'l2'``, ``'l1'``, ``'lamp'``, ``'taylor'``, ``'bn'`` or ``'random'`` (:func:`make_importance`).
        global_pruning: Rank the channels of all groups together (Torch-Pruning's global pruning) instead of removing
            the same fraction from every group.
        max_step_ratio: With ``global_pruning``, the largest fraction one group may lose in this step (for the
            convolutions ``min_widths`` does not name).
        min_widths: With ``global_pruning``, the fewest channels each convolution (by unsplit name) may keep after this
            step: the run's per-layer cap (``max_layer_rate``) measured from the input's widths. Uniform pruning has
            no cap.
        isomorphic: With ``global_pruning``, rank channels only against groups of the same structure.
        layer_ratios: Per top-level layer index, this step's ratio for that layer's convolutions (uniform mode).
        latency_weights: ``allocation=latency``: a weight per convolution (unsplit name) from measured layer latency
            (:mod:`.latency_allocation`). Uniform mode prunes a convolution of weight ``w`` at ``1 - (1 - ratio) ** w``
            (``layer_ratios`` take precedence); global mode divides its channels' importance by ``w``.
        ignore_layers: Top-level layer indices whose output channels are never pruned.
        prune_head: Prune the head's inner convolutions too (its output convolutions stay protected).
        gradients: For ``'taylor'``: a function that fills ``.grad`` of the model's parameters from the training loss.
    """

    importance: str = "l2"
    global_pruning: bool = False
    max_step_ratio: float = 1.0
    min_widths: Dict[str, int] = field(default_factory=dict)
    isomorphic: bool = False
    layer_ratios: Dict[int, float] = field(default_factory=dict)
    latency_weights: Dict[str, float] = field(default_factory=dict)
    ignore_layers: Tuple[int, ...] = ()
    prune_head: bool = False
    gradients: Optional[Callable[[nn.Module], None]] = None


def make_importance(name: str) -> tp.importance.Importance:
    """Return Torch-Pruning's group importance criterion for an ``importance=`` value.

    ``l2``/``l1``: the L2/L1 norm of each channel's weights over the whole group (``GroupMagnitudeImportance``);
    ``lamp``: layer-adaptive magnitude (``LAMPImportance``); ``taylor``: first-order Taylor expansion of the loss,
    ``|w * dL/dw|`` (``GroupTaylorImportance``; needs gradients); ``bn``: the BatchNorm scale |γ|
    (``BNScaleImportance``); ``random``: a baseline (``RandomImportance``).
    """
    factories = {
        "l2": lambda: tp.importance.GroupMagnitudeImportance(p=2),
        "l1": lambda: tp.importance.GroupMagnitudeImportance(p=1),
        "lamp": lambda: tp.importance.LAMPImportance(p=2),
        "taylor": lambda: tp.importance.GroupTaylorImportance(),
        "bn": lambda: tp.importance.BNScaleImportance(),
        "random": lambda: tp.importance.RandomImportance(),
    }
    if name not in factories:
        raise ValueError(f"importance must be one of {', '.join(factories)}, got {name!r}")
    return factories[name]()


def prepare_for_pruning(model: nn.Module) -> nn.Module:
    """Make a loaded Ultralytics detector ready for DepGraph tracing and pruning, in place.

    * float32 (checkpoints are saved in half precision);
    * ``requires_grad=True`` on every parameter: DepGraph traces through autograd, and loaded checkpoints have it off
      (the DFL convolution is frozen again by the Ultralytics trainer, which always freezes ``.dfl``);
    * every chunk-split block (``C2f``, ``C3k2``, ...) swapped for an equivalent ``C2f_v2`` (idempotent);
    * the cached ``criterion`` deleted (it survives pickling and would stay on the wrong device).

    The training/eval mode is left unchanged (see the module docstring).

    Args:
        model: An Ultralytics ``DetectionModel`` (for a ``YOLO`` object pass ``yolo.model``).

    Returns:
        The same ``model``.
    """
    model.float()
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    unsplit_blocks(model)
    forget_cached_state(model)
    return model


def step_ratio(rate: float, iterative_steps: int) -> float:
    """Return the per-step channel pruning ratio such that ``iterative_steps`` steps remove ``rate`` in total.

    ``1 - (1 - rate) ** (1 / iterative_steps)``: the steps compound, so each prunable layer ends with
    ``1 - rate`` of its channels.

    Args:
        rate: Total fraction of channels to remove, in ``[0, 1)``.
        iterative_steps: Number of pruning steps, at least 1.

    Returns:
        The fraction of the current channels to remove at each step.
    """
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"rate must be in [0, 1), got {rate}")
    if iterative_steps < 1:
        raise ValueError(f"iterative_steps must be at least 1, got {iterative_steps}")
    return 1.0 - (1.0 - rate) ** (1.0 / iterative_steps)


def build_group_pruner(
    model: nn.Module,
    example_inputs: torch.Tensor,
    ratio: float,
    round_to: Optional[int] = None,
    pruning_ratio_dict: Optional[Dict[nn.Module, float]] = None,
    options: Optional[PruneOptions] = None,
) -> tp.pruner.BasePruner:
    """Build a new Torch-Pruning group L2-magnitude pruner for one pruning step of ``model``.

    Building traces ``model`` once (in eval mode, left in eval mode: restore it yourself, as :func:`prune_once`
    does). Torch-Pruning's own ``round_to`` rounds the kept width *down*; :func:`prune_once` passes exact per-layer
    ratios instead.

    Args:
        model: A detector prepared with :func:`prepare_for_pruning`.
        example_inputs: A batch on the model's device; only its channel structure matters, any stride multiple works.
        ratio: Fraction of each group's channels to remove in this step (``iterative_steps=1``).
        round_to: Optional multiple for the kept widths, passed to Torch-Pruning.
        pruning_ratio_dict: Optional per-module ratios that override ``ratio`` (keys must be module instances).
        options: Importance and allocation (:class:`PruneOptions`); default: group L2, the same ratio everywhere.

    Returns:
        A ``tp.pruner.BasePruner``; call ``step()`` once.

    Raises:
        ValueError: If ``model`` holds no ``Detect`` head, which would leave the outputs unprotected.
    """
    if not heads(model):
        raise ValueError("no Ultralytics head found in the model: refusing to prune an unprotected output layer")
    options = options or PruneOptions()
    with torch.enable_grad(), opaque_for_tracing(model):  # the tracer relies on autograd and asserts it is on
        return tp.pruner.BasePruner(
            model,
            example_inputs,
            importance=make_importance(options.importance),
            global_pruning=options.global_pruning,
            pruning_ratio=ratio if pruning_ratio_dict is None else 0.0,  # with a dict, unlisted convs stay
            pruning_ratio_dict=pruning_ratio_dict,
            # the plans give every convolution its exact ratio and apply the global cap themselves; Torch-Pruning's
            # own cap would also cut uniform ratios (rate=0.9 under max_layer_rate=0.8)
            max_pruning_ratio=1.0,
            isomorphic=options.isomorphic,
            iterative_steps=1,
            ignored_layers=ignored_layers(model, options.ignore_layers),
            round_to=round_to,
            forward_fn=_forward_for_tracing,
            in_channel_groups={},  # fresh dicts: Torch-Pruning's mutable defaults are shared between pruners
            out_channel_groups={},
        )


def _forward_for_tracing(model: nn.Module, example_inputs: torch.Tensor):
    """Run ``model`` on the example batch exactly once (Torch-Pruning's ``forward_fn`` hook)."""
    return model(example_inputs)


def prune_once(
    model: nn.Module,
    imgsz: ImageSize,
    ratio: float,
    round_to: Optional[int] = None,
    options: Optional[PruneOptions] = None,
) -> dict:
    """Prune ``ratio`` of the channels of every prunable group of ``model`` once, in place.

    Prepares the model (idempotent), plans every prunable convolution's width from its tracked ideal width (see the
    module docstring), builds a new pruner, steps it, restores the training flags, clears the cached criterion,
    turns the unsplit blocks back into stock blocks and marks the model as restructured
    (:func:`~ultralytics_prune_plugin.nn.structure.mark_restructured`). The heads keep their output
    widths; their first convolutions lose input channels with the neck.

    With ``options.global_pruning`` the widths come from :func:`plan_global_widths` (channels ranked across groups)
    instead of :func:`plan_widths` (the same fraction of every group).

    Args:
        model: An Ultralytics ``DetectionModel``.
        imgsz: Image size at which MACs are counted (the graph itself is traced on a small image).
        ratio: Fraction of the current channels to remove, in ``[0, 1)``; use :func:`step_ratio` for iterative runs.
        round_to: Optional multiple that every pruned width is rounded to (nearest, at least one multiple).
        options: Importance and allocation (:class:`PruneOptions`); default: group L2, the same ratio everywhere.

    Returns:
        ``macs_before``/``macs_after``, ``params_before``/``params_after`` (at ``imgsz``), ``channels_before``/
        ``channels_after`` (:func:`channel_counts`, both of the unsplit model), ``prune_seconds`` (pruner build +
        step), ``ratio``, ``round_to`` and ``imgsz``.

    Raises:
        ValueError: If ``ratio`` is outside ``[0, 1)``, ``round_to`` is below 1, or there is no ``Detect`` head.
        RuntimeError: If a ``Detect`` head's output widths changed (never expected).
        ValueError: If a block's halves ended with different widths (never expected; nothing is restored then).
    """
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"ratio must be in [0, 1), got {ratio}")
    if round_to is not None and round_to < 1:
        raise ValueError(f"round_to must be a positive integer or None, got {round_to}")
    options = options or PruneOptions()
    prepare_for_pruning(model)
    training_flags = {module: module.training for module in model.modules()}
    macs_before, params_before = count_macs_params(model, imgsz)
    channels_before = channel_counts(model)
    protected_before = protected_widths(model)

    start = time.perf_counter()
    try:
        if options.gradients is not None:
            options.gradients(model)
        plan = plan_global_widths if options.global_pruning else plan_widths
        ideal_widths, ratios = plan(model, ratio, round_to, options)
        pruner = build_group_pruner(model, trace_inputs(model), ratio, pruning_ratio_dict=ratios, options=options)
        pruner.step()
    finally:  # the tracer switched everything to eval mode
        for module, training in training_flags.items():
            module.training = training
        model.zero_grad(set_to_none=True)
    prune_seconds = time.perf_counter() - start

    setattr(model, IDEAL_WIDTHS_ATTRIBUTE, ideal_widths)
    forget_cached_state(model)
    channels_after = channel_counts(model)
    _check_head_outputs_unchanged(protected_before, protected_widths(model))
    macs_after, params_after = count_macs_params(model, imgsz)
    restore_stock_blocks(model)
    mark_restructured(model, method="depgraph")
    return {
        "ratio": ratio,
        "round_to": round_to,
        "imgsz": imgsz,
        "macs_before": macs_before,
        "macs_after": macs_after,
        "params_before": params_before,
        "params_after": params_after,
        "channels_before": channels_before,
        "channels_after": channels_after,
        "prune_seconds": prune_seconds,
    }


def plan_widths(
    model: nn.Module, ratio: float, round_to: Optional[int] = None, options: Optional[PruneOptions] = None
) -> Tuple[Dict[str, float], Dict[nn.Module, float]]:
    """Plan the kept width of every prunable convolution for one step.

    Each convolution's ideal width (stored on the model by earlier steps under its unsplit name, else its current
    width) is multiplied by
    ``1 - ratio`` (or ``1 - options.layer_ratios[i]`` for a convolution of layer ``i``, or ``(1 - ratio) ** w`` for a
    convolution of latency weight ``w``); the kept width is that ideal
    rounded by :func:`target_width`. Convolutions coupled in one group have
    the same current and ideal widths, hence the same ratio, so it does not matter which of them Torch-Pruning reads.

    Args:
        model: A detector prepared with :func:`prepare_for_pruning`.
        ratio: Fraction of the ideal width to remove.
        round_to: Optional multiple for the kept widths.
        options: Per-layer ratios, ignored layers and ``prune_head`` (:class:`PruneOptions`).

    Returns:
        ``(ideal_widths, ratios)``: the new ideal width per convolution name (to store after the step succeeds), and
        the exact Torch-Pruning ratio per convolution instance that keeps the planned width.
    """
    options = options or PruneOptions()
    previous = getattr(model, IDEAL_WIDTHS_ATTRIBUTE, None) or {}
    ignored = set(options.ignore_layers)
    ideal_widths, ratios = {}, {}
    for name, conv in prunable_convs(model, options.prune_head):
        current = conv.out_channels
        index = layer_index(name)
        if index in ignored:
            continue
        if index in options.layer_ratios:
            layer_ratio = options.layer_ratios[index]
        else:
            layer_ratio = weighted_ratio(ratio, options.latency_weights.get(name, 1.0))
        ideal = previous.get(name, float(current)) * (1.0 - layer_ratio)
        ideal_widths[name] = ideal
        ratios[conv] = ratio_keeping(current, target_width(ideal, current, round_to))
    return ideal_widths, ratios


def plan_global_widths(
    model: nn.Module, ratio: float, round_to: Optional[int] = None, options: Optional[PruneOptions] = None
) -> Tuple[Dict[str, float], Dict[nn.Module, float]]:
    """Plan one step's widths by ranking channels across groups: ``ratio`` of all prunable channels go.

    Every prunable group (rooted at a convolution of :func:`prunable_convs`) is scored with the step's importance
    criterion (Torch-Pruning's, normalised within each group as Torch-Pruning's global pruning does); one threshold
    over all scores decides how many channels each group keeps. No group keeps fewer than ``options.min_widths``
    names for its convolutions (else it loses at most ``options.max_step_ratio`` of its channels), kept widths are
    rounded to ``round_to`` (nearest, at least one multiple; up where the nearest would pass that floor), and the
    two halves of an unsplit block keep the larger of their two widths, so that the block converts back to its stock
    class. With
    ``options.isomorphic`` the threshold is set separately within each set of groups of the same structure
    (isomorphic pruning). A higher ``ratio`` never keeps more channels anywhere, so MACs fall monotonically with it.

    Returns:
        ``(ideal_widths, ratios)`` as :func:`plan_widths` returns them; the ideal widths are the planned widths.
    """
    options = options or PruneOptions()
    convs = dict((id(conv), (name, conv)) for name, conv in prunable_convs(model, options.prune_head))
    ignored = set(options.ignore_layers)
    pruner = build_group_pruner(model, trace_inputs(model), 0.0, pruning_ratio_dict={}, options=options)
    groups = []  # (member convolutions whose output channels the group removes, scores, structure class)
    for group in pruner.DG.get_all_groups(ignored_layers=pruner.ignored_layers, root_module_types=[nn.Conv2d]):
        members = [
            dep.target.module
            for dep, _ in group
            if isinstance(dep.target.module, nn.Conv2d) and getattr(dep.handler, "__name__", "") == "prune_out_channels"
            and id(dep.target.module) in convs
        ]
        if not members or any(layer_index(convs[id(m)][0]) in ignored for m in members):
            continue
        importance = pruner.importance(group)
        if importance is None or len(importance) != members[0].out_channels:
            continue
        scores = importance.detach().float().flatten().cpu()
        weight = max(options.latency_weights.get(convs[id(m)][0], 1.0) for m in members)
        groups.append((members, scores / weight, _structure(group) if options.isomorphic else None))
    floors = []  # the fewest channels each group may keep in this step
    for members, scores, _ in groups:
        given = [options.min_widths[convs[id(m)][0]] for m in members if convs[id(m)][0] in options.min_widths]
        floors.append(max(given) if given else math.ceil(len(scores) * (1.0 - options.max_step_ratio)))
    kept = [0] * len(groups)
    for cls in {g[2] for g in groups}:
        indices = [i for i, g in enumerate(groups) if g[2] == cls]
        pooled = torch.cat([groups[i][1] for i in indices])
        n_remove = int(ratio * len(pooled))
        threshold = torch.kthvalue(pooled, n_remove).values.item() if n_remove > 0 else -math.inf
        for i in indices:
            width = len(groups[i][1])
            kept[i] = max(floors[i], int((groups[i][1] > threshold).sum()))
    group_of = {id(m): i for i, g in enumerate(groups) for m in g[0]}
    for module in model.modules():  # both halves of an unsplit block keep the same width
        pair = [getattr(getattr(module, n, None), "conv", None) for n in ("cv0", "cv1")]
        if hasattr(module, "stock_class") and all(id(c) in group_of for c in pair):
            i, j = group_of[id(pair[0])], group_of[id(pair[1])]
            kept[i] = kept[j] = max(kept[i], kept[j])
    ideal_widths, ratios = {}, {}
    unit = round_to or 1
    for (members, _, _), n_kept, floor in zip(groups, kept, floors):
        for conv in members:
            width = target_width(float(n_kept), conv.out_channels, round_to)
            if width < floor:  # rounding to the nearest multiple must not pass the cap
                width = min(conv.out_channels, unit * math.ceil(floor / unit))
            ideal_widths[convs[id(conv)][0]] = float(width)
            ratios[conv] = ratio_keeping(conv.out_channels, width)
    return ideal_widths, ratios


def _structure(group) -> tuple:
    """A signature of a group's structure (module types and weight shapes), for isomorphic pruning."""
    return tuple(
        (type(dep.target.module).__name__, tuple(getattr(getattr(dep.target.module, "weight", None), "shape", ())))
        for dep, _ in group
    )


def target_width(ideal: float, current: int, round_to: Optional[int] = None) -> int:
    """Round an ideal width to the nearest multiple of ``round_to`` (1 if None), at least one multiple.

    The result never exceeds ``current``: pruning does not grow layers, and a layer narrower than ``round_to`` is
    left as it is.
    """
    unit = round_to or 1
    rounded = int(math.floor(ideal / unit + 0.5)) * unit
    return min(current, max(unit, rounded))


def weighted_ratio(ratio: float, weight: float) -> float:
    """The ratio a convolution of latency weight ``weight`` is pruned at where the uniform allocation prunes at
    ``ratio``: it keeps ``(1 - ratio) ** weight`` (weight 1: uniform; monotone in ``ratio`` for every weight)."""
    return 1.0 - (1.0 - ratio) ** weight


def cap_width(width: int, max_rate: float, round_to: Optional[int] = None) -> int:
    """The fewest channels a layer of ``width`` channels keeps when it may lose at most ``max_rate`` of them:
    ``width * (1 - max_rate)`` rounded up (to a multiple of ``round_to``), at least one multiple, at most ``width``."""
    unit = round_to or 1
    fewest = math.ceil(width * (1.0 - max_rate) - 1e-9)  # 1e-9: a product that should be whole stays whole
    return min(width, max(unit, unit * math.ceil(fewest / unit)))


def ratio_keeping(current: int, kept: int) -> float:
    """Return the Torch-Pruning ratio that keeps exactly ``kept`` of ``current`` channels.

    Torch-Pruning keeps ``int(current * (1 - ratio))``; aiming at ``kept + 0.5`` makes the floor land on ``kept``
    despite floating-point error.
    """
    return max(0.0, (current - kept - 0.5) / current)


def trace_inputs(model: nn.Module) -> torch.Tensor:
    """Return a small batch for graph tracing: two times the model's largest stride (64 px for YOLOv8)."""
    stride = getattr(model, "stride", None)
    largest = int(torch.as_tensor(stride).max()) if stride is not None else 32
    return dummy_input(model, 2 * max(largest, 32))


def channel_counts(model: nn.Module) -> Dict[str, int]:
    """Return the output channel count of every ``nn.Conv2d`` in ``model``, by qualified module name."""
    return {name: module.out_channels for name, module in model.named_modules() if isinstance(module, nn.Conv2d)}


def _check_head_outputs_unchanged(before: Dict[str, int], after: Dict[str, int]) -> None:
    """Raise ``RuntimeError`` if any protected layer (a head output, the classifier) changed its output width."""
    changed = [name for name in before if before[name] != after.get(name)]
    if changed:
        raise RuntimeError(f"pruning changed the output width of protected head layers: {changed}")
