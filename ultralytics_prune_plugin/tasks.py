"""The tasks a prune run supports and the two metrics of each: shared vocabulary of the whole plugin.

Each task (``detect``, ``segment``, ``pose``, ``obb``, ``classify``) is one :class:`TaskSpec` in :data:`TASKS`:

* the two validator metrics the report shows, read from Ultralytics' own ``results_dict`` keys: a secondary one
  (``map50`` column: mAP at IoU 0.5, or top-5 accuracy) and the **main** one (``map50_95`` column: mAP50-95, or
  top-1 accuracy), which ``max_map_drop`` is measured on. Segmentation reports mask mAP ``(M)``, pose keypoint mAP
  ``(P)``, oriented boxes their rotated-box mAP ``(B)``;
* the human-readable names of those metrics, for table columns and the summary.

Everything here is a plain function of the task name, so a prune run calls them with ``model.task``. The data check
of each task is :func:`ultralytics_prune_plugin.engine.inputs.check_task_data`.
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
