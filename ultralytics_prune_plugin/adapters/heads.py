"""Reading the raw (training-mode) outputs of Ultralytics' detection-family heads: the parts both series adapters use.

A series adapter's ``head_branches(preds, nc)`` passes :func:`branches` a reader for the layout of one branch in its
series (:func:`level_maps` for the per-level maps of 8.1-8.3, a dict reader of its own for 8.4); this module handles
what every series shares around it: the two branches of end-to-end heads and the task extras that follow a branch.
"""

from __future__ import annotations

from typing import Any, Callable, List, Optional, Tuple

import torch

Branch = Tuple[torch.Tensor, torch.Tensor]  # (boxes [B, 4 * reg_max, N], scores [B, nc, N])


def branches(preds: Any, read: Callable[[Any], Optional[Branch]]) -> List[Branch]:
    """Return ``(boxes, scores)`` of every detection branch of a training-mode head output.

    Args:
        preds: The head output: one branch, or ``{"one2many": branch, "one2one": branch}`` (end-to-end heads); a
            branch may come first in a tuple with task extras (``Segment``, ``Pose``, ``OBB``), which are skipped.
        read: Returns ``(boxes, scores)`` of one branch in the series' layout, or None for anything else.

    Raises:
        TypeError: When a branch has no layout that ``read`` knows.
    """
    if isinstance(preds, dict) and "one2many" in preds:
        return [_branch(preds["one2many"], read), _branch(preds["one2one"], read)]
    return [_branch(preds, read)]


def _branch(preds: Any, read: Callable[[Any], Optional[Branch]]) -> Branch:
    """Return ``(boxes, scores)`` of one detection branch, each ``[B, channels, anchors]``."""
    found = read(preds)
    if found is not None:
        return found
    if isinstance(preds, (list, tuple)) and preds:
        return _branch(preds[0], read)  # (branch, mask coefficients, protos), (branch, keypoints), (branch, angles)
    raise TypeError(f"unknown head output layout: {type(preds).__name__}")


def level_maps(preds: Any, nc: Optional[int]) -> Optional[Branch]:
    """``(boxes, scores)`` over all anchors of per-level maps ``[B, 4 * reg_max + nc, H, W]`` (box distribution first,
    then the class logits; 8.1-8.3's ``Detect``); None when ``preds`` is not a list of such maps.

    Raises:
        TypeError: When ``nc`` is None (the maps cannot be split without it).
    """
    if not (isinstance(preds, (list, tuple)) and preds):
        return None
    if not all(isinstance(p, torch.Tensor) and p.ndim == 4 for p in preds):
        return None
    if nc is None:
        raise TypeError("per-level head outputs need the number of classes to be split")
    levels = torch.cat([p.flatten(2) for p in preds], 2)
    return levels[:, :-nc], levels[:, -nc:]
