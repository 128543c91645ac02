"""Adapter for Ultralytics 8.3.x and 8.4.x: their internals' names (the two series name them alike) and the shapes of
what those return, which differ in places (head outputs, loss items, the ONNX backend's format flag); there each
function tells the two apart.

These series load checkpoints with ``weights_only=False`` itself, integrates with ``np.trapezoid`` on numpy 2 and
exports ONNX with the TorchScript exporter, so they need no compatibility fix on today's stack.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
from torch import nn

from ultralytics_prune_plugin.adapters import heads


def load_yaml(path) -> Dict[str, Any]:
    """Read a YAML file the way Ultralytics does."""
    from ultralytics.utils import YAML

    return YAML.load(path)


def unwrap_model(model: nn.Module) -> nn.Module:
    """Return the model inside a DataParallel/DistributedDataParallel wrapper (or the model itself)."""
    from ultralytics.utils.torch_utils import unwrap_model as unwrap

    return unwrap(model)


def load_weights(path) -> Tuple[nn.Module, Dict[str, Any]]:
    """Load the model of an Ultralytics checkpoint (EMA preferred, float32) and the checkpoint dict."""
    from ultralytics.nn.tasks import load_checkpoint

    return load_checkpoint(str(path))


def after_cfg_print(extra: Callable[[str], None]) -> None:
    """Make ``yolo cfg`` call ``extra(yaml_file)`` after Ultralytics printed a YAML file."""
    import ultralytics.cfg as cfg

    from ultralytics_prune_plugin.adapters.patching import patch_attr

    class PluginYAML(cfg.YAML):
        """Ultralytics' YAML helper whose ``print`` is followed by the plugin's own output."""

        @classmethod
        def print(cls, yaml_file):
            super().print(yaml_file)
            extra(yaml_file)

    patch_attr(cfg, "YAML", PluginYAML)  # only the name the CLI module looks up; Ultralytics' class itself is unchanged


# Where 8.3 and 8.4 differ below, each function tells them apart once, by what it is given (``half``: by the default
# configuration), not by a version number, so the releases that changed these shapes need not be named.


def val_precision(args) -> Dict[str, Any]:
    """The precision argument of a validation with the run's ``args``: ``half`` where the series has that key (8.3);
    none on 8.4, which replaced it by ``quantize`` (left at its default)."""
    from ultralytics.utils import DEFAULT_CFG

    return {"half": args.half} if "half" in vars(DEFAULT_CFG) else {}


def train_images(trainer) -> Any:
    """The training split as the trainer's ``get_dataloader`` takes it: ``trainer.trainset`` where the release's
    trainer keeps it apart from the data (as 8.1/8.2 do), else ``trainer.data["train"]`` (8.4)."""
    return getattr(trainer, "trainset", None) or trainer.data["train"]


def onnxruntime_session(backend) -> Any:
    """The ONNX Runtime session that an ``AutoBackend`` runs, or None when it runs another format. 8.3 flags the
    format as ``backend.onnx``, 8.4 names it in ``backend.format``; both reach the session as ``backend.session``
    (8.4's ``AutoBackend`` passes it on from its format backend)."""
    is_onnx = getattr(backend, "onnx", False) or getattr(backend, "format", None) == "onnx"
    return getattr(backend, "session", None) if is_onnx else None


def head_branches(preds: Any, nc: Optional[int]) -> List[heads.Branch]:
    """``(boxes [B, 4 * reg_max, N], scores [B, nc, N])`` of every detection branch of a training-mode head output.

    8.3 heads return per-level maps ``[B, 4 * reg_max + nc, H, W]`` (``Detect``; ``nc`` splits them), first in a
    tuple with the task's extras (``Segment``: ``(levels, mask_coefficients, protos)``, ``Pose``:
    ``(levels, keypoints)``, ``OBB``: ``(levels, angles)``); 8.4 heads a dict ``{"boxes", "scores", "feats", ...}``
    with the task's entries in it. End-to-end heads (YOLOv10 on 8.3, YOLO26 on 8.4) return
    ``{"one2many": branch, "one2one": branch}``.

    Raises:
        TypeError: When ``preds`` has none of these layouts, or per-level maps come without ``nc``.
    """

    def read(branch: Any) -> Optional[heads.Branch]:
        if isinstance(branch, dict) and "boxes" in branch and "scores" in branch:  # 8.4
            return branch["boxes"], branch["scores"]
        return heads.level_maps(branch, nc)  # 8.3

    return heads.branches(preds, read)


def add_loss_term(loss: torch.Tensor, items: Any, name: str, term: torch.Tensor,
                  scale: float) -> Tuple[torch.Tensor, Any]:
    """Return a criterion's ``(loss, loss_items)`` with one more term.

    ``term * scale`` is added to a scalar loss (a classifier's; a detection loss where the release still sums it) or
    appended to a loss vector (the trainer sums it); ``term`` (detached) joins the items: under ``name`` in 8.4's
    dict, as one more element of 8.3's tensor (whose names are the trainer's ``loss_names``).
    """
    weighted = term * scale
    if loss.ndim == 0:
        loss = loss + weighted
    else:
        loss = torch.cat([loss.flatten(), weighted.reshape(1).to(loss.dtype)])
    item = term.detach()
    if isinstance(items, dict):
        return loss, {**items, name: item}
    return loss, torch.cat([items.reshape(-1), item.reshape(1).to(items.dtype)])


def add_loss_name(trainer, name: str) -> None:
    """Name one more loss item. 8.3 trainers name their items up front, in ``trainer.loss_names``; 8.4 derives the
    names from the first batch's loss dict (empty until then), so the item's key names it there."""
    names = trainer.loss_names
    if names and name not in names:
        trainer.loss_names = type(names)((*names, name))


def named_loss_items(names, items: Any) -> List[Tuple[str, Any]]:
    """Pair loss items with their names: 8.4's dict carries them; 8.3's tensor follows ``names``, in order."""
    if isinstance(items, dict):
        return list(items.items())
    return list(zip(names, items.reshape(-1).tolist()))


def distill_model(args) -> Optional[str]:
    """The teacher of Ultralytics' own distillation in a run with these arguments: 8.4's ``distill_model`` (None when
    unset, and on 8.3, which has no such argument)."""
    return getattr(args, "distill_model", None)


ONNX_INT8_SINCE = "8.4.60"  # the first Ultralytics release whose exporter quantizes ONNX to INT8


def runs_openvino(backend) -> bool:
    """Whether an ``AutoBackend`` runs an OpenVINO model: 8.3 flags it as ``backend.xml``, 8.4 names it in
    ``backend.format``."""
    return getattr(backend, "format", None) == "openvino" or bool(getattr(backend, "xml", False))


def exports_onnx_int8() -> bool:
    """Whether the installed exporter quantizes ONNX to INT8 (8.4.60 and later)."""
    import ultralytics
    from ultralytics.utils.checks import check_version

    return check_version(ultralytics.__version__, f">={ONNX_INT8_SINCE}")


def precision_request(args) -> Tuple[str, Any]:
    """The key and value by which a run's arguments ask for a precision: ``int8`` on 8.3; on 8.4 ``quantize``, into
    which Ultralytics itself turns ``int8=True`` (``quantize=8``)."""
    from ultralytics.cfg import DEFAULT_CFG

    if "quantize" in vars(DEFAULT_CFG):
        return "quantize", getattr(args, "quantize", None)
    return "int8", getattr(args, "int8", False)


def int8_export_args() -> Dict[str, Any]:
    """The exporter's keyword for an INT8 export: ``int8=True`` on 8.3, ``quantize=8`` on 8.4 (its ``int8`` is a
    deprecated alias)."""
    from ultralytics.cfg import DEFAULT_CFG

    return {"quantize": 8} if "quantize" in vars(DEFAULT_CFG) else {"int8": True}


__all__ = ("VERSIONS", "supports", "apply", "after_cfg_print", "load_weights", "load_yaml", "unwrap_model",
           "val_precision", "train_images", "onnxruntime_session", "head_branches", "add_loss_term", "add_loss_name",
           "named_loss_items", "distill_model", "runs_openvino", "exports_onnx_int8",
           "precision_request", "int8_export_args")

VERSIONS = ">=8.3.0,<8.5.0"


def supports(version: str) -> bool:
    """Return True for Ultralytics versions of the 8.3 and 8.4 series."""
    from ultralytics.utils.checks import check_version

    return check_version(version, VERSIONS)


def apply() -> None:
    """Apply the compatibility fixes: none for these series. Called once per process by ``activate()``, which then
    registers the plugin."""
