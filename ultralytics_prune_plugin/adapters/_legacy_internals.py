"""Ultralytics internals as the 8.1 and 8.2 series name them (shared by their two adapters)."""

from __future__ import annotations

from typing import Any, Callable, Dict, Tuple

from torch import nn


def load_yaml(path) -> Dict[str, Any]:
    """Read a YAML file the way Ultralytics does."""
    from ultralytics.utils import yaml_load

    return yaml_load(path)


def unwrap_model(model: nn.Module) -> nn.Module:
    """Return the model inside a DataParallel/DistributedDataParallel wrapper (or the model itself)."""
    from ultralytics.utils.torch_utils import de_parallel

    return de_parallel(model)


def load_weights(path) -> Tuple[nn.Module, Dict[str, Any]]:
    """Load the model of an Ultralytics checkpoint (EMA preferred, float32) and the checkpoint dict."""
    from ultralytics.nn.tasks import attempt_load_one_weight

    return attempt_load_one_weight(str(path))


def after_cfg_print(extra: Callable[[str], None]) -> None:
    """Make ``yolo cfg`` call ``extra(yaml_file)`` after Ultralytics printed a YAML file."""
    import ultralytics.cfg as cfg

    from ultralytics_prune_plugin.adapters.patching import patch_attr

    original = cfg.yaml_print

    def yaml_print(yaml_file):
        original(yaml_file)
        extra(yaml_file)

    patch_attr(cfg, "yaml_print", yaml_print)


def apply_fixes() -> None:
    """The compatibility fixes 8.1 and 8.2 need on today's stack (see :mod:`.compat`; each checks its condition)."""
    import ultralytics.engine.exporter
    import ultralytics.engine.tuner
    import ultralytics.nn.tasks
    import ultralytics.utils.metrics
    import ultralytics.utils.torch_utils

    from ultralytics_prune_plugin.adapters import compat

    compat.fix_torch_load((ultralytics.nn.tasks, ultralytics.utils.torch_utils, ultralytics.engine.tuner))
    compat.fix_numpy_trapz(ultralytics.utils.metrics)
    compat.fix_onnx_export(ultralytics.engine.exporter)
