"""Measurements cached on disk as JSON, keyed by what they are valid for, shared by every run on the machine.

A measurement (a per-layer latency table, the fastest channel alignment) is stored as ``{"key": {...}, ...}`` in
Ultralytics' settings folder (``USER_CONFIG_DIR``, set by ``YOLO_CONFIG_DIR``; ``yolo settings`` shows where), under
``prune_plugin/<kind>/``. A file is used only when its stored key equals the one asked for. Files are written
atomically, since two runs may read or write the same one at once.

A measurement also records the share of the CPUs other processes used while it was made
(:class:`~.machine_load.OtherLoad`). One made under load (at least :data:`~.machine_load.BUSY`) is provisional:
:func:`measure_again` samples the machine and says when it is clearly quieter now. The load is not part of the key:
it never repeats, so every file would be single-use.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple, TypeVar, Union

from ultralytics_prune_plugin.deploy.machine_load import BUSY, other_load_now

__all__ = ["default_cache_dir", "cache_file", "read_cached", "write_cached", "measure_again", "reuse_or_measure",
           "QUIETER"]

QUIETER = 0.1  # a provisional measurement is made again when the machine is now quieter by at least this share
T = TypeVar("T")


def default_cache_dir(kind: str) -> Path:
    """``<Ultralytics settings folder>/prune_plugin/<kind>``."""
    from ultralytics.utils import USER_CONFIG_DIR

    return Path(USER_CONFIG_DIR) / "prune_plugin" / kind


def cache_file(folder: Union[str, Path], prefix: str, key: Dict[str, Any]) -> Path:
    """The file of ``key`` in ``folder``: ``<prefix>_<hash of the key>.json``."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return Path(folder) / f"{prefix}_{digest}.json"


def read_cached(path: Path, key: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """The stored data at ``path`` when it exists, parses and was measured for ``key``; else None."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("key") == key else None


def write_cached(path: Path, data: Dict[str, Any]) -> None:
    """Write ``data`` to ``path`` atomically (another process may read or write the same file at once)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=path.stem, suffix=".tmp", dir=path.parent)
    with os.fdopen(handle, "w") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, path)


def measure_again(other_load: Optional[float]) -> bool:
    """Whether a measurement made while others used ``other_load`` of the CPUs should be made again: it was made under
    load and the machine is clearly quieter now (sampled for half a second). Unknown loads are never re-measured."""
    if other_load is None or other_load < BUSY:
        return False
    now = other_load_now()
    return now is not None and now <= other_load - QUIETER


def reuse_or_measure(path: Path, key: Dict[str, Any], measure: Callable[[], Dict[str, Any]],
                     load: Callable[[Dict[str, Any]], T]) -> Tuple[T, bool]:
    """The measurement stored at ``path`` for ``key``, or a new one, stored; one made under load is made again when the
    machine is clearly quieter (:func:`measure_again`), and whichever of the two was made under less load is kept.

    Args:
        path: The file (:func:`cache_file`).
        key: What the measurement is valid for.
        measure: Makes the measurement; returns its data with ``other_load`` (the key is added here).
        load: Turns stored data into the caller's object; raising ``TypeError``, ``KeyError`` or ``ValueError`` marks
            a file that cannot be used (it is measured again).

    Returns:
        ``(load(data), from_cache)``.
    """
    stored = read_cached(path, key)
    cached = None
    if stored is not None:
        try:
            cached = load(stored)
        except (TypeError, KeyError, ValueError):
            stored = None
    if stored is not None and not measure_again(stored.get("other_load")):
        return cached, True
    fresh = {**measure(), "key": key}
    if stored is not None and (fresh.get("other_load") is None or fresh["other_load"] >= stored["other_load"]):
        return cached, True  # the machine got busy again while measuring: the stored one stays the better one
    write_cached(path, fresh)
    return load(fresh), False
