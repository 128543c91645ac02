"""A pruning-friendly C2f: the two halves come from two convolutions instead of one chunked convolution.

Ultralytics' ``C2f`` computes ``cv1(x).chunk(2, 1)``. Channel pruning cannot shrink the two halves independently
through a ``chunk`` (both halves must keep the same width), so before pruning every ``C2f`` is swapped for a
``C2f_v2`` whose ``cv0`` and ``cv1`` produce the halves separately. The swap is exact: ``from_c2f`` moves the first
half of the old ``cv1`` rows to ``cv0`` and the second half to the new ``cv1``, and reuses ``cv2`` and the bottlenecks.

Pruned checkpoints pickle ``C2f_v2`` by its module path, so this class must stay importable as
``ultralytics_prune_plugin.nn.c2f_v2.C2f_v2``.
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn
from ultralytics.nn.modules.block import C2f, Bottleneck
from ultralytics.nn.modules.conv import Conv

# Attributes that ``ultralytics.nn.tasks.parse_model`` sets on each top-level layer instance; ``_predict_once``
# routes tensors with ``f`` and ``i``, logging and feature visualisation read ``type``.
ROUTING_ATTRIBUTES = ("i", "f", "type")


class C2f_v2(nn.Module):  # noqa: N801 - the name is the one used by the Torch-Pruning YOLOv8 example and checkpoints
    """CSP bottleneck with two 1x1 input convolutions, numerically equivalent to Ultralytics' ``C2f``.

    Attributes:
        c (int): Hidden channels of each half at construction (not used by ``forward``; stale after pruning).
        cv0 (Conv): 1x1 convolution producing the first half (the part passed straight to ``cv2``).
        cv1 (Conv): 1x1 convolution producing the second half (the input of the first bottleneck).
        cv2 (Conv): 1x1 output convolution over the concatenation of both halves and every bottleneck output.
        m (nn.ModuleList): The bottlenecks, applied one after another to the last produced tensor.
    """

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = False, g: int = 1, e: float = 0.5):
        """Build the block with the same arguments as ``C2f``.

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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run both halves, chain the bottlenecks on the second half, and fuse everything with ``cv2``."""
        y = [self.cv0(x), self.cv1(x)]
        y.extend(m(y[-1]) for m in self.m)
        return self.cv2(torch.cat(y, 1))

    @classmethod
    def from_c2f(cls, c2f: C2f) -> "C2f_v2":
        """Build a ``C2f_v2`` that computes exactly what ``c2f`` computes.

        ``cv0`` and ``cv1`` are copies of ``c2f.cv1`` (same kernel, stride, padding, BatchNorm ``eps`` and
        ``momentum``, activation, ``requires_grad`` flags) cut to the first and second half of its output rows.
        ``cv2`` and ``m`` are the very modules of ``c2f``, not copies. Ultralytics' routing attributes and the
        training flag are carried over.

        Args:
            c2f: The block to convert. It is not modified, but shares ``cv2`` and ``m`` with the result.

        Returns:
            The equivalent ``C2f_v2``.
        """
        half = c2f.cv1.conv.out_channels // 2
        block = cls.__new__(cls)
        nn.Module.__init__(block)
        block.c = c2f.c
        block.cv0 = copy_conv_output_rows(c2f.cv1, 0, half)
        block.cv1 = copy_conv_output_rows(c2f.cv1, half, 2 * half)
        block.cv2 = c2f.cv2
        block.m = c2f.m
        copy_routing_attributes(c2f, block)
        block.train(c2f.training)
        return block


def copy_conv_output_rows(conv: Conv, start: int, stop: int) -> Conv:
    """Return a deep copy of an Ultralytics ``Conv`` that keeps only output channels ``start:stop``.

    Every hyperparameter comes from the copy (BatchNorm ``eps``/``momentum``, activation, a fused ``forward``).
    The convolution weight/bias rows and the BatchNorm weight, bias, running mean and running variance are sliced;
    ``num_batches_tracked`` is kept as is.

    Args:
        conv: An Ultralytics ``Conv`` (``conv`` + optional ``bn`` + ``act``); a fused one (no ``bn``) works too.
        start: First output channel kept.
        stop: One past the last output channel kept.

    Returns:
        The cut copy; ``conv`` itself is untouched.
    """
    part = copy.deepcopy(conv)
    rows = slice(start, stop)
    _keep_rows(part.conv, ("weight", "bias"), rows)
    part.conv.out_channels = stop - start
    bn = getattr(part, "bn", None)
    if bn is not None:
        _keep_rows(bn, ("weight", "bias", "running_mean", "running_var"), rows)
        bn.num_features = stop - start
    return part


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


def replace_c2f_with_c2f_v2(model: nn.Module) -> int:
    """Swap every ``C2f`` inside ``model`` (recursively) for an equivalent ``C2f_v2``, in place.

    ``C2f`` and its subclasses that keep ``C2f.forward`` (such as YOLO11's ``C3k2``, whose inner blocks differ but are
    reused as they are) are swapped; subclasses with a ``forward`` of their own are left alone. ``C2f_v2`` blocks are
    left alone, so calling this again is a no-op. ``model`` itself is never replaced, only its descendants.

    Args:
        model: Any module, typically an Ultralytics ``DetectionModel``.

    Returns:
        The number of blocks swapped.
    """
    replaced = 0
    for name, child in model.named_children():
        if isinstance(child, C2f) and type(child).forward is C2f.forward:
            setattr(model, name, C2f_v2.from_c2f(child))
            replaced += 1
        else:
            replaced += replace_c2f_with_c2f_v2(child)
    return replaced
