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

    Afterwards this object holds the kept model, loaded from the run's ``weights/pruned.pt`` as ``YOLO(pruned.pt)``
    would load it (``model``, ``ckpt``, ``ckpt_path``, ``overrides``), as ``train()`` holds its result: ``val()``,
    ``predict()`` and ``export()`` then use the pruned model. The input file is never written.
    """
    from ultralytics_prune_plugin.engine.prune_run import PruneRun

    run = PruneRun(self, kwargs)
    if run.config.resume_dir is None:
        _warn_untrained(self, run.config)
    report = run.run()
    self._load(str(report["final"]["weights"]))  # the kept model, as Ultralytics' _load reads any checkpoint
    self.predictor = None  # a predictor made before holds the input model
    return report


def _warn_untrained(yolo, config) -> None:
    """Warn in one line when the model comes from a model YAML: its weights are random and its class names are the
    YAML's placeholders, which the pruned result keeps (Ultralytics' ``train`` would rebuild it for the data)."""
    from ultralytics_prune_plugin.report.console import PREFIX, warn

    name = str(getattr(yolo, "model_name", None) or config.args.model)
    if getattr(yolo, "ckpt", None) or not name.lower().endswith((".yaml", ".yml")):
        return
    names = getattr(yolo.model, "names", None) or {}
    classes = f"{len(names)} placeholder classes" if names else "placeholder classes"
    data = config.data or {}
    if data.get("names") is not None and len(data["names"]) != len(names):
        classes += f" (data={config.args.data} has {len(data['names'])})"
    warn(
        f"{PREFIX}'model={name}' is an untrained model YAML: random weights and {classes}, which the pruned "
        f"model keeps; train it first (yolo train model={name} data=...) and prune its weights/best.pt"
    )


def sparse(self, **kwargs):
    """Train with a Network Slimming L1 penalty on prunable BatchNorm scales; same as ``train(sparse=True, ...)``."""
    if kwargs.get("sparse") is False:
        raise PluginArgumentError("'sparse=False' contradicts mode 'sparse': leave 'sparse' out, or use 'yolo train'.")
    if not kwargs.get("data") and not kwargs.get("resume") and not kwargs.get("cfg"):
        raise PluginArgumentError("'data' is missing: sparse training needs a dataset, e.g. 'data=path/to/data.yaml'.")
    from ultralytics_prune_plugin.engine.inputs import check_task_data
    from ultralytics_prune_plugin.tasks import TASKS

    if self.task not in TASKS:
        raise PluginArgumentError(
            f"'model={kwargs.get('model', self.model_name)}' is a '{self.task}' model: task {self.task} is not "
            f"supported by sparse training; supported: {', '.join(TASKS)}"
        )
    if kwargs.get("data") and not kwargs.get("resume"):
        # one line for a broken YAML, missing images, or data of another task
        check_task_data(self.task, kwargs["data"], model=self.model, need_train=True)
    return self.train(**{**kwargs, "sparse": True})
