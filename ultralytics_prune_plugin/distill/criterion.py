"""The student's loss with distillation: a wrapper around the criterion Ultralytics builds, and its trainer hooks.

Ultralytics computes the training loss as ``model.loss(batch, preds)``, which calls ``model.criterion(preds, batch)``
(built on first use by ``model.init_criterion()``) and returns ``(loss, loss_items)``. :class:`DistillationCriterion`
takes the criterion's place on the student: it calls the criterion, runs the teacher on the same images, and adds
``distill_weight × KD`` (see :mod:`.losses`) to both the loss and the loss items, under the name ``kd_loss``. The
loss takes the term multiplied by the batch size, as the criterion does with its own items, except for classifiers,
whose criterion does not; the items feed the progress bar and ``results.csv`` (as ``train/kd_loss``). How the term
joins them (a scalar or vector loss, items in a tensor or a dict) is the series adapter's ``add_loss_term``
(:mod:`ultralytics_prune_plugin.adapters`).

The wrapper is not an ``nn.Module``, so the teacher is never part of the student's parameters, state_dict, EMA or
checkpoints; and pickling or deep-copying it yields the wrapped criterion alone (``__reduce_ex__``), so the EMA copy
and every saved checkpoint hold the plain criterion, never the teacher. Other attributes (YOLO26's ``update()``) are
passed through to the wrapped criterion.
"""

from __future__ import annotations

from typing import Any, Optional, Tuple

import torch
from torch import nn

from ultralytics_prune_plugin.adapters import internals
from ultralytics_prune_plugin.distill.losses import distillation_loss
from ultralytics_prune_plugin.distill.outputs import head_outputs

KD_NAME = "kd_loss"


class DistillationCriterion:
    """A criterion plus distillation from a teacher; a drop-in replacement for ``model.criterion``.

    Args:
        criterion: The student's own criterion (``model.init_criterion()``).
        teacher: The frozen teacher (see :func:`ultralytics_prune_plugin.distill.teacher.load_teacher`).
        weight: ``distill_weight``, the factor of the distillation term.
        nc: The student's number of classes (detection-family heads), or None for a classifier.

    Attributes:
        last_items: The wrapped criterion's own loss items of the latest batch (what the validator expects).
    """

    _OWN = ("criterion", "teacher", "weight", "nc", "last_items")

    def __init__(self, criterion: Any, teacher: nn.Module, weight: float, nc: Optional[int]):
        """Wrap ``criterion``; see the class docstring."""
        object.__setattr__(self, "criterion", criterion)
        object.__setattr__(self, "teacher", teacher)
        object.__setattr__(self, "weight", float(weight))
        object.__setattr__(self, "nc", nc)
        object.__setattr__(self, "last_items", None)

    def __call__(self, preds: Any, batch: dict) -> Tuple[torch.Tensor, Any]:
        """Return the criterion's ``(loss, loss_items)`` with the weighted distillation term appended."""
        loss, items = self.criterion(preds, batch)
        object.__setattr__(self, "last_items", items)
        images = batch["img"]
        with torch.no_grad():
            teacher_preds = self.teacher(images)
        student, teacher = head_outputs(preds, self.nc), head_outputs(teacher_preds, self.nc)
        term = self.weight * distillation_loss(student, teacher)
        scale = 1 if student.is_classifier else images.shape[0]
        return internals().add_loss_term(loss, items, KD_NAME, term, scale)

    def __getattr__(self, name: str) -> Any:
        """Pass other attributes through to the wrapped criterion (e.g. ``update`` of end-to-end losses)."""
        if name.startswith("__") or "criterion" not in self.__dict__:
            raise AttributeError(name)
        return getattr(self.criterion, name)

    def __setattr__(self, name: str, value: Any) -> None:
        """Set attributes on the wrapped criterion, except the wrapper's own."""
        if name in self._OWN:
            object.__setattr__(self, name, value)
        else:
            setattr(self.criterion, name, value)

    def __reduce_ex__(self, protocol):
        """Pickle and deep-copy as the wrapped criterion alone: copies and checkpoints never hold the teacher.

        The criterion's protocol-1 reduction (``copyreg._reconstructor`` of its class, and its state) is used because
        pickle refuses a protocol-2 ``__newobj__`` of another class than the object's; both rebuild the criterion.
        """
        return self.criterion.__reduce_ex__(1)

