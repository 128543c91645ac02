"""The Ultralytics series adapters: the bottom layer of the plugin, which imports nothing else of it.

Series that name Ultralytics' internals alike and need the same fixes share one adapter (``ultralytics_8_1_8_2``,
``ultralytics_8_3_8_4``). Each has ``supports(version)``, ``apply()`` (its compatibility fixes, :mod:`.compat`) and
the few internals the rest of the plugin needs, under one name for every series: ``load_yaml``, ``unwrap_model``, ``load_weights`` and ``after_cfg_print``. The rest of the plugin reaches
them through :func:`internals`; the registration every series shares is
:mod:`ultralytics_prune_plugin.integration.registration`, which ``activate()`` runs after ``apply()``. Every change
to Ultralytics goes through :mod:`.patching`. Supporting a new series means adding a module here and naming it in
:data:`SERIES_MODULES`.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Optional

SERIES_MODULES = ("ultralytics_8_1_8_2", "ultralytics_8_3_8_4")
SUPPORTED_RANGE = ">=8.1.0,<8.5"  # keep in step with setup.py's install_requires


def adapter_for(version: str) -> Optional[ModuleType]:
    """Return the adapter module for an Ultralytics ``version``, or None if that series is not supported."""
    for name in SERIES_MODULES:
        adapter = importlib.import_module(f"{__name__}.{name}")
        if adapter.supports(version):
            return adapter
    return None


def internals() -> ModuleType:
    """Return the adapter of the installed Ultralytics, whose functions name its internals for the plugin.

    Raises:
        RuntimeError: If the installed Ultralytics is not a supported series.
    """
    import ultralytics

    adapter = adapter_for(ultralytics.__version__)
    if adapter is None:
        raise RuntimeError(f"ultralytics {ultralytics.__version__} is not supported ({SUPPORTED_RANGE})")
    return adapter
