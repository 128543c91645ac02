"""Adapter for Ultralytics 8.1.x and 8.2.x: the compatibility fixes these series need on today's stack, their
internals' names and the shapes of what those return (the two series share them all).

Fixes (each applied only when its condition holds, and only inside Ultralytics' own modules):

* torch >= 2.6 loads with ``weights_only=True``, so every checkpoint load of 8.1 fails: Ultralytics' own load call
  sites (model loading, ``strip_optimizer``, the tuner) get ``weights_only=False``, as later releases pass.
* numpy >= 2.4 has no ``np.trapz`` (used for mAP): Ultralytics' metrics get ``np.trapezoid`` under that name.
* torch >= 2.9 exports ONNX with the dynamo exporter by default, and 8.1's opset guess lands on 9 with newer torch:
  its exporter gets the TorchScript exporter and opset 17.

Then ``activate()`` registers the plugin (:mod:`ultralytics_prune_plugin.integration.registration`).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
from torch import nn

from ultralytics_prune_plugin.adapters import heads


def load_yaml(path) -> Dict[str, Any]:
    """Read a YAML file the way Ultralytics does."""
    from ultralytics.utils import yaml_load

    return yaml_load(path)


def unwrap_model(model: nn.Module) -> nn.Module:
    """Return the model inside a DataParallel/DistributedDataParallel wrapper (or the model itself)."""
    from ultralytics.utils.torch_utils import de_parallel

    return de_parallel(model)


def load_weights(path) -> Tuple[nn.Module, Dict[str, Any]]:
    """Load the model of an Ultralytics checkpoint (EMA preferred, float32) and the checkpoint dict."""
    from ultralytics.nn.tasks import attempt_load_one_weight

    return attempt_load_one_weight(str(path))


def after_cfg_print(extra: Callable[[str], None]) -> None:
    """Make ``yolo cfg`` call ``extra(yaml_file)`` after Ultralytics printed a YAML file."""
    import ultralytics.cfg as cfg

    from ultralytics_prune_plugin.adapters.patching import patch_attr

    original = cfg.yaml_print

    def yaml_print(yaml_file):
        original(yaml_file)
        extra(yaml_file)

    patch_attr(cfg, "yaml_print", yaml_print)


def val_precision(args) -> Dict[str, Any]:
    """The precision argument of a validation with the run's ``args``: ``half`` (a key of 8.1 and 8.2)."""
    return {"half": args.half}


def train_images(trainer) -> Any:
    """The training split as the trainer's ``get_dataloader`` takes it: 8.1/8.2 keep it apart from ``trainer.data``,
    as ``trainer.trainset``."""
    return trainer.trainset


def onnxruntime_session(backend) -> Any:
    """The ONNX Runtime session that an ``AutoBackend`` runs, or None when it runs another format (8.1/8.2 flag the
    format as ``backend.onnx`` and keep the session as ``backend.session``)."""
    return getattr(backend, "session", None) if getattr(backend, "onnx", False) else None


def head_branches(preds: Any, nc: Optional[int]) -> List[heads.Branch]:
    """``(boxes [B, 4 * reg_max, N], scores [B, nc, N])`` of every detection branch of a training-mode head output.

    8.1/8.2 heads return per-level maps ``[B, 4 * reg_max + nc, H, W]`` (``Detect``), first in a tuple with the task's
    extras (``Segment``: ``(levels, mask_coefficients, protos)``, ``Pose``: ``(levels, keypoints)``, ``OBB``:
    ``(levels, angles)``), and YOLOv10's end-to-end head ``{"one2many": levels, "one2one": levels}``; ``nc`` splits
    the maps.

    Raises:
        TypeError: When ``preds`` has none of these layouts, or ``nc`` is None.
    """
    return heads.branches(preds, lambda branch: heads.level_maps(branch, nc))


def add_loss_term(loss: torch.Tensor, items: torch.Tensor, name: str, term: torch.Tensor,
                  scale: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """Return a criterion's ``(loss, loss_items)`` with one more term: ``term * scale`` added to the loss (8.1/8.2
    criteria return a scalar) and ``term`` (detached) appended to the items (a tensor, 0-d for a classifier, whose
    names are the trainer's ``loss_names``, so ``name`` is not stored with it)."""
    return loss + term * scale, torch.cat([items.reshape(-1), term.detach().reshape(1).to(items.dtype)])


def add_loss_name(trainer, name: str) -> None:
    """Name one more loss item: 8.1/8.2 trainers name their items up front, in ``trainer.loss_names``."""
    names = trainer.loss_names
    if name not in names:
        trainer.loss_names = type(names)((*names, name))


def named_loss_items(names, items: torch.Tensor) -> List[Tuple[str, Any]]:
    """Pair loss items (a tensor in 8.1/8.2) with their ``names``, in order."""
    return list(zip(names, items.reshape(-1).tolist()))


def distill_model(args) -> Optional[str]:
    """The teacher of Ultralytics' own distillation in a run with these arguments: None (8.1/8.2 have none)."""
    return None


def apply_fixes() -> None:
    """The compatibility fixes 8.1 and 8.2 need on today's stack (see :mod:`.compat`; each checks its condition)."""
    import ultralytics.engine.exporter
    import ultralytics.engine.tuner
    import ultralytics.nn.tasks
    import ultralytics.utils.metrics
    import ultralytics.utils.torch_utils

    from ultralytics_prune_plugin.adapters import compat

    compat.fix_torch_load((ultralytics.nn.tasks, ultralytics.utils.torch_utils, ultralytics.engine.tuner))
    compat.fix_numpy_trapz(ultralytics.utils.metrics)
    compat.fix_onnx_export(ultralytics.engine.exporter)


def runs_openvino(backend) -> bool:
    """Whether an ``AutoBackend`` runs an OpenVINO model (8.1/8.2 flag it as ``backend.xml``)."""
    return bool(getattr(backend, "xml", False))


def exports_onnx_int8() -> bool:
    """Whether the exporter quantizes ONNX to INT8: not in 8.1/8.2 (their ``int8`` applies to other formats)."""
    return False


def precision_request(args) -> Tuple[str, Any]:
    """The key and value by which a run's arguments ask for a precision: ``int8`` on 8.1/8.2."""
    return "int8", getattr(args, "int8", False)


def int8_export_args() -> Dict[str, Any]:
    """The exporter's keyword for an INT8 export: ``int8=True`` on 8.1/8.2."""
    return {"int8": True}


__all__ = ("VERSIONS", "supports", "apply", "after_cfg_print", "load_weights", "load_yaml", "unwrap_model",
           "val_precision", "train_images", "onnxruntime_session", "head_branches", "add_loss_term", "add_loss_name",
           "named_loss_items", "distill_model", "runs_openvino", "exports_onnx_int8",
           "precision_request", "int8_export_args")

VERSIONS = ">=8.1.0,<8.3.0"


def supports(version: str) -> bool:
    """Return True for Ultralytics versions of the 8.1 and 8.2 series."""
    from ultralytics.utils.checks import check_version

    return check_version(version, VERSIONS)


def apply() -> None:
    """Apply the compatibility fixes. Called once per process by ``activate()``, which then registers the plugin."""
    apply_fixes()
