"""Adapter for Ultralytics 8.1.x: the compatibility fixes this series needs on today's stack, and its internals.

Fixes (each applied only when its condition holds, and only inside Ultralytics' own modules):

* torch >= 2.6 loads with ``weights_only=True``, so every checkpoint load of 8.1 fails: Ultralytics' own load call
  sites (model loading, ``strip_optimizer``, the tuner) get ``weights_only=False``, as later releases pass.
* numpy >= 2.4 has no ``np.trapz`` (used for mAP): Ultralytics' metrics get ``np.trapezoid`` under that name.
* torch >= 2.9 exports ONNX with the dynamo exporter by default, and 8.1's opset guess lands on 9 with newer torch:
  its exporter gets the TorchScript exporter and opset 17.

Then ``activate()`` registers the plugin (:mod:`ultralytics_prune_plugin.integration.registration`).
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

SERIES = "8.1"


def supports(version: str) -> bool:
    """Return True for Ultralytics versions of the 8.1 series."""
    return in_series(version, SERIES)


def apply() -> None:
    """Apply the compatibility fixes. Called once per process by ``activate()``, which then registers the plugin."""
    apply_fixes()
