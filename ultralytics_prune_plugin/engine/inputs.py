"""Early checks of the files a user names, so that a typo fails fast with one line instead of a traceback.

Ultralytics tries to download any ``.pt`` it cannot find and reports unreadable files with deep tracebacks. For the
plugin's own modes these checks run first and raise :class:`PluginArgumentError` with the argument's name. A file is
only opened after it passed the cheap checks, and only the file the user named is loaded.

The data check of each task (:func:`check_task_data`) refuses data of another task with one line before any training
starts: a classification model needs an image folder, the others a data YAML; a pose model needs ``kpt_shape`` in it
(the model's, when a model is given); and label files whose column count belongs to another task are named.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

from ultralytics_prune_plugin.config import PluginArgumentError
from ultralytics_prune_plugin.tasks import model_kpt_shape, task_spec

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


# Columns of a label line per task: detect ``cls xc yc w h``; obb ``cls`` and four corners; segment ``cls`` and at
# least three points; pose ``cls xc yc w h`` and ``nkpt * ndim`` keypoint values.
_BOX_COLUMNS = 5
_OBB_COLUMNS = 9


def check_task_data(task: str, data: Any, model: Any = None, need_train: bool = True) -> Dict[str, Any]:
    """Check that ``data`` suits a ``task`` model, without downloading anything, and return the checked dataset.

    Args:
        task: The model's task (:func:`ultralytics_prune_plugin.tasks.model_task`).
        data: The value of ``data=``: a data YAML, or for classify an image folder.
        model: The network, when known: a pose model's ``kpt_shape`` must match the data's.
        need_train: Also require the training images.

    Returns:
        Ultralytics' checked dataset dict (``check_det_dataset`` / ``check_cls_dataset``).

    Raises:
        PluginArgumentError: One line naming what does not fit.
    """
    spec = task_spec(task)
    text = str(data)
    if "://" in text:
        raise PluginArgumentError(f"'data={data}' is a URL: datasets are never downloaded by the plugin; pass a file")
    path = Path(text)
    if task == "classify":
        return _check_classify_data(data, path)
    if path.is_dir():
        raise PluginArgumentError(
            f"'data={data}' is a folder, which is classification data; a {task} model needs a data YAML"
        )
    checked = check_detection_data(data, need_train=need_train)
    if task == "pose":
        _check_keypoints(data, checked, model)
    _check_label_columns(data, checked, spec.task)
    return checked


def _check_classify_data(data: Any, path: Path) -> Dict[str, Any]:
    """Check a classification image folder (``train/<class>/``, ``val/<class>/``) and return Ultralytics' dict."""
    if path.suffix in (".yaml", ".yml"):
        raise PluginArgumentError(
            f"'data={data}' is a data YAML, which is detection-style data; a classify model needs an image folder "
            "with train/<class>/ and val/<class>/"
        )
    if not path.is_dir():
        raise PluginArgumentError(f"'data={data}' does not exist (datasets are never downloaded by the plugin)")
    if not (path / "train").is_dir():
        raise PluginArgumentError(f"'data={data}' has no 'train' folder; a classify model needs train/<class>/ images")
    from ultralytics.data.utils import check_cls_dataset

    try:
        return check_cls_dataset(str(path))
    except Exception as e:
        raise PluginArgumentError(f"'data={data}' cannot be used: {first_line(e)}") from None


def _check_keypoints(data: Any, checked: Mapping[str, Any], model: Any) -> None:
    """A pose dataset needs ``kpt_shape``, equal to the model's when the model has one."""
    kpt_shape = checked.get("kpt_shape")
    if kpt_shape is None:
        raise PluginArgumentError(f"'data={data}' has no 'kpt_shape'; a pose model needs keypoint data")
    model_shape = model_kpt_shape(model) if model is not None else None
    if model_shape is not None and list(model_shape) != list(kpt_shape):
        raise PluginArgumentError(
            f"'data={data}' has kpt_shape {list(kpt_shape)} but the model predicts {list(model_shape)}"
        )


def _first_label_line(checked: Mapping[str, Any]) -> Optional[Tuple[Path, Sequence[str]]]:
    """The first non-empty label line of the dataset's ``train`` (else ``val``) images, split, with its file."""
    for split in ("train", "val"):
        sources = checked.get(split)
        for source in sources if isinstance(sources, (list, tuple)) else [sources]:
            if not source:
                continue
            folder = Path(str(source))
            if not folder.is_dir():
                continue  # an image list file: not checked here, Ultralytics reports its labels
            parts = folder.parts
            if "images" not in parts:
                continue
            i = len(parts) - 1 - parts[::-1].index("images")  # Ultralytics' img2label_paths: last 'images' -> 'labels'
            labels = Path(*parts[:i], "labels", *parts[i + 1 :])
            for label in sorted(labels.glob("*.txt")):
                for line in label.read_text(encoding="utf-8", errors="replace").splitlines():
                    if line.strip():
                        return label, line.split()
    return None


def _check_label_columns(data: Any, checked: Mapping[str, Any], task: str) -> None:
    """Refuse label files whose first line has the column count of another task (read one line only)."""
    found = _first_label_line(checked)
    if found is None:
        return
    label, columns = found
    n = len(columns)
    kpt_shape = checked.get("kpt_shape")
    if task == "pose":
        expected = _BOX_COLUMNS + int(kpt_shape[0]) * int(kpt_shape[1])
        ok, wanted = n == expected, f"{expected} columns (box and {kpt_shape[0]} keypoints)"
    elif task == "obb":
        ok, wanted = n == _OBB_COLUMNS, "9 columns (class and four corners)"
    elif task == "segment":
        ok, wanted = n >= 7 and n % 2 == 1, "a polygon (class and at least three x y points)"
    else:  # detect: boxes; Ultralytics also turns polygons into boxes
        ok, wanted = n == _BOX_COLUMNS or (n >= 7 and n % 2 == 1), "5 columns (class and box) or a polygon"
    if not ok:
        raise PluginArgumentError(
            f"'data={data}' labels are not {task} labels: {label.name} has {n} columns per object, "
            f"a {task} model needs {wanted}"
        )
