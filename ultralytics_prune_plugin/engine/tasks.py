"""What differs between Ultralytics tasks for a prune run: the metrics behind its report, and the data it needs.

Each task (``detect``, ``segment``, ``pose``, ``obb``, ``classify``) is one :class:`TaskSpec` in :data:`TASKS`:

* the two validator metrics the report shows, read from Ultralytics' own ``results_dict`` keys: a secondary one
  (``map50`` column: mAP at IoU 0.5, or top-5 accuracy) and the **main** one (``map50_95`` column: mAP50-95, or
  top-1 accuracy), which ``max_map_drop`` is measured on. Segmentation reports mask mAP ``(M)``, pose keypoint mAP
  ``(P)``, oriented boxes their rotated-box mAP ``(B)``;
* the human-readable names of those metrics, for table columns and the summary;
* the data check (:func:`check_task_data`), which refuses data of another task with one line before any training
  starts: a classification model needs an image folder, the others a data YAML; a pose model needs ``kpt_shape`` in
  it (the model's, when a model is given); and label files whose column count belongs to another task are named.

Everything here is a plain function of the task name, so a prune run calls them with ``model.task``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

from ultralytics_prune_plugin.config import PluginArgumentError


@dataclass(frozen=True)
class TaskSpec:
    """The metrics of one task.

    Attributes:
        task: Ultralytics task name.
        keys: ``(secondary, main)`` keys of the validator's ``results_dict``.
        names: Human-readable names of the two metrics, in the same order.
        what: What the metrics measure (for the summary line), e.g. ``"mask mAP"``.
    """

    task: str
    keys: Tuple[str, str]
    names: Tuple[str, str]
    what: str

    @property
    def main_key(self) -> str:
        """The ``results_dict`` key of the main metric (the one ``max_map_drop`` applies to)."""
        return self.keys[1]

    @property
    def main_name(self) -> str:
        """The human-readable name of the main metric."""
        return self.names[1]


TASKS: Dict[str, TaskSpec] = {
    "detect": TaskSpec(
        "detect", ("metrics/mAP50(B)", "metrics/mAP50-95(B)"), ("box mAP50", "box mAP50-95"), "box mAP"
    ),
    "segment": TaskSpec(
        "segment", ("metrics/mAP50(M)", "metrics/mAP50-95(M)"), ("mask mAP50", "mask mAP50-95"), "mask mAP"
    ),
    "pose": TaskSpec(
        "pose", ("metrics/mAP50(P)", "metrics/mAP50-95(P)"), ("pose mAP50", "pose mAP50-95"), "keypoint mAP"
    ),
    "obb": TaskSpec(
        "obb", ("metrics/mAP50(B)", "metrics/mAP50-95(B)"), ("OBB mAP50", "OBB mAP50-95"), "rotated-box mAP"
    ),
    "classify": TaskSpec(
        "classify", ("metrics/accuracy_top5", "metrics/accuracy_top1"), ("top-5 accuracy", "top-1 accuracy"),
        "classification accuracy",
    ),
}

# Columns of a label line per task: detect ``cls xc yc w h``; obb ``cls`` and four corners; segment ``cls`` and at
# least three points; pose ``cls xc yc w h`` and ``nkpt * ndim`` keypoint values.
_BOX_COLUMNS = 5
_OBB_COLUMNS = 9


def task_spec(task: str) -> TaskSpec:
    """Return the :class:`TaskSpec` of ``task``.

    Raises:
        PluginArgumentError: For a task the plugin does not support, naming the supported ones.
    """
    spec = TASKS.get(task)
    if spec is None:
        raise PluginArgumentError(f"task '{task}' is not supported by the plugin; supported: {', '.join(TASKS)}")
    return spec


def metric_keys(task: str) -> Tuple[str, str]:
    """Return the ``(secondary, main)`` validator ``results_dict`` keys of ``task``."""
    return task_spec(task).keys


def metric_names(task: str) -> Tuple[str, str]:
    """Return the human-readable ``(secondary, main)`` metric names of ``task``, for columns and the summary."""
    return task_spec(task).names


def read_metrics(task: str, metrics: Any) -> Dict[str, float]:
    """Read the task's two metrics from a validator result, under the report's keys.

    Args:
        task: Ultralytics task name.
        metrics: What ``YOLO(...).val()`` or a validator returns (``DetMetrics``, ``SegmentMetrics``,
            ``PoseMetrics``, ``OBBMetrics``, ``ClassifyMetrics``) or its ``results_dict``.

    Returns:
        ``{"map50": secondary, "map50_95": main}``: for classify, top-5 and top-1 accuracy.

    Raises:
        KeyError: If the result lacks one of the task's keys (a result of another task).
    """
    results = metrics if isinstance(metrics, Mapping) else metrics.results_dict
    secondary, main = task_spec(task).keys
    missing = [key for key in (secondary, main) if key not in results]
    if missing:
        raise KeyError(f"the validation results have no {missing[0]!r}: they are not {task} results")
    return {"map50": float(results[secondary]), "map50_95": float(results[main])}


def model_task(model: Any) -> str:
    """Return the Ultralytics task of a model (a ``YOLO`` object, a network or a checkpoint's model)."""
    task = getattr(model, "task", None)
    if isinstance(task, str):
        return task
    from ultralytics.nn.tasks import guess_model_task

    return guess_model_task(model)


def model_kpt_shape(model: Any) -> Optional[list]:
    """Return the keypoint shape a pose network predicts (its head's ``kpt_shape``), or None for other networks."""
    modules = model.modules() if hasattr(model, "modules") else []
    shape = next((m.kpt_shape for m in modules if isinstance(getattr(m, "kpt_shape", None), (list, tuple))), None)
    return list(shape) if shape is not None else None


def check_task_data(task: str, data: Any, model: Any = None, need_train: bool = True) -> Dict[str, Any]:
    """Check that ``data`` suits a ``task`` model, without downloading anything, and return the checked dataset.

    Args:
        task: The model's task (:func:`model_task`).
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
    from ultralytics_prune_plugin.engine.inputs import check_detection_data

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

    from ultralytics_prune_plugin.engine.inputs import first_line

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
