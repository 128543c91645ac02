"""The methods the plugin adds to ``ultralytics.engine.model.Model``: ``prune()`` and ``sparse()``."""

from __future__ import annotations

from ultralytics_prune_plugin.config import PluginArgumentError


def prune(self, **kwargs):
    """Prune this detector's channels, fine-tune, and save the result; see ``yolo prune`` in the README.

    Args:
        **kwargs: Ultralytics keys (``data``, ``epochs``, ``imgsz``, ``batch``, ``device``, ``project``, ``name``, ...)
            and plugin keys (``method``, ``rate``, ``iterative_steps``, ``max_map_drop``, ``round_to``, ...).

    Returns:
        (dict): The run's report: baseline and final MACs, params and mAP, one row per step, the kept step, paths.
    """
    from ultralytics_prune_plugin.engine.prune_run import PruneRun

    return PruneRun(self, kwargs).run()


def sparse(self, **kwargs):
    """Train with a Network Slimming L1 penalty on prunable BatchNorm scales; same as ``train(sparse=True, ...)``."""
    if kwargs.get("sparse") is False:
        raise PluginArgumentError("'sparse=False' contradicts mode 'sparse': leave 'sparse' out, or use 'yolo train'.")
    if not kwargs.get("data") and not kwargs.get("resume") and not kwargs.get("cfg"):
        raise PluginArgumentError("'data' is missing: sparse training needs a dataset, e.g. 'data=path/to/data.yaml'.")
    from ultralytics_prune_plugin.engine.tasks import TASKS, check_task_data

    if self.task not in TASKS:
        raise PluginArgumentError(
            f"'model={kwargs.get('model', self.model_name)}' is a '{self.task}' model: task {self.task} is not "
            f"supported by sparse training; supported: {', '.join(TASKS)}"
        )
    if kwargs.get("data") and not kwargs.get("resume"):
        # one line for a broken YAML, missing images, or data of another task
        check_task_data(self.task, kwargs["data"], model=self.model, need_train=True)
    return self.train(**{**kwargs, "sparse": True})
