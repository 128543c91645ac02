"""The head outputs that distillation compares, read from whatever a YOLO model returns in training mode.

In training mode Ultralytics' heads return raw outputs whose layout differs between series and tasks. A classifier's
is the same in every series, the logits ``[B, nc]``, and is read here; the detection-family layouts (per-level maps
in 8.1-8.3, dicts in 8.4, tuples with task extras, the two branches of end-to-end heads) are the series adapter's
to read (``head_branches`` of :mod:`ultralytics_prune_plugin.adapters`), which gives one ``(boxes, scores)`` pair
per branch.

:func:`head_outputs` turns any of these into one :class:`HeadOutputs`: the class logits of a classifier, or one
``(boxes, scores)`` pair per detection branch, both over all anchors of all levels. Task-specific extras (masks,
keypoints, angles) are not distilled. :func:`head_classes` reads ``nc`` from the head, the same in every series.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Optional, Tuple

import torch

from ultralytics_prune_plugin.adapters import internals

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
    return HeadOutputs(branches=internals().head_branches(preds, nc))


def head_classes(model: torch.nn.Module) -> Optional[int]:
    """The number of classes of a detection-family head (``model.model[-1].nc``), None for other heads."""
    layers = getattr(model, "model", None)
    head = layers[-1] if isinstance(layers, torch.nn.Sequential) and len(layers) else None
    return getattr(head, "nc", None)
