"""Adapter for Ultralytics 8.3.x and 8.4.x: their internals' names (the two series name them alike).

These series load checkpoints with ``weights_only=False`` itself, integrates with ``np.trapezoid`` on numpy 2 and
exports ONNX with the TorchScript exporter, so they need no compatibility fix on today's stack.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Tuple

from torch import nn


def load_yaml(path) -> Dict[str, Any]:
    """Read a YAML file the way Ultralytics does."""
    from ultralytics.utils import YAML

    return YAML.load(path)


def unwrap_model(model: nn.Module) -> nn.Module:
    """Return the model inside a DataParallel/DistributedDataParallel wrapper (or the model itself)."""
    from ultralytics.utils.torch_utils import unwrap_model as unwrap

    return unwrap(model)


def load_weights(path) -> Tuple[nn.Module, Dict[str, Any]]:
    """Load the model of an Ultralytics checkpoint (EMA preferred, float32) and the checkpoint dict."""
    from ultralytics.nn.tasks import load_checkpoint

    return load_checkpoint(str(path))


def after_cfg_print(extra: Callable[[str], None]) -> None:
    """Make ``yolo cfg`` call ``extra(yaml_file)`` after Ultralytics printed a YAML file."""
    import ultralytics.cfg as cfg

    from ultralytics_prune_plugin.adapters.patching import patch_attr

    class PluginYAML(cfg.YAML):
        """Ultralytics' YAML helper whose ``print`` is followed by the plugin's own output."""

        @classmethod
        def print(cls, yaml_file):
            super().print(yaml_file)
            extra(yaml_file)

    patch_attr(cfg, "YAML", PluginYAML)  # only the name the CLI module looks up; Ultralytics' class itself is unchanged


__all__ = ("VERSIONS", "supports", "apply", "after_cfg_print", "load_weights", "load_yaml", "unwrap_model")

VERSIONS = ">=8.3.0,<8.5.0"


def supports(version: str) -> bool:
    """Return True for Ultralytics versions of the 8.3 and 8.4 series."""
    from ultralytics.utils.checks import check_version

    return check_version(version, VERSIONS)


def apply() -> None:
    """Apply the compatibility fixes: none for these series. Called once per process by ``activate()``, which then
    registers the plugin."""
