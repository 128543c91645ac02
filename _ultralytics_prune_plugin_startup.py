"""Start-up hook of ultralytics-prune-plugin: ``ultralytics_prune_plugin.pth`` calls :func:`install` in every process.

It imports nothing heavy. It only registers an import hook that activates the plugin right after the ``ultralytics``
package has finished importing, so processes that never import Ultralytics pay nothing, and processes that do (the
``yolo`` command, user scripts, DataLoader workers, multi-GPU ranks) get the plugin without importing it themselves.
Set ``ULTRALYTICS_PRUNE_PLUGIN_DISABLE=1`` to switch it off. Nothing here may ever break interpreter start-up.
"""

import os
import sys

DISABLE_ENV = "ULTRALYTICS_PRUNE_PLUGIN_DISABLE"  # also in ultralytics_prune_plugin.integration.activation


def disabled():
    """Return True when the environment switches the plugin off."""
    return os.environ.get(DISABLE_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


class ActivateAfterUltralyticsImport:
    """A ``sys.meta_path`` finder that wraps the loader of ``ultralytics`` to activate the plugin once it is loaded."""

    def find_spec(self, fullname, path=None, target=None):
        """Find ``ultralytics`` with the remaining finders and return its spec with an activating loader."""
        if fullname != "ultralytics":
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)  # one shot: later imports go the ordinary way
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            spec = find(fullname, path, target) if find else None
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        exec_module = getattr(loader, "exec_module", None)
        if exec_module is None:
            return spec

        def exec_then_activate(module):
            exec_module(module)
            activate_quietly()

        try:
            loader.exec_module = exec_then_activate
        except (AttributeError, TypeError) as e:  # a loader that refuses new attributes: leave Ultralytics alone
            _warn(f"the import hook cannot wrap the loader of ultralytics ({type(e).__name__}: {e}); the plugin is "
                  "inactive unless 'import ultralytics_prune_plugin' activates it")
        return spec


def activate_quietly():
    """Activate the plugin; on any failure warn and leave Ultralytics as it was."""
    try:
        from ultralytics_prune_plugin.integration.activation import activate

        activate()
    except Exception as e:  # never break the user's import of ultralytics
        _warn(f"could not be activated and is inactive: {e}")


def install():
    """Register the import hook, unless disabled or Ultralytics is already imported."""
    try:
        if disabled():
            return
        if "ultralytics" in sys.modules:
            activate_quietly()
        elif not any(isinstance(f, ActivateAfterUltralyticsImport) for f in sys.meta_path):
            sys.meta_path.insert(0, ActivateAfterUltralyticsImport())
    except Exception as e:  # broad on purpose: a .pth line must never break interpreter start-up; say it once
        _warn(f"the start-up hook failed ({type(e).__name__}: {e}); the plugin is inactive unless "
              "'import ultralytics_prune_plugin' activates it")


def _warn(message):
    """Warn in one line, prefixed with the plugin's name."""
    import warnings

    warnings.warn(f"ultralytics-prune-plugin: {' '.join(str(message).splitlines())}", stacklevel=3)

