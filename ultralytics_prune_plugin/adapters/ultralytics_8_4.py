"""Adapter for Ultralytics 8.4.x: its internals' names.

This series loads checkpoints with ``weights_only=False`` itself, integrates with ``np.trapezoid`` on numpy 2 and
exports ONNX with the TorchScript exporter, so it needs no compatibility fix on today's stack.
"""

from __future__ import annotations

from ultralytics_prune_plugin.adapters._modern_internals import (  # the internals this series names this way
    after_cfg_print,
    load_weights,
    load_yaml,
    unwrap_model,
)
from ultralytics_prune_plugin.adapters.compat import in_series

__all__ = ("SERIES", "supports", "apply", "after_cfg_print", "load_weights", "load_yaml", "unwrap_model")

SERIES = "8.4"


def supports(version: str) -> bool:
    """Return True for Ultralytics versions of the 8.4 series."""
    return in_series(version, SERIES)


def apply() -> None:
    """Apply the compatibility fixes: none for this series. Called once per process by ``activate()``, which then
    registers the plugin."""
