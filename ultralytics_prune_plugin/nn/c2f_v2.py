"""Unsplitting chunk-split CSP blocks for pruning, and turning them back into stock Ultralytics blocks afterwards.

Ultralytics' ``C2f`` (and its subclasses that keep ``C2f.forward``: ``C3k2`` of YOLO11/YOLO26, ``C2fCIB``,
``C2fPSA``) computes ``cv1(x).chunk(2, 1)``. Channel pruning cannot shrink the two halves independently through a
``chunk``, so before pruning every such block is *unsplit*: swapped for a ``C2f_v2`` whose ``cv0`` and ``cv1``
produce the halves separately. The swap is exact: :meth:`C2f_v2.from_c2f` moves the first half of the old ``cv1``
rows to ``cv0`` and the second half to the new ``cv1``, reuses ``cv2`` and the inner blocks ``m``, and remembers the
stock class it came from.

After pruning, :func:`restore_stock_blocks` merges ``cv0`` and ``cv1`` back into one ``cv1`` and rebuilds the stock
class, so that a pruned model (and its checkpoint) holds only Ultralytics and torch classes and loads without this
plugin. That is exact only when both halves kept the same width, which the pruners guarantee (DepGraph plans equal
widths; Network Slimming keeps equal halves explicitly).

Subclasses of ``C2f`` that override ``forward`` are never unsplit (their forward may use ``cv1`` differently);
:func:`skipped_c2f_blocks` lists them. Checkpoints written by earlier plugin versions pickled ``C2f_v2`` by its
module path, so this class must stay importable as ``ultralytics_prune_plugin.nn.c2f_v2.C2f_v2``.
"""

from __future__ import annotations

import copy
from typing import List, Tuple

import torch
import torch.nn as nn
from ultralytics.nn.modules.block import C2f, Bottleneck
from ultralytics.nn.modules.conv import Conv

# Attributes that ``ultralytics.nn.tasks.parse_model`` sets on each top-level layer instance; ``_predict_once``
# routes tensors with ``f`` and ``i``, logging and feature visualisation read ``type``.
ROUTING_ATTRIBUTES = ("i", "f", "type")
# Instance attributes of a stock block that are not copied as "extra" state (set separately, or by nn.Module).
_NOT_EXTRA = set(ROUTING_ATTRIBUTES) | {"np", "training", "c", "forward"}


def is_chunk_split_block(module: nn.Module) -> bool:
    """Return True for a stock block that :func:`unsplit_blocks` converts.

    That is an instance of ``C2f`` or of a subclass that does not override ``forward`` (``C3k2``, ``C2fCIB``,
    ``C2fPSA``), whose output is therefore ``cv2(cat([*cv1(x).chunk(2, 1), m_1(...), ...]))``. An instance whose
    ``forward`` was replaced on the instance itself (Ultralytics' exporter assigns ``forward_split``) counts too:
    ``forward_split`` computes the same.
    """
    return isinstance(module, C2f) and type(module).forward is C2f.forward


class C2f_v2(nn.Module):  # noqa: N801 - the name is the one used by the Torch-Pruning YOLOv8 example and checkpoints
    """CSP bottleneck with two 1x1 input convolutions, numerically equivalent to a chunk-split stock block.

    Attributes:
        c (int): Hidden channels of each half at construction (not used by ``forward``; stale after pruning).
        cv0 (Conv): 1x1 convolution producing the first half (the part passed straight to ``cv2``).
        cv1 (Conv): 1x1 convolution producing the second half (the input of the first inner block).
        cv2 (Conv): 1x1 output convolution over the concatenation of both halves and every inner block's output.
        m (nn.ModuleList): The inner blocks (``Bottleneck``, ``C3k``, ``Sequential(Bottleneck, PSABlock)``, ...),
            applied one after another to the last produced tensor.
        stock_class (type): The stock class this block was unsplit from (``C2f``, ``C3k2``, ...), rebuilt by
            :func:`restore_stock_blocks`. Blocks pickled by earlier plugin versions lack it; ``C2f`` is assumed.
        stock_attributes (dict): Other plain instance attributes of the stock block, put back on restoring.
    """

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = False, g: int = 1, e: float = 0.5):
        """Build the block with the same arguments as ``C2f`` (it restores to a ``C2f``).

        Args:
            c1: Input channels.
            c2: Output channels.
            n: Number of bottlenecks.
            shortcut: Whether the bottlenecks add their input to their output.
            g: Groups of the bottlenecks' second convolution.
            e: Expansion ratio; each half has ``int(c2 * e)`` channels.
        """
        super().__init__()
        self.c = int(c2 * e)
        self.cv0 = Conv(c1, self.c, 1, 1)
        self.cv1 = Conv(c1, self.c, 1, 1)
        self.cv2 = Conv((2 + n) * self.c, c2, 1)
        self.m = nn.ModuleList(Bottleneck(self.c, self.c, shortcut, g, k=((3, 3), (3, 3)), e=1.0) for _ in range(n))
        self.stock_class = C2f
        self.stock_attributes = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run both halves, chain the inner blocks on the second half, and fuse everything with ``cv2``."""
        y = [self.cv0(x), self.cv1(x)]
        y.extend(m(y[-1]) for m in self.m)
        return self.cv2(torch.cat(y, 1))

    @classmethod
    def from_c2f(cls, c2f: C2f) -> "C2f_v2":
        """Build a ``C2f_v2`` that computes exactly what ``c2f`` (a ``C2f`` or a subclass keeping its forward) does.

        ``cv0`` and ``cv1`` are copies of ``c2f.cv1`` (same kernel, stride, padding, BatchNorm ``eps`` and
        ``momentum``, activation, ``requires_grad`` flags) cut to the first and second half of its output rows.
        ``cv2`` and ``m`` are the very modules of ``c2f``, not copies. Ultralytics' routing attributes, the training
        flag, the stock class and its other plain attributes are carried over.

        Args:
            c2f: The block to convert (:func:`is_chunk_split_block` must hold). It is not modified, but shares
                ``cv2`` and ``m`` with the result.

        Returns:
            The equivalent ``C2f_v2``.

        Raises:
            TypeError: If ``c2f`` is not a chunk-split block.
        """
        if not is_chunk_split_block(c2f):
            raise TypeError(f"{type(c2f).__name__} overrides C2f.forward; it cannot be unsplit exactly")
        half = c2f.cv1.conv.out_channels // 2
        block = cls.__new__(cls)
        nn.Module.__init__(block)
        block.c = c2f.c
        block.cv0 = copy_conv_output_rows(c2f.cv1, 0, half)
        block.cv1 = copy_conv_output_rows(c2f.cv1, half, 2 * half)
        block.cv2 = c2f.cv2
        block.m = c2f.m
        block.stock_class = type(c2f)
        block.stock_attributes = _extra_attributes(c2f)
        copy_routing_attributes(c2f, block)
        block.train(c2f.training)
        return block

    def to_stock(self) -> C2f:
        """Return the equivalent stock block (``stock_class``), built without calling its constructor.

        Its ``cv1`` is a copy of ``cv0`` holding both halves' rows (first ``cv0``'s, then ``cv1``'s), so that
        ``cv1(x).chunk(2, 1)`` gives back the two halves; ``cv2`` and ``m`` are this block's very modules; ``c`` is
        the half width. Routing attributes, the training flag and the stock block's other attributes are restored.

        Returns:
            The stock block; this one is not modified but shares ``cv2`` and ``m`` with it.

        Raises:
            ValueError: If the halves have different widths (a chunk cannot express that).
        """
        first, second = self.cv0.conv.out_channels, self.cv1.conv.out_channels
        if first != second:
            raise ValueError(
                f"C2f_v2 block (layer {getattr(self, 'i', '?')}, from {self._stock_class().__name__}) has halves of "
                f"{first} and {second} channels: only equal halves can become a stock chunk-split block again"
            )
        stock_class = self._stock_class()
        block = stock_class.__new__(stock_class)
        nn.Module.__init__(block)
        for name, value in getattr(self, "stock_attributes", {}).items():
            setattr(block, name, value)
        block.c = first
        block.cv1 = concat_conv_output_rows(self.cv0, self.cv1)
        block.cv2 = self.cv2
        block.m = self.m
        copy_routing_attributes(self, block)
        block.train(self.training)
        return block

    def _stock_class(self) -> type:
        """The class :meth:`to_stock` builds (``C2f`` for blocks pickled before ``stock_class`` existed)."""
        return getattr(self, "stock_class", None) or C2f


def _extra_attributes(module: nn.Module) -> dict:
    """Return ``module``'s plain public instance attributes other than ``c``, routing, ``np`` and an assigned
    ``forward`` (usually none)."""
    return {k: v for k, v in vars(module).items() if not k.startswith("_") and k not in _NOT_EXTRA}


def copy_conv_output_rows(conv: Conv, start: int, stop: int) -> Conv:
    """Return a deep copy of an Ultralytics ``Conv`` that keeps only output channels ``start:stop``.

    Every hyperparameter comes from the copy (BatchNorm ``eps``/``momentum``, activation, a fused ``forward``).
    The activation module itself is shared, not copied (see :func:`_copy_sharing_activation`).
    The convolution weight/bias rows and the BatchNorm weight, bias, running mean and running variance are sliced;
    ``num_batches_tracked`` is kept as is.

    Args:
        conv: An Ultralytics ``Conv`` (``conv`` + optional ``bn`` + ``act``); a fused one (no ``bn``) works too.
        start: First output channel kept.
        stop: One past the last output channel kept.

    Returns:
        The cut copy; ``conv`` itself is untouched.
    """
    part = _copy_sharing_activation(conv)
    rows = slice(start, stop)
    _keep_rows(part.conv, ("weight", "bias"), rows)
    part.conv.out_channels = stop - start
    bn = getattr(part, "bn", None)
    if bn is not None:
        _keep_rows(bn, ("weight", "bias", "running_mean", "running_var"), rows)
        bn.num_features = stop - start
    return part


def _copy_sharing_activation(conv: Conv) -> Conv:
    """Deep-copy ``conv`` but keep its very ``act`` module.

    Ultralytics' ``Conv`` uses one class-level ``SiLU`` instance (``Conv.default_act``) for every layer; sharing it
    keeps the module tree of a restored model identical to the original one (activations hold no state).
    """
    act = getattr(conv, "act", None)
    return copy.deepcopy(conv, memo={id(act): act} if act is not None else None)


def _keep_rows(module: nn.Module, names: tuple, rows: slice) -> None:
    """Replace each named parameter or buffer of ``module`` by its ``rows`` along dim 0 (missing ones skipped)."""
    for name in names:
        tensor = getattr(module, name, None)
        if tensor is None:
            continue
        sliced = tensor.detach()[rows].clone()
        if isinstance(tensor, nn.Parameter):
            setattr(module, name, nn.Parameter(sliced, requires_grad=tensor.requires_grad))
        else:
            setattr(module, name, sliced)  # a registered buffer stays a buffer when re-assigned by name


def copy_routing_attributes(source: nn.Module, target: nn.Module) -> None:
    """Copy Ultralytics' per-layer attributes from ``source`` to ``target``.

    ``i`` (layer index), ``f`` (from-index) and ``type`` (the type string, kept verbatim as the original
    ``...block.C2f`` so tools keyed on it behave as before) are copied when ``source`` has them as instance
    attributes. ``np`` is different: ``parse_model`` assigns it to the *class* (``m.np = ...`` where ``m`` is the
    class), so ``C2f.np`` holds the parameter count of whichever C2f was built last. ``target.np`` is therefore set
    to ``target``'s own parameter count, which is what ``BaseModel._profile_one_layer`` prints.

    Args:
        source: The module being replaced.
        target: The replacement.
    """
    for name in ROUTING_ATTRIBUTES:
        if name in vars(source):
            setattr(target, name, vars(source)[name])
    target.np = sum(p.numel() for p in target.parameters())


def concat_conv_output_rows(first: Conv, second: Conv) -> Conv:
    """Return a deep copy of ``first`` whose output channels are ``first``'s followed by ``second``'s.

    The inverse of two :func:`copy_conv_output_rows` calls: convolution weight/bias rows and BatchNorm weight, bias,
    running mean and running variance are concatenated; hyperparameters, the (shared) activation,
    ``num_batches_tracked`` and ``requires_grad`` flags come from ``first``.

    Args:
        first: An Ultralytics ``Conv`` (fused or not).
        second: A ``Conv`` with the same input channels and hyperparameters.

    Returns:
        The merged copy; the inputs are untouched.
    """
    merged = _copy_sharing_activation(first)
    _concat_rows(merged.conv, second.conv, ("weight", "bias"))
    merged.conv.out_channels = first.conv.out_channels + second.conv.out_channels
    bn = getattr(merged, "bn", None)
    if bn is not None:
        _concat_rows(bn, second.bn, ("weight", "bias", "running_mean", "running_var"))
        bn.num_features = merged.conv.out_channels
    return merged


def _concat_rows(module: nn.Module, other: nn.Module, names: tuple) -> None:
    """Append ``other``'s rows to each named parameter or buffer of ``module`` (missing ones skipped)."""
    for name in names:
        tensor = getattr(module, name, None)
        if tensor is None:
            continue
        joined = torch.cat([tensor.detach(), getattr(other, name).detach().to(tensor)], 0).clone()
        if isinstance(tensor, nn.Parameter):
            setattr(module, name, nn.Parameter(joined, requires_grad=tensor.requires_grad))
        else:
            setattr(module, name, joined)


def unsplit_blocks(model: nn.Module) -> int:
    """Swap every chunk-split block inside ``model`` (recursively) for an equivalent ``C2f_v2``, in place.

    Converted: ``C2f`` and its subclasses that keep ``C2f.forward`` (:func:`is_chunk_split_block`). Subclasses that
    override ``forward`` are left alone (see :func:`skipped_c2f_blocks`), and so are ``C2f_v2`` blocks, so calling
    this again is a no-op. ``model`` itself is never replaced, only its descendants.

    Args:
        model: Any module, typically an Ultralytics ``DetectionModel``.

    Returns:
        The number of blocks swapped.
    """
    replaced = 0
    for name, child in model.named_children():
        if is_chunk_split_block(child):
            setattr(model, name, C2f_v2.from_c2f(child))
            replaced += 1
            child = getattr(model, name)  # the inner blocks of a C3k2 are searched too (none is a C2f today)
        replaced += unsplit_blocks(child)
    return replaced


replace_c2f_with_c2f_v2 = unsplit_blocks  # the earlier name, still used by callers


def restore_stock_blocks(model: nn.Module) -> int:
    """Turn every ``C2f_v2`` inside ``model`` (recursively) back into its stock block, in place.

    See :meth:`C2f_v2.to_stock`. The result computes exactly what the ``C2f_v2`` computed, and holds only Ultralytics
    and torch classes, so its pickle loads without this plugin. ``model`` itself is never replaced.

    Args:
        model: Any module, typically a pruned Ultralytics ``DetectionModel``.

    Returns:
        The number of blocks restored.

    Raises:
        ValueError: If a ``C2f_v2`` has halves of different widths (nothing is changed in that case).
    """
    blocks = [
        (parent, name, child)
        for parent in model.modules()
        for name, child in parent.named_children()
        if isinstance(child, C2f_v2)
    ]
    stock = [block.to_stock() for _, _, block in blocks]  # every block checked before any is replaced
    for (parent, name, _), new in zip(blocks, stock):
        setattr(parent, name, new)
    return len(blocks)


def skipped_c2f_blocks(model: nn.Module) -> List[Tuple[str, str]]:
    """List the ``C2f`` subclasses inside ``model`` that :func:`unsplit_blocks` leaves alone.

    These override ``forward`` (so their use of ``cv1`` is unknown); pruning through their ``chunk`` is not safe.

    Args:
        model: Any module.

    Returns:
        ``(qualified name, class name)`` pairs, in ``named_modules`` order.
    """
    return [
        (name, type(module).__name__)
        for name, module in model.named_modules()
        if isinstance(module, C2f) and not is_chunk_split_block(module)
    ]
