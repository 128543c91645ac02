"""Batches of the run's training data, for what a prune run computes between pruning and fine-tuning.

:class:`TrainingBatches` loads them with the task's own Ultralytics trainer (its dataset, augmentation and
``preprocess_batch``) and offers two uses:

* :meth:`~TrainingBatches.fill_gradients`: the gradients of the task's training loss (``model.loss(batch)``) on a few
  unaugmented batches, for ``importance=taylor`` (Torch-Pruning's ``GroupTaylorImportance`` scores a channel by
  ``|w * dL/dw|`` over its group). BatchNorm layers stay in eval mode, so their statistics do not move.
* :meth:`~TrainingBatches.recalibrate_batchnorm`: new BatchNorm running statistics after pruning
  (``recalibrate_bn=True``). Removing channels changes what every following layer sees, so the statistics gathered
  before pruning no longer fit; re-estimating them on training batches (augmented as in training, no gradients)
  recovers much of the accuracy lost at once, before any fine-tuning.

The model's training flags, ``args`` and cached criterion are restored afterwards.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, Optional

import torch
from torch import nn
from torch.optim.swa_utils import update_bn

from ultralytics_prune_plugin.adapters import internals
from ultralytics_prune_plugin.nn.structure import forget_cached_state

# Batches of the training split whose loss gradients are summed (Taylor importance).
GRADIENT_BATCHES = 8
# Batches that BatchNorm statistics are re-estimated on after pruning.
RECALIBRATION_BATCHES = 32


class TrainingBatches:
    """Batches of the run's training split, loaded by the task's trainer: loss gradients and BatchNorm statistics.

    Args:
        task: The Ultralytics task.
        overrides: Arguments for the task's trainer: ``model`` (only named), ``data``, ``imgsz``, ``batch``, ``device``,
            ``workers``.
        batches: How many batches to sum the gradients over, and to re-estimate BatchNorm statistics on.
        folder: Where the trainer writes its ``args.yaml`` (removed by :meth:`close`, and replaced when it exists);
            None for a temporary folder.
    """

    def __init__(self, task: str, overrides: Dict[str, Any], batches: int = GRADIENT_BATCHES,
                 folder: Optional[Path] = None):
        self.task = task
        self.overrides = overrides
        self.batches = batches
        self.folder = Path(folder) if folder is not None else None
        self._trainer = None
        self._temporary: Optional[tempfile.TemporaryDirectory] = None

    def trainer(self):
        """The task's trainer, built once (in :attr:`folder`: it writes ``args.yaml`` on creation)."""
        if self._trainer is None:
            from ultralytics_prune_plugin.engine.trainer import prune_aware_trainers

            if self.folder is None:
                self._temporary = tempfile.TemporaryDirectory(prefix="prune-batches-")
                self.folder = Path(self._temporary.name) / "batches"
            shutil.rmtree(self.folder, ignore_errors=True)  # left by a killed run
            overrides = {
                **self.overrides,
                "task": self.task,
                "mode": "train",
                "project": str(self.folder.parent),
                "name": self.folder.name,
                "exist_ok": True,
                "plots": False,
            }
            self._trainer = prune_aware_trainers()[self.task](overrides=overrides)
        return self._trainer

    def fill_gradients(self, model: nn.Module) -> None:
        """Zero the gradients of ``model``, then accumulate those of its loss on :attr:`batches` batches."""
        trainer = self.trainer()
        trainer.model = model  # the dataset reads the stride from it
        train = internals().train_images(trainer)
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

    @torch.no_grad()
    def recalibrate_batchnorm(self, model: nn.Module, batches: int = RECALIBRATION_BATCHES) -> None:
        """Re-estimate the running mean and variance of every BatchNorm of ``model`` on ``batches`` augmented
        training batches (a plain average over them, torch's ``update_bn``); no weight changes."""
        rng = _RandomState(self.overrides.get("seed", 0))  # the same augmented batches every time
        flags = {m: m.training for m in model.modules()}
        try:
            trainer = self.trainer()  # building it seeds the generators too
            rng.seed()
            trainer.model = model
            train = internals().train_images(trainer)
            loader = trainer.get_dataloader(train, batch_size=trainer.args.batch, rank=-1, mode="train")
            images = (trainer.preprocess_batch(batch)["img"] for batch in itertools.islice(loader, batches))
            update_bn(images, model)
        finally:
            rng.restore()
            for m, training in flags.items():  # update_bn leaves every module in the model's mode; restore each one's
                m.training = training
            forget_cached_state(model)

    def close(self) -> None:
        """Remove the trainer's folder."""
        if self._temporary is not None:
            self._temporary.cleanup()
            self._temporary = self.folder = None
        elif self.folder is not None:  # also the one a killed run left, when this run never needed it
            shutil.rmtree(self.folder, ignore_errors=True)


class _RandomState:
    """Seed Python's, NumPy's and torch's generators (augmentation draws from them) and restore them afterwards."""

    def __init__(self, seed: int):
        import random

        import numpy as np

        self._states = (random.getstate(), np.random.get_state(), torch.get_rng_state())
        self._seed = seed
        self.seed()

    def seed(self) -> None:
        """(Re)seed all three generators."""
        import random

        import numpy as np

        random.seed(self._seed)
        np.random.seed(self._seed)
        torch.manual_seed(self._seed)

    def restore(self) -> None:
        import random

        import numpy as np

        random.setstate(self._states[0])
        np.random.set_state(self._states[1])
        torch.set_rng_state(self._states[2])


def copy_gradients(source: nn.Module, target: nn.Module) -> None:
    """Give ``target`` (a deep copy of ``source``) the gradients of ``source``: ``deepcopy`` drops ``.grad``."""
    for a, b in zip(source.parameters(), target.parameters()):
        b.grad = None if a.grad is None else a.grad.detach().clone()

