"""Every change the plugin makes to Ultralytics (the adapters' fixes, the registration) goes through these functions,
so that activation is all-or-nothing.

Inside :func:`all_or_nothing` each change is recorded with what it replaced; when the block fails, the changes are
undone newest first and Ultralytics is left exactly as it was installed. Outside the block changes are applied
without a record.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterable, List, MutableMapping, MutableSet, Optional

_MISSING = object()
_undo: Optional[List[Callable[[], None]]] = None  # the undo steps of the activation in progress


def _record(undo: Callable[[], None]) -> None:
    if _undo is not None:
        _undo.append(undo)


def patch_attr(owner: Any, name: str, value: Any) -> None:
    """Set ``owner.name = value`` (a module, class or namespace); undone by restoring or deleting its own entry."""
    old = vars(owner).get(name, _MISSING)  # the owner's own entry, not one inherited from a base class
    setattr(owner, name, value)
    _record(lambda: delattr(owner, name) if old is _MISSING else setattr(owner, name, old))


def patch_default(mapping: MutableMapping, key: Any, value: Any) -> None:
    """``mapping.setdefault(key, value)``; undone by removing the key if it was added."""
    if key not in mapping:
        mapping[key] = value
        _record(lambda: mapping.pop(key, None))


def patch_set_add(target: MutableSet, items: Iterable) -> None:
    """Add ``items`` to the set ``target``; undone by removing those that were not in it."""
    added = [item for item in items if item not in target]
    target.update(added)
    _record(lambda: target.difference_update(added))


@contextmanager
def all_or_nothing():
    """Record every patch made inside the block; if the block raises, undo them all (newest first) and re-raise.

    Raises:
        RuntimeError: If some undo step itself fails (naming how many), chained to the original error.
    """
    global _undo
    outer, _undo = _undo, []
    try:
        yield
    except BaseException as error:
        steps, _undo = _undo, outer
        failed = 0
        for undo in reversed(steps):
            try:
                undo()
            except Exception:  # keep undoing the rest; the count is reported below
                failed += 1
        if failed:
            raise RuntimeError(f"{failed} of {len(steps)} changes to Ultralytics could not be undone") from error
        raise
    else:
        if outer is not None:  # a nested block: its changes are the outer block's to undo
            outer.extend(_undo)
    finally:
        _undo = outer
