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
    if "://" in str(model):
        raise PluginArgumentError(f"'model={model}' is a URL: models are never downloaded by 'yolo prune'; pass a file")
    if path.suffix not in MODEL_SUFFIXES:
        raise PluginArgumentError(f"'model={model}' must be a .pt checkpoint or a model .yaml (e.g. yolov8n.yaml)")
    if path.suffix != ".pt":
        _check_model_yaml(model)  # model YAMLs are resolved by Ultralytics from its own cfg folder as well
        return
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


def _check_model_yaml(model: str) -> None:
    """Check that Ultralytics can read the model YAML ``model`` (a local file, or one it ships such as yolov8n.yaml)."""
    from ultralytics.nn.tasks import yaml_model_load

    try:
        spec = yaml_model_load(str(model))
    except FileNotFoundError:
        raise PluginArgumentError(
            f"'model={model}' does not exist, and Ultralytics ships no model YAML of that name (e.g. yolov8n.yaml)"
        ) from None
    except Exception as e:
        raise PluginArgumentError(f"'model={model}' cannot be read as a model YAML: {first_line(e)}") from None
    if not isinstance(spec, dict) or "backbone" not in spec or "head" not in spec:
        raise PluginArgumentError(f"'model={model}' is not a model YAML: it has no 'backbone' and 'head'")


def check_detection_data(data, need_train: bool = True) -> dict:
    """Check a detection dataset the way Ultralytics does, without downloading anything, and return its dict.

    Args:
        data: The value of the ``data`` argument (a data YAML).
        need_train (bool): Also require the training images (for fine-tuning or training).

    Raises:
        PluginArgumentError: When the YAML is missing or broken, or the images it points at are missing.
    """
    from ultralytics.data.utils import check_det_dataset

    if "://" in str(data):
        raise PluginArgumentError(f"'data={data}' is a URL: datasets are never downloaded by the plugin; pass a file")
    try:
        checked = check_det_dataset(str(data), autodownload=False)
    except Exception as e:
        raise PluginArgumentError(f"'data={data}' cannot be used: {first_line(e)}") from None
    if need_train:
        train = checked.get("train")
        missing = [p for p in (train if isinstance(train, (list, tuple)) else [train]) if not Path(str(p)).exists()]
        if missing:
            raise PluginArgumentError(
                f"'data={data}' cannot be used: its training images are missing, no '{missing[0]}'"
            )
    return checked


def first_line(error: BaseException) -> str:
    """The first line of an error's message, with YAML errors as 'not valid YAML (problem at line N)'."""
    import yaml

    if not isinstance(error, yaml.YAMLError) and isinstance(error.__context__, yaml.YAMLError):
        error = error.__context__  # Ultralytics 8.4.190 re-raises it as ValueError("YAML syntax error in '...': ...")
    if isinstance(error, yaml.MarkedYAMLError) and error.problem_mark is not None:
        return f"it is not valid YAML ({error.problem} at line {error.problem_mark.line + 1})"
    text = str(error).strip()
    line = text.splitlines()[0].strip() if text else type(error).__name__
    return f"it is not valid YAML ({line})" if isinstance(error, yaml.YAMLError) else line


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
