"""What a prune run measures and trains: MACs, params and the task's metric of a model, and each step's fine-tune.

Everything goes through Ultralytics' own parts: the task's validator (on a deep copy, because validation fuses
Conv+BN in place) and the plugin's prune-aware trainer of the task (an ordinary Ultralytics training run in
``step_k/``, which keeps the pruned network instead of rebuilding it from yaml and, with ``distill=True``, learns
from the unpruned input or the given ``teacher``).
"""

from __future__ import annotations

import time
from copy import deepcopy
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from torch import nn

from ultralytics_prune_plugin.adapters import internals
from ultralytics_prune_plugin.config import plugin_keys
from ultralytics_prune_plugin.engine.checkpoint import load_model, save_checkpoint
from ultralytics_prune_plugin.engine.run_config import RunConfig, finetune_defaults
from ultralytics_prune_plugin.report.console import MODEL_SUMMARY, SPEED, hidden, quiet
from ultralytics_prune_plugin.tasks import read_metrics

# Keys that describe the prune run itself and are not passed on to the fine-tunes.
# The folder of the run where the trainer that loads training batches writes its arguments; removed when the run ends.
BATCHES_FOLDER = ".batches"
# The precision of the run's artefacts (int8 / quantize) is not passed on either: 8.4 would train with QAT.
RUN_ONLY_KEYS = {"mode", "model", "resume", "project", "name", "exist_ok", "save_dir", "cfg", "int8", "quantize",
                 *plugin_keys()}


class Evaluator:
    """Measures models and fine-tunes them for one prune run.

    Args:
        config: The run's resolved arguments.
        validator_class: Ultralytics' validator class of the task (from the model's ``task_map``).
        save_dir: The run folder; validations go to ``val/<name>``, fine-tunes to ``step_k/``.
    """

    def __init__(self, config: RunConfig, validator_class: type, save_dir: Path):
        self.config = config
        self.args = config.args
        self.validator_class = validator_class
        self.save_dir = Path(save_dir)
        self.baseline_channels: Optional[int] = None  # prunable output channels of the first model measured
        self.last_macs = 0.0  # MACs of the model measured last
        self._batches = None  # TrainingBatches, built when first needed

    def measure(self, model: nn.Module, name: str, weights: Optional[Path] = None) -> Dict[str, Any]:
        """MACs, params, fraction of prunable channels kept and (with data) the task's metric of ``model``."""
        from ultralytics_prune_plugin.pruning.counting import count_macs_params
        from ultralytics_prune_plugin.pruning.policy import prunable_convs

        macs, params = count_macs_params(model, self.args.imgsz)
        channels = sum(conv.out_channels for _, conv in prunable_convs(model))
        if self.baseline_channels is None:
            self.baseline_channels = channels
        self.last_macs = macs
        record = {"macs": macs, "params": params, "channels_kept": channels / self.baseline_channels}
        if weights is not None:
            record["weights"] = str(weights)
        record.update(self.validate(model, name))
        return record

    def validate(self, model: nn.Module, name: str, batch: Optional[int] = None, rect: bool = True) -> Dict[str, Any]:
        """Validate a deep copy of ``model`` on the run's data; ``{}`` when the run has no data.

        Returns:
            ``{"map50", "map50_95"}``: the task's secondary and main metric (:mod:`.tasks`; for classify top-5 and
            top-1 accuracy).
        """
        if self.config.data is None:
            return {}
        args = {
            "task": self.config.task,
            "mode": "val",
            "data": self.args.data,
            "imgsz": self.args.imgsz,
            "batch": batch or self.args.batch,
            "device": self.args.device,
            "workers": self.args.workers,
            "split": self.args.split,
            "conf": self.args.conf,
            "iou": self.args.iou,
            "rect": rect,
            "plots": False,
            "verbose": False,
            **internals().val_precision(self.args),  # half=, where the series has the key
        }
        validator = self.validator_class(args=args, save_dir=self.save_dir / "val" / name)
        with hidden(MODEL_SUMMARY, SPEED):  # the run logs the model's size itself; the speed of a check is noise
            stats = validator(model=deepcopy(model).float().eval())
        return read_metrics(self.config.task, stats)  # the task's metrics under the report's keys

    def training_batches(self):
        """The run's :class:`~ultralytics_prune_plugin.engine.training_batches.TrainingBatches` (built once), for
        Taylor importance and BatchNorm recalibration; None when the run has no data."""
        if self.config.data is None:
            return None
        if self._batches is None:
            from ultralytics_prune_plugin.engine.training_batches import TrainingBatches

            keys = ("data", "imgsz", "batch", "device", "workers", "seed")
            overrides = {key: getattr(self.args, key) for key in keys}
            self._batches = TrainingBatches(self.config.task, {**overrides, "model": str(self.args.model)},
                                            folder=self.save_dir / BATCHES_FOLDER)
        return self._batches

    def recalibrate(self, model: nn.Module) -> bool:
        """With ``recalibrate_bn`` and data, re-estimate the BatchNorm statistics of a freshly pruned ``model``."""
        batches = self.training_batches() if self.args.recalibrate_bn else None
        if batches is None:
            return False
        with quiet():  # internal work: its loader's lines would repeat the fine-tune's
            batches.recalibrate_batchnorm(model)
        return True

    def close(self) -> None:
        """Remove the training batches' folder (``.batches/`` in the run folder)."""
        if self._batches is not None:
            self._batches.close()

    def fine_tune(self, model: nn.Module, k: int, weights_dir: Path, lr0: Optional[float] = None,
                  name: Optional[str] = None) -> Tuple[nn.Module, float]:
        """Fine-tune ``model`` as an ordinary Ultralytics training run in ``step_k/`` (or ``name``, with ``lr0`` when
        given); return its best model and the seconds it took. It starts from ``weights/step_k_pruned.pt``, so a
        fresh process (multi-GPU) rebuilds the same pruned model from that file."""
        from ultralytics_prune_plugin.engine.trainer import prune_aware_trainers

        start_weights = weights_dir / f"step_{k}_pruned.pt"
        save_checkpoint(model, start_weights, self.config.train_args(), {"stage": f"step {k} before fine-tune"})
        overrides = {
            **finetune_defaults(self.args.epochs, self.args.batch),  # the keys given now win
            **{key: v for key, v in self.config.user_overrides.items() if key not in RUN_ONLY_KEYS},
            **self.config.run_keys(),  # recorded and printed with the run's values (rate, iterative_steps, ...)
            "task": self.config.task,
            "mode": "train",
            "model": str(start_weights),
            "data": self.args.data,
            "epochs": self.args.epochs,
            "imgsz": self.args.imgsz,
            **({"lr0": lr0} if lr0 is not None else {}),
            "project": str(self.save_dir),
            "name": name or f"step_{k}",
            "exist_ok": True,  # step_k/ belongs to this run
            "sparse": False,
            **self.distill_overrides(weights_dir),
        }
        started = time.time()
        trainer = prune_aware_trainers()[self.config.task](overrides=overrides)
        trainer.train()
        seconds = time.time() - started
        best = trainer.best if trainer.best.exists() else trainer.last
        return load_model(best), seconds

    def distill_overrides(self, weights_dir: Path) -> Dict[str, Any]:
        """The distillation keys of a fine-tune: with ``distill=True`` it learns from ``teacher`` when given, else
        from the run's unpruned input, ``weights/baseline.pt`` (an absolute path, so the arguments saved in the
        fine-tune's checkpoints resume from anywhere)."""
        if not self.args.distill:
            return {"distill": False, "teacher": None, "distill_weight": self.args.distill_weight}
        teacher = self.args.teacher or str((Path(weights_dir) / "baseline.pt").resolve())
        return {"distill": True, "teacher": teacher, "distill_weight": self.args.distill_weight}
