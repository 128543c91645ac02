"""Run the ``yolo`` command line in this process and record this process's peak resident memory when it exits.

Usage: ``python benchmarks/peak_child.py OUT.json <yolo arguments...>``, e.g.
``python benchmarks/peak_child.py /tmp/val.json val model=yolov8n.pt data=coco8.yaml``.

Why not ``ru_maxrss`` from ``os.wait4`` in the parent: Linux carries the high-water mark of the pre-``exec`` memory
map into the child's ``ru_maxrss``, and a child forked from a benchmark process holding torch and several models
therefore reports at least the parent's size (every command measured 1222 MiB that way). ``VmHWM`` in
``/proc/self/status`` is the peak of this process's own memory map since ``exec``, which is what the command used.
"""

from __future__ import annotations

import atexit
import json
import sys
from pathlib import Path


def _record(path: str) -> None:
    """Write ``{"vmhwm_kib": ..., "vmrss_kib": ...}`` for this process to ``path``."""
    values = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            values[f"{key.lower()}_kib"] = int(rest.split()[0])
    Path(path).write_text(json.dumps(values))


if __name__ == "__main__":
    atexit.register(_record, sys.argv[1])
    sys.argv = ["yolo", *sys.argv[2:]]
    from ultralytics.cfg import entrypoint  # the `yolo` console script; the plugin activates on this import

    entrypoint()
