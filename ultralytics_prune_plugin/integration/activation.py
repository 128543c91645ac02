"""Activation of the plugin: pick the adapter for the installed Ultralytics, apply its fixes and register the plugin,
once per process."""

from __future__ import annotations

import os
import warnings

# The start-up hook (_ultralytics_prune_plugin_startup.py) keeps its own copy of this switch: importing any module of
# this package runs the package's __init__, which activates the plugin, so the hook cannot import it at start-up.
DISABLE_ENV = "ULTRALYTICS_PRUNE_PLUGIN_DISABLE"


def disabled() -> bool:
    """Return True when the environment switches the plugin off."""
    return os.environ.get(DISABLE_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


_state = {"status": None}  # None: not tried; "activating"; True: active; False: inactive


def _warn_once(message: str) -> None:
    """Warn once per process; later activation attempts stay silent."""
    if not _state.get("warned"):
        _state["warned"] = True
        warnings.warn(f"ultralytics-prune-plugin: {message}", stacklevel=3)


def activate() -> bool:
    """Patch the installed Ultralytics so that it knows the plugin's modes and keys.

    Idempotent: the second and later calls return the first call's result. When ``ULTRALYTICS_PRUNE_PLUGIN_DISABLE``
    is set, when Ultralytics is missing, or when its version is one the plugin was not tested on, nothing is changed.
    All or nothing: when the adapter's fixes or the registration fail midway, every change already made is undone and
    the failure is reported in one warning line.

    Returns:
        (bool): True when the plugin is active in this process.
    """
    status = _state["status"]
    if status is not None:
        return status is True or status == "activating"
    if disabled():
        _state["status"] = False
        return False
    _state["status"] = "activating"  # importing ultralytics below re-enters through the start-up hook
    try:
        import ultralytics
    except ImportError:
        _state["status"] = False
        _warn_once("ultralytics is not installed; the plugin is inactive.")
        return False

    from ultralytics_prune_plugin.adapters import adapter_for

    adapter = adapter_for(ultralytics.__version__)
    if adapter is None:
        _state["status"] = False
        _warn_once(
            f"ultralytics {ultralytics.__version__} is not a version this plugin was tested on; the plugin is "
            f"inactive and Ultralytics is unchanged. Set {DISABLE_ENV}=1 to silence this warning."
        )
        return False
    from ultralytics_prune_plugin.adapters.patching import all_or_nothing

    try:
        with all_or_nothing():  # a failure midway undoes every change already made
            adapter.apply()  # the series' compatibility fixes
            from ultralytics_prune_plugin.integration.registration import register

            register(adapter)
    except Exception as e:
        _state["status"] = False
        reason = str(e).strip().splitlines()[0] if str(e).strip() else ""
        _warn_once(
            f"activation failed ({type(e).__name__}{': ' + reason if reason else ''}); every change was undone, so "
            f"Ultralytics {ultralytics.__version__} is unchanged and the plugin is inactive."
        )
        return False
    _state["status"] = True
    return True


def is_active() -> bool:
    """Return True when the plugin has patched Ultralytics in this process."""
    return _state["status"] is True
