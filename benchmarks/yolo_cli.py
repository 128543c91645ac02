"""The ``yolo`` command of the running interpreter's environment, for the benchmark scripts that drive it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import List


def yolo() -> str:
    """Path of the ``yolo`` console script beside this interpreter (``yolo`` on PATH if there is none)."""
    path = Path(sys.executable).with_name("yolo")
    return str(path) if path.exists() else "yolo"


def run_logged(args: List[str], log: Path) -> float:
    """Run ``yolo <args>`` in ``log``'s folder with its output in ``log``; return the wall time in seconds.

    Raises:
        RuntimeError: If the command fails; the message names the log.
    """
    start = time.time()
    with open(log, "w") as f:
        proc = subprocess.run([yolo(), *args], cwd=log.parent, stdout=f, stderr=subprocess.STDOUT, env={**os.environ})
    if proc.returncode:
        raise RuntimeError(f"yolo {' '.join(args)} failed (exit {proc.returncode}); see {log}")
    return time.time() - start
