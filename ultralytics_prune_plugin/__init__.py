"""ultralytics-prune-plugin: structured pruning (DepGraph, Network Slimming) for Ultralytics YOLO models (8.1-8.4).

Installing the package activates it in every Python process that imports ``ultralytics``; importing this package
activates it explicitly. ``ULTRALYTICS_PRUNE_PLUGIN_DISABLE=1`` switches it off.
"""

__version__ = "0.1.0"

from .integration.activation import activate, is_active  # noqa: E402
from .config import PluginArgumentError  # noqa: E402

__all__ = ("__version__", "activate", "is_active", "PluginArgumentError")

activate()
