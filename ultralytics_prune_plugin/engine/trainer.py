"""The trainers that the plugin puts in place of Ultralytics' own, one per task it supports.

Each behaves exactly like the Ultralytics trainer of its task except in three ways:

* A pruned model is trained as it is. Ultralytics rebuilds every model from its yaml and copies in only the weights
  whose shapes match, which silently undoes pruning; these trainers keep the loaded module instead.
* With ``sparse=True`` they add the Network Slimming L1 penalty on prunable BatchNorm scales (see
  :mod:`ultralytics_prune_plugin.pruning.sparsity`), report their sparsity every epoch and plot it.
* With ``distill=True`` and a ``teacher`` checkpoint they add a distillation term on the head outputs to the loss,
  reported as ``kd_loss`` (see :mod:`ultralytics_prune_plugin.distill`).

The behaviour lives in :class:`PruneAwareTrainerMixin`; each task gets a small named subclass, importable by module
path, so that Ultralytics' multi-GPU launcher, which rebuilds the trainer in a fresh process from its class path and
arguments, rebuilds the same one with the same settings.
"""

from __future__ import annotations

from copy import deepcopy
from typing import Dict

from torch import nn
from ultralytics.models.yolo.classify import ClassificationTrainer
from ultralytics.models.yolo.detect import DetectionTrainer
from ultralytics.models.yolo.obb import OBBTrainer
from ultralytics.models.yolo.pose import PoseTrainer
from ultralytics.models.yolo.segment import SegmentationTrainer
from ultralytics.utils import LOGGER, RANK

from ultralytics_prune_plugin.nn.structure import forget_cached_state, is_restructured
from ultralytics_prune_plugin.tasks import model_kpt_shape


class PruneAwareTrainerMixin:
    """Keeps pruned networks intact and supports ``sparse=True`` and distillation; mix in before an Ultralytics task
    trainer."""

    sparsity = None  # the sparse-training helper, set up in _setup_train when args.sparse is True
    distillation = None  # the student's criterion with distillation, set up in _setup_train when the run distills

    def get_model(self, cfg=None, weights=None, verbose=True):
        """Return ``weights`` itself when it is a pruned network; otherwise build from ``cfg`` as Ultralytics does."""
        if isinstance(weights, nn.Module) and is_restructured(weights):
            nc = self.data["nc"]
            if getattr(weights, "nc", nc) != nc:
                raise ValueError(
                    f"the pruned model predicts {weights.nc} classes but 'data={self.args.data}' has {nc}; "
                    "a pruned model can only be fine-tuned on data with the same classes"
                )
            kpt_shape, data_kpt_shape = model_kpt_shape(weights), self.data.get("kpt_shape")
            if kpt_shape is not None and data_kpt_shape is not None and list(kpt_shape) != list(data_kpt_shape):
                raise ValueError(
                    f"the pruned model predicts keypoints of shape {list(kpt_shape)} but 'data={self.args.data}' has "
                    f"kpt_shape {list(data_kpt_shape)}; a pruned pose model keeps its keypoints"
                )
            if verbose and RANK == -1:
                params = sum(p.numel() for p in weights.parameters())
                LOGGER.info(f"Keeping the pruned network as it is ({params:,} parameters); not rebuilding it from yaml")
            model = forget_cached_state(deepcopy(weights).float())
            for p in model.parameters():
                p.requires_grad_(True)
            return self.adjust_kept_model(model)
        return super().get_model(cfg=cfg, weights=weights, verbose=verbose)

    def adjust_kept_model(self, model: nn.Module) -> nn.Module:
        """Apply the task trainer's training settings to a kept pruned model (none for most tasks)."""
        return model

    def _setup_train(self, *args, **kwargs):
        """Set up training as Ultralytics does, then attach the sparsity penalty when ``sparse=True`` and the
        distillation term when ``distill=True`` and ``teacher`` is set (after the EMA copy is made, so the EMA model
        and the checkpoints keep the plain criterion)."""
        from ultralytics_prune_plugin.distill.training import distillation_requested, prepare_distillation

        if isinstance(self.model, nn.Module):
            forget_cached_state(self.model)
        distill = distillation_requested(self.args)
        if distill:
            prepare_distillation(self.args)  # the teacher file exists; its path is made absolute for the checkpoints
        if self.args.sparse:  # optimizer=auto: SGD, which Network Slimming's L1 term is designed for
            from ultralytics_prune_plugin.pruning.sparsity import choose_sparse_optimizer

            choose_sparse_optimizer(self.args)
        super()._setup_train(*args, **kwargs)
        if self.args.sparse:
            from ultralytics_prune_plugin.pruning.sparsity import attach_sparse_training

            self.sparsity = attach_sparse_training(self)
        if distill:
            from ultralytics_prune_plugin.distill.training import attach_distillation

            self.distillation = attach_distillation(self)

    def validate(self):
        """Validate as Ultralytics does; in a distilling run the validator sees the criterion's own loss items."""
        if self.distillation is None:
            return super().validate()
        from ultralytics_prune_plugin.distill.training import criterion_items

        with criterion_items(self, self.distillation):
            return super().validate()

    def label_loss_items(self, loss_items=None, prefix="train"):
        """Name the loss items as Ultralytics does, with ``kd_loss`` in training when the run distills."""
        if self.distillation is None:
            return super().label_loss_items(loss_items, prefix)
        from ultralytics_prune_plugin.distill.training import label_items

        return label_items(self.loss_names, loss_items, prefix)

    @property
    def group_sparse(self) -> bool:
        """``sparse=True method=group``: group sparse learning, which trains the unsplit blocks."""
        return bool(self.args.sparse) and self.args.method == "group"

    def setup_model(self, *args, **kwargs):
        """Build or load the model as Ultralytics does; for group sparse learning, unsplit its split blocks."""
        ckpt = super().setup_model(*args, **kwargs)
        if self.group_sparse and isinstance(self.model, nn.Module):
            from ultralytics_prune_plugin.nn.c2f_v2 import unsplit_blocks

            unsplit_blocks(self.model)
        return ckpt

    def resume_training(self, ckpt):
        """Resume as Ultralytics does; a group sparse run's EMA is unsplit like its model first."""
        if self.group_sparse and isinstance((ckpt or {}).get("ema"), nn.Module):
            from ultralytics_prune_plugin.nn.c2f_v2 import unsplit_blocks

            unsplit_blocks(ckpt["ema"])
        return super().resume_training(ckpt)

    def save_model(self):
        """Save checkpoints as Ultralytics does; a group sparse run saves stock blocks (loadable without the plugin)."""
        ema = getattr(self, "ema", None)
        if not (self.group_sparse and ema is not None):
            return super().save_model()
        from ultralytics_prune_plugin.nn.c2f_v2 import restore_stock_blocks

        unsplit = ema.ema
        stock = deepcopy(unsplit)
        restore_stock_blocks(stock)
        ema.ema = stock
        try:
            return super().save_model()
        finally:
            ema.ema = unsplit

    def save_metrics(self, metrics):
        """Save the epoch's metrics to results.csv, with the BatchNorm sparsity columns in a sparse run."""
        if self.sparsity is not None:
            metrics = {**metrics, **self.sparsity.epoch_metrics()}
        super().save_metrics(metrics)


class PruneAwareDetectionTrainer(PruneAwareTrainerMixin, DetectionTrainer):
    """``DetectionTrainer`` that keeps pruned networks intact, supports ``sparse=True`` and distills."""


class PruneAwareSegmentationTrainer(PruneAwareTrainerMixin, SegmentationTrainer):
    """``SegmentationTrainer`` that keeps pruned networks intact, supports ``sparse=True`` and distills."""


class PruneAwarePoseTrainer(PruneAwareTrainerMixin, PoseTrainer):
    """``PoseTrainer`` that keeps pruned networks intact, supports ``sparse=True`` and distills."""


class PruneAwareOBBTrainer(PruneAwareTrainerMixin, OBBTrainer):
    """``OBBTrainer`` that keeps pruned networks intact, supports ``sparse=True`` and distills."""


class PruneAwareClassificationTrainer(PruneAwareTrainerMixin, ClassificationTrainer):
    """``ClassificationTrainer`` that keeps pruned networks intact, supports ``sparse=True`` and distills."""

    def adjust_kept_model(self, model: nn.Module) -> nn.Module:
        """Set the dropout rate of ``dropout=`` on the kept model, as Ultralytics does on the models it builds."""
        if self.args.dropout:
            for module in model.modules():
                if isinstance(module, nn.Dropout):
                    module.p = self.args.dropout
        return model


def prune_aware_trainers() -> Dict[str, type]:
    """Return the plugin's trainer for each task it supports, keyed by Ultralytics task name."""
    return {
        "detect": PruneAwareDetectionTrainer,
        "segment": PruneAwareSegmentationTrainer,
        "pose": PruneAwarePoseTrainer,
        "obb": PruneAwareOBBTrainer,
        "classify": PruneAwareClassificationTrainer,
    }
