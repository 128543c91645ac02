"""Adapter for Ultralytics 8.4.x: its internals' names, and the plugin's registration (:mod:`.common`).

This series loads checkpoints with ``weights_only=False`` itself, integrates with ``np.trapezoid`` on numpy 2 and
exports ONNX with the TorchScript exporter, so it needs no compatibility fix on today's stack.
"""

from __future__ import annotations

import sys

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
    """Register the plugin. Called once per process by ``activate()``."""
    from ultralytics_prune_plugin.adapters import common

    common.register(sys.modules[__name__])
