"""Registration of the plugin in Ultralytics, shared by every supported series.

What is registered: the ``prune`` and ``sparse`` modes and the command line (:mod:`.cli`), the plugin keys with their
defaults and checks, the ``Model.prune()`` / ``Model.sparse()`` methods, the prune-aware trainers (which keep pruned
models intact and know sparse training), and the ``fast_dfl`` option of the ONNX export. The few places where series
differ are asked of the series adapter passed to :func:`register`.
"""

from __future__ import annotations

import functools

from ultralytics_prune_plugin.adapters.patching import patch_attr, patch_default
from ultralytics_prune_plugin.integration.cli import register_cli


def register(series) -> None:
    """Register the plugin in the installed Ultralytics; ``series`` is its adapter module."""
    _register_keys()
    _register_checks()
    register_cli(series)
    _register_model_methods()
    _register_trainers()
    _register_fast_dfl_export()


def _register_keys() -> None:
    """Add the plugin keys to Ultralytics' defaults, so the CLI, ``cfg=`` files and every ``get_cfg`` accept them."""
    from ultralytics.utils import DEFAULT_CFG, DEFAULT_CFG_DICT

    from ultralytics_prune_plugin.config import plugin_defaults

    for key, value in plugin_defaults().items():
        patch_default(DEFAULT_CFG_DICT, key, value)  # DEFAULT_CFG_KEYS is a live view of this dict
        if not hasattr(DEFAULT_CFG, key):
            patch_attr(DEFAULT_CFG, key, value)


def _register_checks() -> None:
    """Check plugin keys wherever Ultralytics checks its own (``get_cfg`` calls ``check_cfg``)."""
    import ultralytics.cfg as cfg

    from ultralytics_prune_plugin.config import check_plugin_args

    original = cfg.check_cfg

    @functools.wraps(original)
    def check_cfg(config, hard=True):
        check_plugin_args(config)
        if config.get("mode") == "prune" and config.get("epochs") in (0, "0"):
            # 'epochs=0' means "prune only" in prune mode; 8.4 checks epochs >= 1 for training, so check it as 1
            config["epochs"] = 1
            try:
                return original(config, hard)
            finally:
                config["epochs"] = 0
        return original(config, hard)

    patch_attr(cfg, "check_cfg", check_cfg)


def _register_model_methods() -> None:
    """Give ``ultralytics.engine.model.Model`` the methods ``prune()`` and ``sparse()``."""
    from ultralytics.engine.model import Model

    from ultralytics_prune_plugin.integration.api import prune, sparse

    patch_attr(Model, "prune", prune)
    patch_attr(Model, "sparse", sparse)


def _register_trainers() -> None:
    """Train with the plugin's trainers, which keep pruned models intact and know sparse training."""
    from ultralytics.models.yolo.model import YOLO

    original = YOLO.task_map

    @functools.wraps(original.fget)
    def task_map(self):
        from ultralytics_prune_plugin.engine.trainer import prune_aware_trainers

        tasks = original.fget(self)
        for task, trainer in prune_aware_trainers().items():
            if task in tasks:
                tasks[task]["trainer"] = trainer
        return tasks

    patch_attr(YOLO, "task_map", property(task_map))


def _register_fast_dfl_export() -> None:
    """``fast_dfl=True``: the ONNX export traces the DFL with its softmax over the last axis (``deploy.fast_dfl``)."""
    from ultralytics.engine.exporter import Exporter
    from ultralytics.utils import LOGGER

    from ultralytics_prune_plugin.deploy.fast_dfl import last_axis_dfl

    export_onnx = Exporter.export_onnx

    @functools.wraps(export_onnx)
    def export_onnx_with_fast_dfl(self, *args, **kwargs):
        enabled = bool(getattr(self.args, "fast_dfl", False))
        if enabled:
            LOGGER.info("fast_dfl=True: the DFL is exported with its softmax over the last axis (Softmax + MatMul)")
        with last_axis_dfl(enabled):
            return export_onnx(self, *args, **kwargs)

    patch_attr(Exporter, "export_onnx", export_onnx_with_fast_dfl)
