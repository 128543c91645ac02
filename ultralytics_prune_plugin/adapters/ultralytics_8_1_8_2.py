"""Adapter for Ultralytics 8.1.x and 8.2.x: the compatibility fixes these series need on today's stack, and their
internals' names (the two series name them alike).

Fixes (each applied only when its condition holds, and only inside Ultralytics' own modules):

* torch >= 2.6 loads with ``weights_only=True``, so every checkpoint load of 8.1 fails: Ultralytics' own load call
  sites (model loading, ``strip_optimizer``, the tuner) get ``weights_only=False``, as later releases pass.
* numpy >= 2.4 has no ``np.trapz`` (used for mAP): Ultralytics' metrics get ``np.trapezoid`` under that name.
* torch >= 2.9 exports ONNX with the dynamo exporter by default, and 8.1's opset guess lands on 9 with newer torch:
  its exporter gets the TorchScript exporter and opset 17.

Then ``activate()`` registers the plugin (:mod:`ultralytics_prune_plugin.integration.registration`).
"""

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


__all__ = ("VERSIONS", "supports", "apply", "after_cfg_print", "load_weights", "load_yaml", "unwrap_model")

VERSIONS = ">=8.1.0,<8.3.0"


def supports(version: str) -> bool:
    """Return True for Ultralytics versions of the 8.1 and 8.2 series."""
    from ultralytics.utils.checks import check_version

    return check_version(version, VERSIONS)


def apply() -> None:
    """Apply the compatibility fixes. Called once per process by ``activate()``, which then registers the plugin."""
    apply_fixes()
