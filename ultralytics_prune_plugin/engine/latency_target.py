"""``target_speedup=`` / ``target_latency=``: find, by measuring candidate models, the MACs fraction that gives the
requested latency on the run's runtime; the run then proceeds as if ``target_macs=<that fraction>`` had been given.

MACs only stand in for latency: on ONNX Runtime CPU a 2.2× MACs cut of yolov8n gives about 1.6× (issue 17), and the
ratio depends on the runtime, its thread count and the input size. So the search measures instead of predicting:

1. The unpruned input and each candidate are exported to temporary ONNX files by
   :func:`~ultralytics_prune_plugin.deploy.module_onnx.export_module_onnx` (the graph the run's ``pruned.onnx``
   gets) and timed at the run's ``imgsz``, batch 1, ``threads=``, in ``runtime=`` (``onnxruntime`` or
   ``openvino``), with :func:`~ultralytics_prune_plugin.deploy.latency.time_models`: each candidate interleaved with
   the input, so that the speed-up of a pair is measured under the same machine load. The search compares each
   model's fastest run (``min_ms``), the one least disturbed by other processes: on a shared 2-core machine the
   medians of the same pair varied by 2× between rounds, their minima by a few per cent. Both are recorded.
2. A candidate is a deep copy of the input pruned by the run's own method and allocation (``method``,
   ``importance``, ``global_pruning``, ``round_to``, ``iterative_steps``, ...) at a rate, without fine-tuning
   (fine-tuning changes weights, not widths); its MACs fraction is counted. Pruning at a rate costs one prune per
   step, where a MACs target costs a bisection of about ten; the rate for a wanted fraction is interpolated from the
   candidates so far (:func:`_rate_for`).
3. The first candidate aims at ``f = 1 / requested speed-up`` of the MACs (a MACs cut equal to the speed-up). The
   next ones come from interpolation of log(latency / goal) against log(f): between the closest candidates on either
   side of the goal, or, while every candidate is still too slow, by extrapolation from the most pruned one (at most
   a third of the fraction per candidate). The search stops at the first candidate within
   :data:`TOLERANCE` of the goal, after :data:`MAX_CANDIDATES`, or when a rate gives the MACs of a candidate already
   timed (``round_to`` leaves no width between two candidates).
4. The chosen fraction is the MACs fraction of the least-pruned candidate within the tolerance (or faster); without
   one, of the closest (with a warning). The run then prunes with ``target_macs`` at that fraction, which gives the
   candidate's widths again, and fine-tunes as usual.

A request that even the most pruned candidate (:data:`MIN_MACS_FRACTION` of the input's MACs) does not reach ends the
run with one line (:class:`~ultralytics_prune_plugin.config.PluginArgumentError`) that says what was measured and
what can be asked for: pruning a model to its floor and fine-tuning it for a speed-up it cannot have wastes the run.
So does a ``target_latency`` the unpruned input already meets. The search is recorded either way
(``latency_target`` in ``prune_report.json``).
"""

from __future__ import annotations

import logging
import math
import shutil
import tempfile
from contextlib import contextmanager
from copy import copy, deepcopy
from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

from torch import nn
from ultralytics.utils import LOGGER

from ultralytics_prune_plugin.config import PluginArgumentError
from ultralytics_prune_plugin.engine.run_config import PREFIX

LATENCY_KEYS = ("target_speedup", "target_latency")
MIN_MACS_FRACTION = 0.1  # the most pruned candidate: below a tenth of the MACs a YOLO model keeps little of its mAP
MAX_FRACTION = 0.95  # the least pruned candidate
# MACs fraction ~ (1 - rate) ** FIRST_POWER: below 2 (both sides of a convolution shrink) because the stem's input, the
# head's outputs and unpruned layers keep their widths; yolov8n, uniform DepGraph at rate 0.29: 0.654 of the MACs, 1.22
FIRST_POWER = 1.25
MAX_RATE = 0.95  # the highest rate a candidate is pruned at (as DepGraph's target search and slim's)
MAX_CANDIDATES = 6
TOLERANCE = 0.03  # a candidate whose measured latency is within 3 % of the goal ends the search
RUNS, WARMUP = 30, 5  # timed and untimed runs per model and candidate
STATISTIC = "min_ms"  # what the search compares: each model's fastest run (see 1. above)


def latency_request(args) -> Optional[Tuple[str, float]]:
    """``(key, value)`` of the latency target the run was given (``target_speedup`` or ``target_latency``), or None."""
    for key in LATENCY_KEYS:
        value = getattr(args, key, None)
        if value is not None:
            return key, float(value)
    return None


def request_text(key: str, value: float) -> str:
    """The target as the user gave it: ``target_speedup=2`` or ``target_latency=12.5``."""
    return f"{key}={value:g}"


@contextmanager
def silent() -> Iterator[None]:
    """Hide every line below errors while candidates are pruned (their steps' lines and warnings are not the run's)."""
    import ultralytics.utils as ultralytics_utils

    level, bars = LOGGER.level, ultralytics_utils.VERBOSE
    LOGGER.setLevel(logging.ERROR)
    ultralytics_utils.VERBOSE = False
    try:
        yield
    finally:
        LOGGER.setLevel(level)
        ultralytics_utils.VERBOSE = bars


def prune_candidate(model: nn.Module, method, inputs, rate: float) -> Tuple[nn.Module, float]:
    """A deep copy of ``model`` pruned by ``method`` as a run with ``rate=rate`` (and no target) prunes it, every
    step, without fine-tuning; returns ``(copy, its MACs)``.

    A candidate is pruned at a rate, not at a MACs target: a target costs a bisection of prune trials per step (about
    ten), a rate one prune per step, and the MACs the candidate reaches are measured. A run with ``target_macs`` set to
    that fraction prunes to the same widths (the same uniform ratio; globally ranked, the same threshold).
    """
    from ultralytics_prune_plugin.pruning.counting import count_macs_params

    args = copy(inputs.args)
    args.rate, args.target_macs, args.target_gmacs = rate, None, None
    candidate_inputs = replace(inputs, args=args, macs_goal=None, target_text=None)
    candidate = deepcopy(model)
    steps = method.steps(candidate_inputs, candidate, 1)
    try:
        pruned = next(steps, None)
        while pruned is not None:
            candidate = pruned.model
            try:
                pruned = steps.send(candidate)
            except StopIteration:
                pruned = None
    finally:
        steps.close()
    macs, _ = count_macs_params(candidate, inputs.args.imgsz)
    return candidate, float(macs)


def _rate_for(fraction: float, pairs: List[Tuple[float, float]]) -> float:
    """The rate expected to leave ``fraction`` of the MACs, from the ``(rate, reached fraction)`` pairs measured so far.

    Between two measured pairs, log(1 - rate) is interpolated linearly in log(fraction); outside, the fraction is
    taken as ``(1 - rate) ** p`` with ``p`` from the nearest pair (:data:`FIRST_POWER` before any).
    """
    known = sorted([(0.0, 1.0)] + [p for p in pairs if 0.0 < p[1] < 1.0], key=lambda p: p[1])
    target = math.log(fraction)
    below = [p for p in known if p[1] <= fraction]
    above = [p for p in known if p[1] > fraction]
    if below and above:
        (r1, f1), (r2, f2) = max(below, key=lambda p: p[1]), min(above, key=lambda p: p[1])
        if f1 < f2:
            t = (target - math.log(f1)) / (math.log(f2) - math.log(f1))
            keep = math.exp(math.log(1 - r1) + t * (math.log(1 - r2) - math.log(1 - r1)))
            return min(max(1 - keep, 0.01), MAX_RATE)
    nearest = min((p for p in known if p[0] > 0), key=lambda p: abs(math.log(p[1]) - target), default=None)
    power = math.log(nearest[1]) / math.log(1 - nearest[0]) if nearest else FIRST_POWER
    power = power if power > 0.5 else FIRST_POWER
    return min(max(1 - fraction ** (1 / power), 0.01), MAX_RATE)


def _next_fraction(points: List[Tuple[float, float]], first: float) -> Optional[float]:
    """The next MACs fraction to measure, from ``(fraction, error)`` points, error = log(latency / goal latency);
    the input is the point ``(1.0, error)``. None when the search cannot go further (the floor is too slow)."""
    floor, top = math.log(MIN_MACS_FRACTION), math.log(MAX_FRACTION)
    candidates = [p for p in points if p[0] < 1.0]
    if not candidates:
        return min(max(first, MIN_MACS_FRACTION), MAX_FRACTION)
    pts = sorted(((math.log(f), e) for f, e in points), key=lambda p: p[0])
    slow = [p for p in pts if p[1] > 0]  # too slow: prune more
    fast = [p for p in pts if p[1] <= 0]  # fast enough: prune less
    tried = {round(f, 4) for f, _ in candidates}
    if fast and slow:
        (xs, es), (xf, ef) = min(slow, key=lambda p: p[0]), max(fast, key=lambda p: p[0])
        if xs <= xf:  # noise: a faster candidate above a slower one; bisect between the nearest fast and slow
            x = (xs + xf) / 2
        else:
            x = xf + (0 - ef) * (xs - xf) / (es - ef)
            margin = 0.1 * (xs - xf)  # keep strictly inside the bracket
            x = min(max(x, xf + margin), xs - margin)
    elif slow:
        x1, e1 = min(slow, key=lambda p: p[0])  # the most pruned
        if x1 <= floor + 1e-9:
            return None
        # the secant to the nearest slow point at least 0.1 away in log(f) (the input, at worst): two candidates of
        # nearly the same MACs (round_to steps) give a noisy, flat slope that would throw the next one to the floor
        x2, e2 = min((p for p in slow if p[0] - x1 >= 0.1), key=lambda p: p[0], default=(0.0, pts[-1][1]))
        slope = (e2 - e1) / (x2 - x1) if x2 > x1 else 0.0
        x = x1 - e1 / slope if slope > 1e-3 else x1 - math.log(3)
        x = max(x, x1 - math.log(3), floor)
    else:  # every candidate is fast enough: prune less
        x1, e1 = max(fast, key=lambda p: p[0])
        if x1 >= top - 1e-9:
            return None
        x = min(x1 + math.log(1.5), top)
    fraction = min(max(math.exp(x), MIN_MACS_FRACTION), MAX_FRACTION)
    return None if round(fraction, 4) in tried else fraction



def search_macs_fraction(
    model: nn.Module, method, inputs, work_dir: Path, fast_dfl: bool = False
) -> Dict[str, Any]:
    """Find the MACs fraction that meets the run's ``target_speedup`` / ``target_latency`` on ``runtime=``.

    Args:
        model: The run's input, prepared for pruning; it is not changed.
        method: The run's pruning method (:data:`~.methods.METHODS`), which prunes the candidates.
        inputs: The run's :class:`~.methods.MethodInputs` (its MACs goal is replaced per candidate).
        work_dir: A folder where a temporary folder of ONNX files is made and removed.
        fast_dfl: Export with the run's ``fast_dfl``, as its final files are.

    Returns:
        The report's ``latency_target`` record; ``chosen_macs_fraction`` is the fraction the run prunes to.

    Raises:
        PluginArgumentError: The request cannot be met (one line; the record is in the exception's ``record``).
    """
    from ultralytics_prune_plugin.deploy.latency import time_models
    from ultralytics_prune_plugin.deploy.module_onnx import export_module_onnx

    args = inputs.args
    key, requested = latency_request(args)
    runtime, threads, imgsz = args.runtime, args.threads, int(args.imgsz)
    record: Dict[str, Any] = {
        "key": key, "requested": requested, "runtime": runtime, "threads": threads, "imgsz": imgsz, "batch": 1,
        "method": args.method, "runs": RUNS, "statistic": STATISTIC, "tolerance": TOLERANCE, "candidates": [],
    }
    folder = Path(tempfile.mkdtemp(prefix="latency_target_", dir=work_dir))
    try:
        base_file = export_module_onnx(model, imgsz, folder / "input.onnx", fast_dfl=fast_dfl)
        base = time_models({"input": (runtime, base_file)}, imgsz, runs=RUNS, warmup=WARMUP, threads=threads)
        record["input_ms"] = base["input"][STATISTIC]
        if key == "target_latency":
            first = requested / record["input_ms"]  # MACs in proportion to the latency
            if record["input_ms"] <= requested:
                record.update(chosen_macs_fraction=None, met=False)
                raise _unmet(record, f"'target_latency={requested:g}' is already met by the unpruned input, which "
                                     f"measures {record['input_ms']:.2f} ms in {runtime} at imgsz={imgsz}; nothing to "
                                     "prune for: ask for less, or give target_macs or rate")
        else:
            first = 1.0 / requested
        points = [(1.0, _error(key, requested, record["input_ms"], record["input_ms"]))]
        pairs: List[Tuple[float, float]] = []  # (rate, reached MACs fraction) of every candidate
        for i in range(MAX_CANDIDATES):
            wanted = _next_fraction(points, first)
            if wanted is None:
                break
            rate = round(_rate_for(wanted, pairs), 4)
            if any(abs(rate - r) < 1e-4 for r, _ in pairs):
                break  # the same candidate again: nothing new to learn
            with silent():
                candidate, macs = prune_candidate(model, method, inputs, rate)
            fraction = macs / inputs.baseline_macs
            if any(macs == row["macs"] for row in record["candidates"]):
                break  # the widths of a candidate already timed: round_to allows nothing between its neighbours
            pairs.append((rate, fraction))
            path = export_module_onnx(candidate, imgsz, folder / f"candidate_{i}.onnx", fast_dfl=fast_dfl)
            del candidate
            timed = time_models({"input": (runtime, base_file), "candidate": (runtime, path)}, imgsz, runs=RUNS,
                                warmup=WARMUP, threads=threads)
            path.unlink()
            base_ms, ms = timed["input"][STATISTIC], timed["candidate"][STATISTIC]
            error = _error(key, requested, base_ms, ms)
            row = {"macs_fraction": fraction, "macs": macs, "rate": rate, "wanted_macs_fraction": wanted,
                   "latency_ms": ms, "input_ms": base_ms, "speedup": base_ms / ms,
                   "median_ms": timed["candidate"]["median_ms"], "input_median_ms": timed["input"]["median_ms"]}
            record["candidates"].append(row)
            LOGGER.info(
                f"{PREFIX}{request_text(key, requested)}: candidate {i + 1} (rate {rate:.3f}) has {fraction:.3f} of "
                f"the MACs ({macs / 1e9:.3f} G) and measures {ms:.2f} ms against the input's {base_ms:.2f} ms: "
                f"{row['speedup']:.2f}× in {runtime}"
            )
            points.append((fraction, error))
            if abs(error) <= math.log(1 + TOLERANCE):
                break
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return _choose(record)


def _error(key: str, requested: float, base_ms: float, ms: float) -> float:
    """log(latency / goal latency) of a model timed at ``ms`` beside the input at ``base_ms``: > 0 too slow."""
    goal = requested if key == "target_latency" else base_ms / requested
    return math.log(ms / goal)


def _choose(record: Dict[str, Any]) -> Dict[str, Any]:
    """Set the chosen fraction: the least pruned candidate within the tolerance or faster, else the closest; raise
    when even the most pruned one is too slow."""
    key, requested = record["key"], record["requested"]
    rows = record["candidates"]
    errors = [_error(key, requested, r["input_ms"], r["latency_ms"]) for r in rows]
    ok = [r for r, e in zip(rows, errors) if e <= math.log(1 + TOLERANCE)]
    if ok:
        best = max(ok, key=lambda r: r["macs_fraction"])
    else:
        best = min(zip(rows, errors), key=lambda p: abs(p[1]))[0]
    record["chosen_macs_fraction"] = best["macs_fraction"]
    record["chosen_speedup"] = best["speedup"]
    record["chosen_latency_ms"] = best["latency_ms"]
    record["met"] = bool(ok)
    most = min(rows, key=lambda r: r["macs_fraction"])
    if not ok and (most["macs_fraction"] <= MIN_MACS_FRACTION + 1e-3 or most["rate"] >= MAX_RATE - 1e-6
                   or most["wanted_macs_fraction"] <= MIN_MACS_FRACTION + 1e-9):
        fastest = max(rows, key=lambda r: r["speedup"])
        raise _unmet(
            record,
            f"'{request_text(key, requested)}' is out of reach in {record['runtime']} at imgsz={record['imgsz']}: the "
            f"most pruned candidate (target_macs={most['macs_fraction']:.2f}) measures {most['latency_ms']:.2f} ms, "
            f"{most['speedup']:.2f}× the input's speed (best {fastest['speedup']:.2f}×); ask for less "
            + (f"(at most {fastest['speedup']:.2f}×)" if key == "target_speedup"
               else f"(at least {fastest['latency_ms']:.2f} ms)")
            + ", or give target_macs",
        )
    return record


def _unmet(record: Dict[str, Any], message: str) -> PluginArgumentError:
    """The one-line error of a request the search cannot meet, carrying the search's record."""
    record["met"] = False
    record["error"] = message
    error = PluginArgumentError(message)
    error.record = record
    return error
