"""The architecture policy: what channel pruning does with each kind of Ultralytics module, keyed by module type.

Both DepGraph pruning and Network Slimming (and sparse training, which penalises exactly what slim may remove) read
their decisions from here, so a new model family or task is an entry in the tables below, not a new code path.

* :data:`HEADS` maps each head type to what it protects. ``Detect`` and every subclass (``Segment``, ``Pose``,
  ``OBB``, the YOLO26 end-to-end heads ``Segment26``, ``Pose26``, ``OBB26``, ...) use the generic rule (``None``):
  only the **last convolution of each output branch** is protected (box distribution, class scores, mask
  coefficients ``cv4``, keypoints ``cv4``, angle ``cv4``, the proto's output, the DFL). The head's inner convolutions
  are not pruned on their own, but they follow the neck where they are coupled to it: YOLO11's depthwise class-branch
  convolutions shrink with the neck channels they filter, and every head input convolution loses the input channels
  the neck loses. ``Classify`` names its output layer (``linear``): only the classifier keeps its width (one output
  per class); its inner 1x1 ``conv`` (to 1280 channels, then pooled) is an ordinary prunable layer, like the
  backbone, and the ``linear`` loses the input features that it loses.
* :data:`OPAQUE` (attention: ``Attention``, ``AAttn``, and YOLO11's ``C2PSA`` block as a whole): traced as one
  unit and never pruned; the channels that enter and leave them keep their width (the residual stream around a
  ``PSABlock``, the input and output of ``C2PSA``). Torch-Pruning 1.6 cannot map attention's per-head reshapes, nor
  ``C2PSA``'s ``split`` whose second half feeds several layers.
* Split blocks (``C2f`` and its subclasses that keep ``C2f.forward``, such as ``C3k2``) are unsplit before pruning
  (:mod:`ultralytics_prune_plugin.nn.c2f_v2`). When one half of such a block cannot be pruned (its inner blocks hold
  attention), the other half is protected as well, so both halves keep equal widths and the block converts back to
  the stock class.
* :data:`SUPPORTED_LAYERS`: the top-level layer types this policy has been checked on. A model with any other layer
  type is refused with one line that names it (:func:`check_supported`), never a traceback in the middle of a prune.

Torch-Pruning 1.6 only honours ``nn.Module`` instances in ``ignored_layers``, and skips every group that would remove
output channels of an ignored module; hence instances, and only the output convolutions rather than whole heads (a
whole ignored YOLO11 head would freeze every neck channel that feeds a depthwise convolution).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Dict, List, Optional, Set, Tuple

import torch.nn as nn

from ultralytics_prune_plugin.config import PluginArgumentError

# Heads, found by class name (subclasses included) so that one table serves every series: the attribute holding the
# head's only protected output layer, or None for the generic rule (the last layer of every output branch protected,
# nothing inside the head pruned on its own). Every task is an entry here.
HEADS = {"Detect": None, "Classify": "linear"}
# Composite children of a head (the segmentation heads' mask prototype modules) with more than one output: the
# attributes whose last layer is an output. Other composite children contribute their last layer.
HEAD_PART_OUTPUTS = {"Proto": ("cv3",), "Proto26": ("cv3", "semseg")}
# Modules whose forward skips a branch outside training (YOLO26's Proto26 computes its semantic-segmentation logits
# only in training): traced with their own training flag on, so that the pruners see the branch and shrink its inputs
# with the neck (their submodules stay in eval mode, so no BatchNorm statistics change).
TRAINING_BRANCHES = ("Proto26",)
# Heads traced through their raw output branches only (:func:`_run_branches`): every branch runs (one-to-many,
# one-to-one, training-only) and nothing is decoded. Pose26's eval output concatenates decoded boxes, scores and
# keypoints, and Torch-Pruning 1.6's shape inference fails on that concatenation for some keypoint shapes (4 x 3);
# the decode holds no prunable channel (every branch's output layer is protected), so the tracer does not need it.
RAW_BRANCHES = ("Pose26",)
# Modules traced as one unit and never pruned, with the attribute holding their output projection (in = out width).
OPAQUE = {"Attention": "proj", "AAttn": "proj", "C2PSA": "cv2"}
# Top-level layer types (``model.model[i]``) the policy covers; anything else is refused by name.
SUPPORTED_LAYERS = frozenset(
    {
        "Conv", "DWConv", "Concat", "Upsample", "SPPF", "SPP", "C2f", "C3k2", "C3", "C2", "C1", "C2PSA", "Bottleneck",
        "Detect", "Segment", "Pose", "OBB", "Segment26", "Pose26", "OBB26", "Classify", "C2f_v2",
    }
)


def _is_a(module: nn.Module, names: Tuple[str, ...]) -> bool:
    """True when ``module`` is an instance of a class named in ``names`` (or of a subclass of one)."""
    return any(cls.__name__ in names for cls in type(module).__mro__)


def check_supported(model: nn.Module, what: str = "model") -> None:
    """Refuse, with one line naming it, a model that holds a layer type the policy does not cover.

    Raises:
        PluginArgumentError: Naming the first unsupported layer type and its index.
    """
    layers = getattr(model, "model", None)
    if not isinstance(layers, (nn.Sequential, nn.ModuleList)):
        raise PluginArgumentError(f"'{what}' is not an Ultralytics YOLO network (no 'model' layer list)")
    for i, layer in enumerate(layers):
        name = type(layer).__name__
        if name not in SUPPORTED_LAYERS:
            raise PluginArgumentError(
                f"'{what}' has a {name} layer (layer {i}), which the plugin cannot prune yet; supported layers: "
                + ", ".join(sorted(SUPPORTED_LAYERS - {"C2f_v2"}))
            )


def heads(model: nn.Module) -> List[nn.Module]:
    """Return the head instances of ``model`` (outermost only)."""
    found = [m for m in model.modules() if _is_a(m, tuple(HEADS))]
    nested = {id(sub) for head in found for sub in head.modules() if sub is not head}
    return [head for head in found if id(head) not in nested]


def _last_weight_layer(module: nn.Module):
    """The last ``nn.Conv2d`` or ``nn.Linear`` of ``module`` in module order, or None."""
    last = None
    for sub in module.modules():
        if isinstance(sub, (nn.Conv2d, nn.Linear)):
            last = sub
    return last


def _head_entry(head: nn.Module):
    """The :data:`HEADS` entry of ``head``: its nearest class (in method resolution order) named in the table."""
    return next(HEADS[cls.__name__] for cls in type(head).__mro__ if cls.__name__ in HEADS)


def output_layers(head: nn.Module) -> List[nn.Module]:
    """Return the layers of ``head`` whose output width must be kept.

    For a head with a named output layer (``Classify``: ``linear``), that layer alone. Otherwise (the generic rule),
    the last convolution of every output branch: the branches are the items of each ``nn.ModuleList`` child
    (``cv2``, ``cv3``, ``cv4``, ``one2one_cv2``, ...) and every other child that holds weights (``dfl``, ``proto``).
    """
    named = _head_entry(head)
    if named is not None:
        return [_last_weight_layer(getattr(head, named))]
    found = []
    for child in head.children():
        branches = list(child) if isinstance(child, nn.ModuleList) else [child]
        part = next((HEAD_PART_OUTPUTS[c.__name__] for c in type(child).__mro__ if c.__name__ in HEAD_PART_OUTPUTS), ())
        if part:  # a composite part with named outputs (a mask prototype module)
            branches = [getattr(child, name, None) for name in part]
        for branch in branches:
            last = _last_weight_layer(branch) if isinstance(branch, nn.Module) else None
            if last is not None:
                found.append(last)
    return found


def opaque_modules(model: nn.Module) -> List[nn.Module]:
    """Return the module instances traced as one leaf and never pruned (attention), outermost only."""
    found = [m for m in model.modules() if _is_a(m, tuple(OPAQUE))]
    nested = {id(sub) for m in found for sub in m.modules() if sub is not m}
    return [m for m in found if id(m) not in nested]


def kept_whole(model: nn.Module) -> List[str]:
    """Name every opaque module of ``model`` that pruning keeps whole, as ``'model.10 (C2PSA)'``, for the report."""
    names = {id(m): n for n, m in model.named_modules()}
    return [f"{names[id(m)]} ({type(m).__name__})" for m in opaque_modules(model)]


def ignored_layers(model: nn.Module, layer_indices=()) -> List[nn.Module]:
    """Return the module instances whose output channels pruning must leave intact.

    These are the head output convolutions, the opaque (attention) modules, the first-half convolution of every
    unsplit block whose second half runs through an opaque module (so that its halves stay equal), and every
    convolution of the top-level layers numbered in ``layer_indices`` (the user's ``ignore_layers``).
    """
    protected = [layer for head in heads(model) for layer in output_layers(head)]
    opaque = opaque_modules(model)
    protected += [_projection(m) for m in opaque]  # what the tracer sees of them (opaque_for_tracing)
    for module in model.modules():
        cv0, inner = getattr(module, "cv0", None), getattr(module, "m", None)
        if isinstance(cv0, nn.Module) and isinstance(inner, nn.Module):
            if any(_is_a(sub, tuple(OPAQUE)) for sub in inner.modules()):  # by type: activations are shared objects
                protected.append(cv0)
    layers = getattr(model, "model", [])
    for i in layer_indices:
        protected += [m for m in layers[i].modules() if isinstance(m, nn.Conv2d) and m not in protected]
    return protected


def layer_index(name: str) -> Optional[int]:
    """The top-level layer index of a qualified module name (``'model.12.cv1.conv'`` → 12), or None."""
    parts = name.split(".")
    return int(parts[1]) if len(parts) > 1 and parts[0] == "model" and parts[1].isdigit() else None


def protected_widths(model: nn.Module) -> Dict[str, int]:
    """Return the output width of every protected layer (see :func:`ignored_layers`) by qualified name.

    Convolutions give their output channels, linear layers their output features. Pruning must leave all of them
    unchanged; both pruners compare this before and after.
    """
    protected = {id(layer) for layer in ignored_layers(model)}
    return {
        name: module.out_channels if isinstance(module, nn.Conv2d) else module.out_features
        for name, module in model.named_modules()
        if id(module) in protected and isinstance(module, (nn.Conv2d, nn.Linear))
    }


def ignored_module_ids(model: nn.Module) -> Set[int]:
    """Return the ``id`` of every module inside an ignored layer, the ignored layers included."""
    return {id(sub) for layer in ignored_layers(model) for sub in layer.modules()}


def _not_prunable_ids(model: nn.Module, prune_head: bool = False) -> Set[int]:
    """Ids of modules that pruning never picks itself: everything inside a generic-rule head (unless ``prune_head``)
    or an opaque module, and the protected layers (a head with a named output layer, such as ``Classify``, prunes its
    other layers)."""
    ids = set()
    if not prune_head:
        ids = {id(sub) for head in heads(model) if _head_entry(head) is None for sub in head.modules()}
    ids |= {id(sub) for m in opaque_modules(model) for sub in m.modules()}
    return ids | ignored_module_ids(model)


def prunable_batchnorms(model: nn.Module) -> List[Tuple[str, nn.BatchNorm2d]]:
    """Return the BatchNorms that channel pruning may remove channels from, with their qualified names.

    All ``nn.BatchNorm2d`` outside generic-rule heads (``Detect`` and subclasses), opaque modules and protected layers, including those coupled by residual
    adds (pruning decides on the coupled set jointly). Sparse training applies its L1 penalty to exactly these.
    """
    skip = _not_prunable_ids(model)
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d) and id(m) not in skip]


def prunable_convs(model: nn.Module, prune_head: bool = False) -> List[Tuple[str, nn.Conv2d]]:
    """Return the convolutions whose output channels pruning may remove, with their qualified names.

    Every ``nn.Conv2d`` outside generic-rule heads, opaque modules and protected layers. Head convolutions coupled to these
    (depthwise ones) follow them without being listed. With ``prune_head`` the head's inner convolutions are listed
    too (its output convolutions stay protected).
    """
    skip = _not_prunable_ids(model, prune_head)
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and id(m) not in skip]


def _projection(module: nn.Module) -> nn.Conv2d:
    """The output projection convolution of an opaque module (see :data:`OPAQUE`)."""
    name = next(OPAQUE[cls.__name__] for cls in type(module).__mro__ if cls.__name__ in OPAQUE)
    return _last_weight_layer(getattr(module, name))


def _run_as_training(module: nn.Module, *args, **kwargs):
    """Run the class ``forward`` of ``module`` with its own training flag on (its submodules keep theirs)."""
    was = module.training
    module.training = True
    try:
        return type(module).forward(module, *args, **kwargs)
    finally:
        module.training = was


def _run_branches(head: nn.Module, x: List):
    """Run every output branch of an Ultralytics 8.4 head on the features ``x``, undecoded, for tracing only.

    The one-to-many branches and, for an end-to-end head, the one-to-one branches, on the same (not detached)
    features, with the head's own training flag on so that its training-only branches (Pose26's keypoint sigmas) run
    as well; its submodules keep their mode. Nothing is decoded (no anchors, no concatenation of the branches).

    Args:
        head: A head with ``forward_head``, ``one2many`` and ``one2one`` (see :data:`RAW_BRANCHES`).
        x: The neck features, one per detection level.

    Returns:
        ``{"one2many": ..., "one2one": ...}`` (the second only for an end-to-end head): each the dict of raw branch
        outputs that ``forward_head`` returns.
    """
    was = head.training
    head.training = True
    try:
        preds = {"one2many": head.forward_head(x, **head.one2many)}
        if getattr(head, "one2one_cv2", None) is not None:
            preds["one2one"] = head.forward_head(x, **head.one2one)
        return preds
    finally:
        head.training = was


@contextmanager
def opaque_for_tracing(model: nn.Module):
    """While Torch-Pruning traces ``model``, run every opaque module as its output projection alone.

    Attention reshapes its channels per head, which Torch-Pruning 1.6 cannot map (the trace fails or never ends).
    For the dependency graph only the channel coupling matters, so during tracing each opaque module computes
    ``x + projection(x)`` with its last 1x1 convolution (which :func:`ignored_layers` protects): the add ties the
    module's input channels to its protected output, so no group can remove channels on either side of it, and
    nothing inside it is pruned. The real ``forward`` is back as soon as the block exits.

    Modules of :data:`TRAINING_BRANCHES` run their training-only branch as well (their own training flag is on while
    they run, their submodules stay in eval mode), so the tracer records the channels those branches consume. Heads
    of :data:`RAW_BRANCHES` run all their output branches and skip the decode (:func:`_run_branches`).
    """
    replaced = []
    for module in opaque_modules(model):
        projection = _projection(module)
        module.forward = lambda x, projection=projection: x + projection(x)  # shadows the class's forward
        replaced.append(module)
    for module in model.modules():
        if _is_a(module, TRAINING_BRANCHES):
            module.forward = lambda *args, module=module, **kwargs: _run_as_training(module, *args, **kwargs)
            replaced.append(module)
        elif _is_a(module, RAW_BRANCHES):
            module.forward = lambda x, module=module: _run_branches(module, x)
            replaced.append(module)
    try:
        yield model
    finally:
        for module in replaced:
            del module.forward
