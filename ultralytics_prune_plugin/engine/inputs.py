"""Early checks of the files a user names, so that a typo fails fast with one line instead of a traceback.

Ultralytics tries to download any ``.pt`` it cannot find and reports unreadable files with deep tracebacks. For the
plugin's own modes these checks run first and raise :class:`PluginArgumentError` with the argument's name. A file is
only opened after it passed the cheap checks, and only the file the user named is loaded.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

from ultralytics_prune_plugin.config import PluginArgumentError

MODEL_SUFFIXES = (".pt", ".yaml", ".yml")


def check_model_file(model: str) -> None:
    """Check that ``model`` names a readable Ultralytics checkpoint or a model YAML.

    Args:
        model (str): The value of the ``model`` argument.

    Raises:
        PluginArgumentError: When the file is missing, of the wrong kind, unreadable, or not an Ultralytics checkpoint.
    """
    path = Path(str(model))
    if path.suffix not in MODEL_SUFFIXES:
        raise PluginArgumentError(f"'model={model}' must be a .pt checkpoint or a model .yaml (e.g. yolov8n.yaml)")
    if path.suffix != ".pt":
        return  # model YAMLs are resolved by Ultralytics from its own cfg folder as well
    if not path.is_file():
        raise PluginArgumentError(f"'model={model}' does not exist (checkpoints are never downloaded by 'yolo prune')")
    if not zipfile.is_zipfile(path):
        raise PluginArgumentError(f"'model={model}' is not a PyTorch checkpoint: the file is truncated or not a .pt")
    ckpt = _load(path, model)
    from torch import nn

    module = ckpt.get("ema") or ckpt.get("model") if isinstance(ckpt, dict) else getattr(ckpt, "model", None)
    if not isinstance(module, nn.Module):
        what = "a bare state_dict" if isinstance(ckpt, dict) else f"a {type(ckpt).__name__}"
        raise PluginArgumentError(
            f"'model={model}' holds {what}, not an Ultralytics checkpoint; use a weights/best.pt written by 'yolo train'"
        )


def _load(path: Path, model: str):
    """Load the checkpoint the user named (it is a pickle: only trusted files should be named)."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise PluginArgumentError(f"'model={model}' cannot be read as a PyTorch checkpoint: {first}") from None
    except ModuleNotFoundError as e:
        raise PluginArgumentError(f"'model={model}' needs the module '{e.name}', which is not installed") from None
