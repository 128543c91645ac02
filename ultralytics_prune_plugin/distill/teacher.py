"""The teacher: loading it, running it, and checking that it can teach a given student.

The teacher runs in training mode, so that its head returns the same raw layout as the student's, but with every
BatchNorm (and Dropout) in eval mode: it normalises with its own running statistics, never updates them, and gives
its actual predictions. It never has gradients.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import torch
from torch import nn

from ultralytics_prune_plugin.config import PluginArgumentError
from ultralytics_prune_plugin.distill.outputs import HeadOutputs, head_classes, head_outputs

_FROZEN_IN_TRAINING = (nn.modules.batchnorm._BatchNorm, nn.modules.dropout._DropoutNd)
REQUIREMENT = "'teacher' must be a .pt checkpoint with the model's task and classes"


def freeze_statistics(model: nn.Module) -> nn.Module:
    """Put ``model`` in training mode with every BatchNorm and Dropout in eval mode; return it."""
    model.train()
    for module in model.modules():
        if isinstance(module, _FROZEN_IN_TRAINING):
            module.eval()
    return model


@contextmanager
def statistics_frozen(model: nn.Module) -> Iterator[nn.Module]:
    """Run ``model`` as :func:`freeze_statistics` sets it, then restore every module's mode."""
    modes = {module: module.training for module in model.modules()}
    try:
        yield freeze_statistics(model)
    finally:
        for module, training in modes.items():
            module.training = training


def check_teacher_file(value: str) -> Path:
    """Return the absolute path of the ``teacher`` checkpoint; a one-line PluginArgumentError when it is not a file."""
    path = Path(value).expanduser()
    if not path.is_file():
        raise PluginArgumentError(f"'teacher={value}' does not exist: {REQUIREMENT}.")
    return path.resolve()


def load_teacher(value: str, device: Optional[torch.device] = None) -> nn.Module:
    """Load the ``teacher`` checkpoint as a frozen float32 model on ``device`` (see the module docstring).

    Raises:
        PluginArgumentError: A one-line message when the file does not exist or holds no model.
    """
    from ultralytics_prune_plugin.adapters import internals

    path = check_teacher_file(value)
    try:
        model, _ = internals().load_weights(path)
    except Exception as e:  # any unpickling or format error: the file is not an Ultralytics checkpoint
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise PluginArgumentError(f"'teacher={value}' could not be loaded ({reason}): {REQUIREMENT}.") from None
    model = model.float()
    if device is not None:
        model = model.to(device)
    for p in model.parameters():
        p.requires_grad_(False)
    return freeze_statistics(model)


def probe_outputs(model: nn.Module, nc: Optional[int]) -> HeadOutputs:
    """The head outputs of ``model`` on a blank image, its modes and statistics left as they were."""
    stride = int(max(getattr(model, "stride", torch.tensor([32.0])).max().item(), 32))
    conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    param = next(model.parameters())
    image = torch.zeros(1, conv.in_channels, 2 * stride, 2 * stride, device=param.device, dtype=param.dtype)
    with torch.no_grad(), statistics_frozen(model):
        return head_outputs(model(image), nc)


def check_teacher_matches(teacher: nn.Module, student: nn.Module, value: str) -> None:
    """Check that ``teacher`` has the student's task, classes and head outputs.

    Raises:
        PluginArgumentError: A one-line message naming ``teacher`` when they differ.
    """
    from ultralytics.nn.tasks import guess_model_task

    nc = head_classes(student)
    student_task, teacher_task = guess_model_task(student), guess_model_task(teacher)
    mine = probe_outputs(student, nc)
    try:
        theirs = probe_outputs(teacher, head_classes(teacher))
    except (TypeError, RuntimeError) as e:
        raise PluginArgumentError(f"'teacher={value}' could not be run ({e}): {REQUIREMENT}.") from None
    student_nc, teacher_nc = _classes(mine), _classes(theirs)
    if student_task != teacher_task or student_nc != teacher_nc:
        raise PluginArgumentError(
            f"'teacher={value}' is a {teacher_task} model with {teacher_nc} classes, but the model is a {student_task} "
            f"model with {student_nc} classes: {REQUIREMENT}."
        )
    if mine.signature() != theirs.signature():
        raise PluginArgumentError(
            f"'teacher={value}' head outputs ({theirs.describe()}) differ from the model's ({mine.describe()}): "
            f"{REQUIREMENT} and the same head layout (box outputs, strides, branches)."
        )


def _classes(outputs: HeadOutputs) -> int:
    """The number of classes that head outputs predict."""
    return int(outputs.logits.shape[1] if outputs.is_classifier else outputs.branches[0][1].shape[1])
