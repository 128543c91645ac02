"""Gradients of the task's training loss, for the importance criteria that need them (``importance=taylor``).

Torch-Pruning's ``GroupTaylorImportance`` scores a channel by ``|w * dL/dw|`` summed over its group, reading the
``.grad`` of every parameter. :class:`LossGradients` fills them: a few batches of the training split, loaded by the
task's own Ultralytics trainer without augmentation, through the model's own loss (``model.loss(batch)``). BatchNorm
layers stay in eval mode, so their running statistics do not move; the model's training flags, ``args`` and cached
criterion are restored afterwards.
"""

from __future__ import annotations

import tempfile
from typing import Any, Dict, Optional

import torch
from torch import nn

from ultralytics_prune_plugin.nn.structure import forget_cached_state

# Batches of the training split whose loss gradients are summed.
GRADIENT_BATCHES = 8


class LossGradients:
    """Fill ``.grad`` of a model's parameters from its training loss on a few batches of the run's data.

    Args:
        task: The Ultralytics task.
        overrides: Arguments for the task's trainer: ``model`` (only named), ``data``, ``imgsz``, ``batch``, ``device``,
            ``workers``.
        batches: How many batches to sum the gradients over.
    """

    def __init__(self, task: str, overrides: Dict[str, Any], batches: int = GRADIENT_BATCHES):
        self.task = task
        self.overrides = overrides
        self.batches = batches
        self._trainer = None
        self._folder: Optional[tempfile.TemporaryDirectory] = None

    def trainer(self):
        """The task's trainer, built once (in a temporary folder: it writes ``args.yaml`` on creation)."""
        if self._trainer is None:
            from ultralytics_prune_plugin.engine.trainer import prune_aware_trainers

            self._folder = tempfile.TemporaryDirectory(prefix="prune-gradients-")
            overrides = {
                **self.overrides,
                "task": self.task,
                "mode": "train",
                "project": self._folder.name,
                "name": "gradients",
                "exist_ok": True,
                "plots": False,
            }
            self._trainer = prune_aware_trainers()[self.task](overrides=overrides)
        return self._trainer

    def __call__(self, model: nn.Module) -> None:
        """Zero the gradients of ``model``, then accumulate those of its loss on :attr:`batches` batches."""
        trainer = self.trainer()
        trainer.model = model  # the dataset reads the stride from it
        train = getattr(trainer, "trainset", None) or trainer.data["train"]  # 8.1/8.2 keep it apart from the data
        loader = trainer.get_dataloader(train, batch_size=trainer.args.batch, rank=-1, mode="val")  # no augmentation
        flags = {m: m.training for m in model.modules()}
        saved_args = getattr(model, "args", None)
        model.args = trainer.args  # the loss reads its gains (box, cls, dfl, ...) from here
        forget_cached_state(model)
        try:
            model.train()
            for m in model.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
            model.zero_grad(set_to_none=True)
            with torch.enable_grad():
                for i, batch in enumerate(loader):
                    if i == self.batches:
                        break
                    loss, _ = model.loss(trainer.preprocess_batch(batch))
                    loss.sum().backward()
        finally:
            for m, training in flags.items():
                m.training = training
            model.args = saved_args
            forget_cached_state(model)

    def close(self) -> None:
        """Remove the temporary folder."""
        if self._folder is not None:
            self._folder.cleanup()
            self._folder = None


def copy_gradients(source: nn.Module, target: nn.Module) -> None:
    """Give ``target`` (a deep copy of ``source``) the gradients of ``source``: ``deepcopy`` drops ``.grad``."""
    for a, b in zip(source.parameters(), target.parameters()):
        b.grad = None if a.grad is None else a.grad.detach().clone()

