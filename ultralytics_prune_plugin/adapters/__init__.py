"""One adapter per Ultralytics release line: the only place where the plugin touches Ultralytics internals.

An adapter is a module with ``SUPPORTED`` (a predicate on the version string) and ``apply()``. Supporting a new
Ultralytics line means adding a module here, not editing the rest of the plugin.
"""

from __future__ import annotations

from types import ModuleType
from typing import Optional


def adapter_for(version: str) -> Optional[ModuleType]:
    """Return the adapter module for an Ultralytics ``version``, or None if that version is untested."""
    from . import ultralytics_8_1

    for adapter in (ultralytics_8_1,):
        if adapter.supports(version):
            return adapter
    return None
