"""``fast_dfl``: export the Detect head's DFL with its softmax over the last axis.

Ultralytics' ``DFL`` turns each box side's 16 logits into a distance: a softmax over the bins, then the expectation
``sum_i p_i * i`` as a fixed 1x1 convolution. It exports as ``Reshape -> Transpose -> Softmax(axis=1) -> Conv`` on a
``(1, 16, 4, anchors)`` tensor. ONNX Runtime's CPU Softmax over a non-last axis is slow: at 640 px (8400 anchors) the
DFL costs about 3 ms on a 2-core machine, for every model size, pruned or not. Being fixed, that cost also caps how
much of a channel pruning's MACs cut shows up as speed-up (see ``benchmarks/results.md``).

:func:`last_axis_dfl` swaps in the same maths arranged for the last axis, ``Reshape -> Transpose -> Softmax(-1) ->
MatMul`` with the bin values ``0..15`` as the matrix. The outputs agree with Ultralytics' to float rounding (about
1e-5 on random logits), and every ONNX runtime supports both operators. It is applied only while an ONNX export
traces the model (``fast_dfl=True``); the PyTorch model, training and validation never see it.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch


def last_axis_dfl_forward(self, x: torch.Tensor) -> torch.Tensor:
    """``DFL.forward`` computed with the softmax over the last axis (same outputs as Ultralytics' version).

    Args:
        self: An Ultralytics ``DFL`` module (``c1`` bins; ``conv.weight`` holds the bin values).
        x: Box logits of shape ``(batch, 4 * c1, anchors)``.

    Returns:
        Expected distances of shape ``(batch, 4, anchors)``.
    """
    b, _, a = x.shape
    probabilities = x.view(b, 4, self.c1, a).transpose(2, 3).softmax(-1)  # (b, 4, anchors, bins)
    bins = self.conv.weight.view(self.c1, 1).to(probabilities.dtype)
    return (probabilities @ bins).view(b, 4, a)


@contextmanager
def last_axis_dfl(enabled: bool = True) -> Iterator[None]:
    """Within the block, every Ultralytics ``DFL`` runs :func:`last_axis_dfl_forward` (no-op when not ``enabled``).

    Args:
        enabled: Apply the swap; ``False`` leaves Ultralytics' DFL untouched (convenient for ``fast_dfl=False``).
    """
    if not enabled:
        yield
        return
    from ultralytics.nn.modules.block import DFL

    original = DFL.forward
    DFL.forward = last_axis_dfl_forward
    try:
        yield
    finally:
        DFL.forward = original
