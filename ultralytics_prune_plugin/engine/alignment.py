"""``round_to=auto``: the channel alignment of a run, chosen by measuring it on the run's runtime.

Runtimes compute convolutions in blocks of channels (ONNX Runtime's CPU kernels in blocks of 8 floats with AVX2 and
16 with AVX-512), so widths that fill whole blocks run faster per MAC, and which multiple pays depends on the
runtime, the CPU, the thread count and the input size. :func:`resolve_round_to` measures it:

1. For each of :data:`CANDIDATES`, a copy of the run's input is pruned uniformly by DepGraph (the run's
   ``prune_head`` and ``ignore_layers``) to :data:`GOAL_FRACTION` of its MACs with that ``round_to`` (the bisection a
   ``target_macs`` run makes), so that all copies have about the same MACs.
2. The copies are exported (the graph the run's ``pruned.onnx`` gets) and timed together, interleaved, at the run's
   ``imgsz``, batch 1, ``threads=``, in ``runtime=``; each copy's fastest run, scaled to the goal's MACs
   (``ms × goal ÷ MACs``, which evens out the rounding's small differences), is its figure.
3. The fastest wins. Candidates within :data:`TIE` of it count as equally fast, and the smallest of them is chosen:
   finer widths leave the pruning more freedom. A candidate whose alignment cannot prune the model that far (its
   MACs stay more than :data:`REACH` above the goal: a layer never goes below one multiple) is not compared.

4. A latency target the chosen alignment cannot reach (a coarse multiple stops the widths before the MACs the target
   needs: the goal's half of the MACs is not always far enough) is searched again with the next finer candidate
   (:func:`finer_alignment`), as often as needed; the report's ``round_to`` record lists what was given up
   (``fallbacks``).

When: ``round_to=auto``, the default, measures only where the run measures latency anyway, a latency target
(``target_speedup``, ``target_latency``) or ``allocation=latency``. Elsewhere it is :data:`DEFAULT` without a
measurement, so that a MACs-targeted run gives the same widths on every machine. The measurement is cached
(:mod:`~ultralytics_prune_plugin.deploy.measure_cache`, under ``prune_plugin/alignment/``) for the runtime and its
version, the CPU model, ``imgsz``, ``threads``, ``fast_dfl``, the input's widths and the candidates; the report's
``round_to`` record holds it.
"""

from __future__ import annotations

from copy import copy, deepcopy
from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, Optional

from torch import nn
from ultralytics.utils import LOGGER

from ultralytics_prune_plugin.engine.run_config import PREFIX

AUTO = "auto"
CANDIDATES = (4, 8, 16, 32)
DEFAULT = 8  # round_to=auto where the run measures no latency
GOAL_FRACTION = 0.5  # every candidate is pruned to this fraction of the input's MACs
TIE = 0.02  # candidates within 2 % of the fastest count as equally fast
REACH = 0.02  # a candidate more than 2 % above the goal's MACs cannot be pruned that far and is not compared
RUNS, WARMUP = 30, 5
FORMAT = 1  # bumped when the cached record's layout or the way it is measured changes


def measures_alignment(args) -> bool:
    """Whether ``round_to=auto`` is measured in this run: a latency target or ``allocation=latency``."""
    from ultralytics_prune_plugin.engine.allocation import LATENCY
    from ultralytics_prune_plugin.engine.latency_target import latency_request

    return args.round_to == AUTO and (latency_request(args) is not None
                                      or getattr(args, "allocation", "uniform") == LATENCY)


def resolve_round_to(args, model: nn.Module, baseline_macs: float, work_dir: Path,
                     cache_dir: Optional[Path] = None) -> Optional[Dict[str, Any]]:
    """Replace ``args.round_to='auto'`` by a number of channels; return the report's ``round_to`` record.

    Args:
        args: The run's arguments (``round_to``, ``runtime``, ``threads``, ``imgsz``, ``fast_dfl``, ``prune_head``,
            ``ignore_layers``); ``round_to`` is set here.
        model: The run's input, prepared for pruning; it is not changed.
        baseline_macs: Its MACs at ``imgsz``.
        work_dir: A folder for the temporary ONNX files (removed afterwards).
        cache_dir: The cache folder; default ``<Ultralytics settings>/prune_plugin/alignment``.

    Returns:
        None when ``round_to`` was not ``auto``; else ``{"chosen", "measured", ...}`` (``measured`` False: the
        default without a measurement).
    """
    if args.round_to != AUTO:
        return None
    if not measures_alignment(args):
        args.round_to = DEFAULT
        return {"chosen": DEFAULT, "measured": False,
                "why": "no latency target and allocation=uniform: the default, the same on every machine"}
    from ultralytics_prune_plugin.deploy import measure_cache
    from ultralytics_prune_plugin.deploy.layer_latency import table_key

    imgsz, threads, fast_dfl = int(args.imgsz), args.threads, bool(getattr(args, "fast_dfl", False))
    key = {**table_key(model, imgsz, args.runtime, threads, fast_dfl), "format": FORMAT, "kind": "alignment",
           "candidates": list(CANDIDATES), "goal_fraction": GOAL_FRACTION, "prune_head": bool(args.prune_head),
           "ignore_layers": sorted(args.ignore_layers or [])}
    folder = Path(cache_dir) if cache_dir is not None else measure_cache.default_cache_dir("alignment")
    path = measure_cache.cache_file(folder, f"{args.runtime}_{imgsz}", key)
    data, from_cache = measure_cache.reuse_or_measure(
        path, key, lambda: _measure(model, args, baseline_macs, work_dir), _stored_record)
    record = {**data, "from_cache": from_cache, "path": str(path), "measured": True}
    args.round_to = record["chosen"]
    times = ", ".join(f"{c['round_to']}: {c['ms_at_goal']:.2f} ms" for c in record["candidates"])
    LOGGER.info(f"{PREFIX}round_to=auto: {record['chosen']} channels, measured fastest in {args.runtime} at "
                f"imgsz={imgsz}, threads={threads} at {GOAL_FRACTION:g} of the MACs ({times}; "
                f"{'cached' if record['from_cache'] else 'measured now'})")
    return {k: v for k, v in record.items() if k != "key"}


def _stored_record(data: Dict[str, Any]) -> Dict[str, Any]:
    """A stored alignment record as it is; ``ValueError`` where its choice is not a candidate (a file to measure again)."""
    if data["chosen"] not in CANDIDATES:
        raise ValueError(f"round_to {data['chosen']!r} is not a candidate")
    return data


def finer_alignment(record: Optional[Dict[str, Any]]) -> Optional[int]:
    """The next candidate finer than a measured choice, or None (not ``auto``, not measured, or already the finest).

    Args:
        record: The report's ``round_to`` record (:func:`resolve_round_to`'s return value), or None.
    """
    if not record or not record.get("measured"):
        return None
    finer = [unit for unit in CANDIDATES if unit < record["chosen"]]
    return max(finer) if finer else None


def _measure(model: nn.Module, args, baseline_macs: float, work_dir: Path) -> Dict[str, Any]:
    """Prune a copy per candidate to the goal's MACs, time them together; the record without its key."""
    import shutil
    import tempfile

    from ultralytics_prune_plugin.deploy.latency import time_models
    from ultralytics_prune_plugin.deploy.machine_load import OtherLoad
    from ultralytics_prune_plugin.deploy.module_onnx import export_module_onnx
    from ultralytics_prune_plugin.engine.latency_target import silent
    from ultralytics_prune_plugin.engine.methods import DepGraphMethod, prune_options
    from ultralytics_prune_plugin.pruning.depgraph import prune_once

    imgsz, goal = int(args.imgsz), GOAL_FRACTION * baseline_macs
    # uniform widths: the allocation, the importance and per-layer rates are the run's business, not the runtime's
    options = replace(prune_options(args, 1), importance="l2", global_pruning=False, layer_ratios={},
                      latency_weights={}, gradients=None)
    rows, files = [], {}
    folder = Path(tempfile.mkdtemp(prefix="alignment_", dir=work_dir))
    try:
        for unit in CANDIDATES:
            trial = copy(args)
            trial.round_to = unit
            with silent():
                ratio, _ = DepGraphMethod.ratio_for(deepcopy(model), goal, trial, options)
                candidate = deepcopy(model)
                macs = float(prune_once(candidate, imgsz, ratio, round_to=unit, options=options)["macs_after"])
            files[unit] = export_module_onnx(candidate, imgsz, folder / f"round_to_{unit}.onnx",
                                             fast_dfl=bool(getattr(args, "fast_dfl", False)))
            rows.append({"round_to": unit, "ratio": ratio, "macs": macs, "macs_fraction": macs / baseline_macs})
            del candidate
        with OtherLoad() as load:
            timed = time_models({str(u): (args.runtime, f) for u, f in files.items()}, imgsz, runs=RUNS,
                                warmup=WARMUP, threads=args.threads)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    for row in rows:
        times = timed[str(row["round_to"])]
        row.update(latency_ms=times["min_ms"], median_ms=times["median_ms"],
                   ms_at_goal=times["min_ms"] * goal / row["macs"])
    for row in rows:  # a coarse alignment may not prune a small model that far: it cannot be compared at the goal
        row["reaches_goal"] = row["macs"] <= goal * (1 + REACH)
    able = [row for row in rows if row["reaches_goal"]] or rows
    fastest = min(row["ms_at_goal"] for row in able)
    chosen = min(row["round_to"] for row in able if row["ms_at_goal"] <= fastest * (1 + TIE))
    return {"chosen": chosen, "candidates": rows, "runtime": args.runtime, "threads": args.threads, "imgsz": imgsz,
            "goal_fraction": GOAL_FRACTION, "tie": TIE, "runs": RUNS, "statistic": "min_ms",
            "other_load": load.share}
