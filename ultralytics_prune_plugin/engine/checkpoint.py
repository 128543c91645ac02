"""Saving and loading pruned detectors as ordinary Ultralytics checkpoints.

A pruned checkpoint has the same keys as the ``best.pt`` Ultralytics writes (``model`` in half precision, ``train_args``
and so on), plus ``prune_plugin`` with what was done. It therefore loads with ``YOLO('pruned.pt')`` and keeps working
with ``yolo train/val/predict/export``. The pruners hand back models built only of Ultralytics and torch classes
(unsplit ``C2f_v2`` blocks are turned back into ``C2f``/``C3k2``/...), so such a checkpoint loads with plain
Ultralytics, without this plugin. Checkpoints from earlier plugin versions pickled ``C2f_v2`` and need the plugin.
"""

from __future__ import annotations

from copy import deepcopy
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, Optional

import torch
from torch import nn

from ultralytics_prune_plugin.nn.structure import forget_cached_state
from ultralytics_prune_plugin.report.files import write_atomic


def save_checkpoint(model: nn.Module, path: Path, train_args: Dict[str, Any], info: Optional[Dict] = None) -> Path:
    """Save ``model`` as an Ultralytics checkpoint at ``path``, atomically.

    Args:
        model (nn.Module): The detection model; it is copied, not changed.
        path (Path): The destination file.
        train_args (dict): Arguments stored as ``train_args`` (Ultralytics keeps those it knows).
        info (dict, optional): What the plugin did, stored under ``prune_plugin``.

    Returns:
        (Path): ``path``.
    """
    from ultralytics import __version__
    from ultralytics.utils import DEFAULT_CFG_KEYS

    saved = forget_cached_state(deepcopy(model)).half()
    for p in saved.parameters():
        p.requires_grad_(False)
    ckpt = {
        "epoch": -1,
        "best_fitness": None,
        "model": saved,
        "ema": None,
        "updates": None,
        "optimizer": None,
        "train_args": {k: _plain(v) for k, v in train_args.items() if k in DEFAULT_CFG_KEYS},
        "date": datetime.now().isoformat(),
        "version": __version__,
        "prune_plugin": info or {},
    }
    return write_atomic(Path(path), lambda tmp: torch.save(ckpt, tmp))


def load_model(path: Path) -> nn.Module:
    """Load the detection model of a checkpoint, in float32 with gradients on and no cached loss object."""
    from ultralytics_prune_plugin.adapters import internals

    model, _ = internals().load_weights(path)
    for p in model.parameters():
        p.requires_grad_(True)
    return forget_cached_state(model.float())


def _plain(value: Any) -> Any:
    """Turn paths into strings so the checkpoint holds plain values."""
    return str(value) if isinstance(value, Path) else value
