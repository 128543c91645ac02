"""The head outputs that distillation compares, read from whatever a YOLO model returns in training mode.

In training mode Ultralytics' heads return raw outputs whose layout differs between series and tasks:

* 8.1-8.3 ``Detect``: a list of per-level tensors ``[B, 4 * reg_max + nc, H, W]`` (box distribution first, then the
  class logits); ``Segment`` returns ``(levels, mask_coefficients, protos)``, ``Pose`` ``(levels, keypoints)``,
  ``OBB`` ``(levels, angles)``; end-to-end heads (YOLOv10) ``{"one2many": levels, "one2one": levels}``.
* 8.4: a dict ``{"boxes": [B, 4 * reg_max, N], "scores": [B, nc, N], "feats": ...}`` plus task entries (mask
  coefficients, keypoints, angles); end-to-end heads (YOLO26) ``{"one2many": {...}, "one2one": {...}}``.
* ``Classify`` (every series): the logits ``[B, nc]``.

:func:`head_outputs` turns any of these into one :class:`HeadOutputs`: the class logits of a classifier, or one
``(boxes, scores)`` pair per detection branch, both over all anchors of all levels. Task-specific extras (masks,
keypoints, angles) are not distilled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Optional, Tuple

import torch

Branch = Tuple[torch.Tensor, torch.Tensor]  # (boxes [B, 4 * reg_max, N], scores [B, nc, N])


@dataclass
class HeadOutputs:
    """The distillable outputs of one forward pass.

    Attributes:
        logits: A classifier's class logits ``[B, nc]``; None for detection-family heads.
        branches: One ``(boxes, scores)`` pair per detection branch (two for end-to-end heads); empty for a classifier.
    """

    logits: Optional[torch.Tensor] = None
    branches: List[Branch] = field(default_factory=list)

    @property
    def is_classifier(self) -> bool:
        """True for a classifier's logits, False for detection-family branches."""
        return self.logits is not None

    def signature(self) -> Tuple:
        """The shapes that a teacher's outputs must share with the student's (batch size left out)."""
        if self.is_classifier:
            return ("logits", int(self.logits.shape[1]))
        return tuple((int(b.shape[1]), int(s.shape[1]), int(s.shape[2])) for b, s in self.branches)

    def describe(self) -> str:
        """In words, e.g. ``2 class logits`` or ``1 branch of 64 box outputs + 2 class scores × 84 anchors``."""
        if self.is_classifier:
            return f"{self.logits.shape[1]} class logits"
        boxes, scores = self.branches[0]
        n = len(self.branches)
        return (f"{n} branch{'es' if n > 1 else ''} of {boxes.shape[1]} box outputs + {scores.shape[1]} class scores "
                f"× {scores.shape[2]} anchors")


def head_outputs(preds: Any, nc: Optional[int]) -> HeadOutputs:
    """Extract the class logits, or the box distributions and class logits, from a training-mode model output.

    Args:
        preds: What the model returned in training mode (see the module docstring for the layouts).
        nc: The number of classes of a detection-family head, used to split 8.1-8.3's per-level tensors; may be None
            for a classifier.

    Returns:
        The outputs in one layout for every series and task.

    Raises:
        TypeError: When ``preds`` has none of the known layouts.
    """
    if isinstance(preds, torch.Tensor) and preds.ndim == 2:
        return HeadOutputs(logits=preds)
    if isinstance(preds, dict) and "one2many" in preds:
        return HeadOutputs(branches=[_branch(preds["one2many"], nc), _branch(preds["one2one"], nc)])
    return HeadOutputs(branches=[_branch(preds, nc)])


def _branch(preds: Any, nc: Optional[int]) -> Branch:
    """Return ``(boxes, scores)`` of one detection branch, each ``[B, channels, anchors]``."""
    if isinstance(preds, dict) and "boxes" in preds and "scores" in preds:
        return preds["boxes"], preds["scores"]
    if isinstance(preds, (list, tuple)) and preds:
        if all(isinstance(p, torch.Tensor) and p.ndim == 4 for p in preds):  # per-level maps of 8.1-8.3
            if nc is None:
                raise TypeError("per-level head outputs need the number of classes to be split")
            levels = torch.cat([p.flatten(2) for p in preds], 2)
            return levels[:, :-nc], levels[:, -nc:]
        return _branch(preds[0], nc)  # (levels, mask coefficients, protos), (levels, keypoints), (levels, angles)
    raise TypeError(f"unknown head output layout: {type(preds).__name__}")


def head_classes(model: torch.nn.Module) -> Optional[int]:
    """The number of classes of a detection-family head (``model.model[-1].nc``), None for other heads."""
    layers = getattr(model, "model", None)
    head = layers[-1] if isinstance(layers, torch.nn.Sequential) and len(layers) else None
    return getattr(head, "nc", None)
