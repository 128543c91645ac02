"""Distillation in a training run: when it applies, attaching it to a trainer, and the loss names it adds.

A training run distills when ``distill=True`` (the default) and ``teacher`` names a checkpoint. Everything is read
from ``trainer.args``, so ``resume`` (which restores the arguments from ``last.pt``) and Ultralytics' multi-GPU
launcher (which rebuilds the trainer from its arguments in a fresh process) distill again with the same teacher.
``teacher`` is made absolute when training starts, so the arguments saved in the checkpoints stay valid from any
working folder.

What differs between Ultralytics series (its own distillation argument, where the trainer names its loss items and
what shape they have) is asked of the series adapter (:mod:`ultralytics_prune_plugin.adapters`). The rest is the same
in every series: the criterion the student already has is wrapped (8.4 builds it early when resuming an end-to-end
model; elsewhere it is built here with ``init_criterion()``, as Ultralytics would on the first batch).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Union

from ultralytics.utils import LOGGER, RANK

from ultralytics_prune_plugin.adapters import internals
from ultralytics_prune_plugin.config import PluginArgumentError
from ultralytics_prune_plugin.distill.criterion import KD_NAME, DistillationCriterion
from ultralytics_prune_plugin.distill.losses import CLASSIFY_TEMPERATURE
from ultralytics_prune_plugin.distill.outputs import head_classes
from ultralytics_prune_plugin.distill.teacher import check_teacher_file, check_teacher_matches, load_teacher


def distillation_requested(args) -> bool:
    """Whether a run with these arguments distills: ``distill`` is True and ``teacher`` is set."""
    return bool(getattr(args, "distill", False)) and bool(getattr(args, "teacher", None))


def prepare_distillation(args) -> None:
    """Before training is set up: check the ``teacher`` file and make its path absolute (one-line errors)."""
    own = internals().distill_model(args)  # Ultralytics' own feature-distillation wrapper (8.4)
    if own:
        raise PluginArgumentError(
            f"'teacher={args.teacher}' and 'distill_model={own}' were both given: use one of them "
            "(or 'distill=False' to train with 'distill_model' alone)"
        )
    args.teacher = str(check_teacher_file(args.teacher))


def attach_distillation(trainer) -> DistillationCriterion:
    """Wrap the student's criterion with distillation from ``trainer.args.teacher``; call after ``_setup_train``.

    The teacher is loaded on the trainer's device and checked against the student; the trainer learns the ``kd_loss``
    name as its series names loss items (the adapter's ``add_loss_name``).

    Returns:
        The wrapper, now ``model.criterion``.

    Raises:
        PluginArgumentError: A one-line message naming ``teacher`` when it cannot teach this model.
    """
    args = trainer.args
    model = internals().unwrap_model(trainer.model)
    teacher = load_teacher(args.teacher, trainer.device)
    check_teacher_matches(teacher, model, args.teacher)
    criterion = getattr(model, "criterion", None)  # one the student has already (see the module docstring)
    if isinstance(criterion, DistillationCriterion):
        criterion = criterion.criterion
    if criterion is None:
        criterion = model.init_criterion()
    wrapper = DistillationCriterion(criterion, teacher, args.distill_weight, head_classes(model))
    model.criterion = wrapper
    internals().add_loss_name(trainer, KD_NAME)
    if RANK in {-1, 0}:
        LOGGER.info(f"distillation: teacher {args.teacher}, distill_weight={args.distill_weight:g}; {KD_NAME} = "
                    f"{_loss_in_words(model)}")
    return wrapper


def _loss_in_words(model) -> str:
    """What ``kd_loss`` measures for this student, for the log line."""
    head = model.model[-1]
    if head_classes(model) is None:
        return f"KL of the class softmax at T={CLASSIFY_TEMPERATURE:g}"
    box = "box smooth-L1" if getattr(head, "reg_max", 16) == 1 else "box-distribution KL"
    return f"class-score KL + {box} per anchor, weighted by the teacher's confidence"


@contextmanager
def criterion_items(trainer, wrapper: DistillationCriterion) -> Iterator[None]:
    """While validating, show the validator the criterion's own loss items (it sums the EMA model's plain loss into
    buffers shaped like ``trainer.loss_items``); restore the trainer's afterwards."""
    saved = trainer.loss_items
    if wrapper.last_items is not None:
        trainer.loss_items = wrapper.last_items
    try:
        yield
    finally:
        trainer.loss_items = saved


def label_items(loss_names, loss_items: Any = None, prefix: str = "train") -> Union[List[str], Dict[str, float]]:
    """Ultralytics' ``label_loss_items`` for a distilling trainer, any series: the names (``loss_items`` None) or the
    named values; validation has no ``kd_loss`` (the validator computes the plain loss)."""
    names = [n for n in loss_names if not (prefix == "val" and n == KD_NAME)]
    if loss_items is None:
        return [f"{prefix}/{n}" for n in names]
    pairs = internals().named_loss_items(names, loss_items)
    pairs = [(k, v) for k, v in pairs if not (prefix == "val" and k == KD_NAME)]
    return {f"{prefix}/{k}": round(float(v), 5) for k, v in pairs}
