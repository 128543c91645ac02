"""How busy the machine is with other work while this process measures latency.

Latency measured while another job runs on the same CPU is slower, and slower unevenly: layers that parallelise
lose more than those that do not. A cached per-layer latency table (:mod:`.layer_latency`) measured under such load
would steer every later run on a quiet machine. :class:`OtherLoad` measures the share of the machine's CPU time that
*other* processes used during a measurement: the busy time of all CPUs (Linux ``/proc/stat``) minus this process's own
CPU time (all its threads, the runtime's included), over the wall time times the number of CPUs. 0 is a machine
doing nothing else, 0.5 one other busy core of two, 1 every core taken by others. Where ``/proc/stat`` is missing
(macOS, Windows) the share is None: unknown, and the cache then treats tables as it always did.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Optional, Tuple

__all__ = ["OtherLoad", "other_load_now", "BUSY"]

BUSY = 0.25  # a measurement during which others used at least this share of the CPUs counts as made under load
STAT = Path("/proc/stat")


def _cpu_seconds() -> Optional[Tuple[float, int]]:
    """(busy seconds of all CPUs since boot, number of CPUs) from ``/proc/stat``; None where it cannot be read."""
    try:
        lines = STAT.read_text().splitlines()
    except OSError:
        return None
    total = next((ln.split()[1:] for ln in lines if ln.startswith("cpu ")), None)
    cpus = sum(1 for ln in lines if ln.startswith("cpu") and ln[3:4].isdigit())
    if not total or len(total) < 4 or not cpus:
        return None
    ticks = [int(v) for v in total[:8]]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle and waiting for I/O
    return (sum(ticks) - idle) / os.sysconf("SC_CLK_TCK"), cpus


def _own_seconds() -> float:
    """CPU seconds this process has used, all threads."""
    t = os.times()
    return t.user + t.system


class OtherLoad:
    """Context manager: the share of the CPUs other processes used while its block ran (``share``, None if unknown).

    Example:
        >>> with OtherLoad() as load:
        ...     measure()
        >>> load.share  # e.g. 0.02 on a quiet machine, 0.5 with one other busy core of two
    """

    def __init__(self):
        self.share: Optional[float] = None
        self._start: Optional[Tuple[float, float, float, int]] = None

    def __enter__(self) -> "OtherLoad":
        cpu = _cpu_seconds()
        self._start = None if cpu is None else (time.perf_counter(), cpu[0], _own_seconds(), cpu[1])
        return self

    def __exit__(self, *exc) -> None:
        cpu = _cpu_seconds()
        if self._start is None or cpu is None:
            return
        wall0, busy0, own0, cpus = self._start
        wall = time.perf_counter() - wall0
        if wall <= 0:
            return
        others = (cpu[0] - busy0) - (_own_seconds() - own0)
        self.share = round(min(max(others / (wall * cpus), 0.0), 1.0), 3)


def other_load_now(seconds: float = 0.5) -> Optional[float]:
    """The share of the CPUs other processes use, sampled for ``seconds`` while this process sleeps."""
    with OtherLoad() as load:
        time.sleep(seconds)
    return load.share
