"""Adapter for Ultralytics 8.2.x: the same compatibility fixes as 8.1 (see :mod:`.ultralytics_8_1`) and the same
internals' names.
"""

from __future__ import annotations

from ultralytics_prune_plugin.adapters._legacy_internals import (  # the internals this series names this way
    after_cfg_print,
    apply_fixes,
    load_weights,
    load_yaml,
    unwrap_model,
)
from ultralytics_prune_plugin.adapters.compat import in_series

__all__ = ("SERIES", "supports", "apply", "after_cfg_print", "load_weights", "load_yaml", "unwrap_model")

SERIES = "8.2"


def supports(version: str) -> bool:
    """Return True for Ultralytics versions of the 8.2 series."""
    return in_series(version, SERIES)


def apply() -> None:
    """Apply the compatibility fixes. Called once per process by ``activate()``, which then registers the plugin."""
    apply_fixes()
