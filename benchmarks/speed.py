"""Part 2 of the benchmark: does the ONNX Runtime CPU speed-up track the MACs cut? (640 px, batch 1)

Latency does not depend on the weights, so untrained ``yolov8n.yaml`` / ``yolov8s.yaml`` models (80 classes, as
deployed on COCO) are pruned at ``rate`` with ``epochs=0`` through ``YOLO(...).prune()``; each run exports its
baseline and its result with Ultralytics' exporter. Then, in this process:

* **round_to**: every variant (no rounding, 8, 16, 32) is timed with its baseline, all sessions taking turns run by
  run (``measure_latency(..., alternate=True)``), ``repeats`` times; the speed-up ÷ MACs ratio of each repeat is kept,
  so the spread says how much the machine's load moved it.
* **export variants**: the ``onnxsim`` that Ultralytics runs for ``simplify=True``, and ``onnxslim``, when
  installed; and the plugin's ``fast_dfl=True``, the Detect head's DFL exported with its softmax over the last
  axis (``ultralytics_prune_plugin.deploy.fast_dfl``).
* **threads**: ONNX Runtime's default (one per core) against one thread.
* **session options**: graph optimisation level ``ALL`` (the plugin's default, which includes ONNX Runtime's NCHWc
  layout) against ``EXTENDED`` and ``BASIC``, and thread spinning on (each model timed in a block, since spinning
  sessions taking turns steal each other's cores).
* **profile**: where the time and the MACs sit, per category (:mod:`ort_profile`).
* **trained models**: the benchmark's own trained and pruned yolov8n (part 1) exported at 640 px.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional

import numpy as np
from ultralytics.utils import LOGGER

import ort_profile


def _variant_label(round_to: Optional[int]) -> str:
    """The table label of a rounding variant."""
    return "no rounding" if round_to is None else f"round_to={round_to}"


def _prune_untrained(model: str, imgsz: int, rate: float, round_to: Optional[int], project: Path) -> Dict[str, Any]:
    """Prune an untrained model once with ``epochs=0``; return MACs, params, ONNX files and sizes from the report."""
    from ultralytics import YOLO

    name = f"{model}_r{round_to or 0}"
    start = time.perf_counter()
    report = YOLO(f"{model}.yaml").prune(
        rate=rate, iterative_steps=1, epochs=0, imgsz=imgsz, round_to=round_to, project=str(project), name=name,
        exist_ok=True, verbose=False,
    )
    weights = Path(report["save_dir"]) / "weights"
    return {
        "round_to": round_to,
        "wall_s": time.perf_counter() - start,
        "base_macs": report["baseline"]["macs"],
        "base_params": report["baseline"]["params"],
        "macs": report["final"]["macs"],
        "params": report["final"]["params"],
        "base_onnx": str(weights / "baseline.onnx"),
        "onnx": str(weights / "pruned.onnx"),
        "base_pt": str(weights / "baseline.pt"),
        "pt": str(weights / "pruned.pt"),
        "base_onnx_mb": report["onnx"]["file_mb"]["baseline"],
        "onnx_mb": report["onnx"]["file_mb"]["pruned"],
    }


def _latency_rounds(
    paths: Mapping[str, str], imgsz: int, runs: int, warmup: int, repeats: int, threads: Optional[int] = None
) -> List[Dict[str, Dict[str, float]]]:
    """``repeats`` rounds of the plugin's ``measure_latency`` over all ``paths`` (alternating), one dict per round."""
    from ultralytics_prune_plugin.deploy.onnx import measure_latency

    return [measure_latency(paths, imgsz, runs=runs, warmup=warmup, threads=threads) for _ in range(repeats)]


def _timed_sessions(
    paths: Mapping[str, str], imgsz: int, runs: int, warmup: int, options: Callable[[], Any], alternate: bool = True
) -> Dict[str, Dict[str, float]]:
    """Time ONNX models like ``measure_latency``, but with caller-made ``SessionOptions``.

    Args:
        paths: Label -> ONNX file.
        imgsz: Input size.
        runs: Timed runs per model.
        warmup: Untimed runs per model before its timed runs.
        options: Returns a fresh ``onnxruntime.SessionOptions`` for each session.
        alternate: Models take turns run by run (True), or each runs its warm-up and timed runs in one block (False,
            for thread spinning, which would otherwise let one session's spinning threads slow the next one down).

    Returns:
        Label -> ``{"median_ms", "p10_ms", "p90_ms", "min_ms", "runs"}``.
    """
    import onnxruntime as ort

    sessions = {k: ort.InferenceSession(str(p), options(), providers=["CPUExecutionProvider"]) for k, p in paths.items()}
    image = np.random.default_rng(0).random((1, 3, imgsz, imgsz), dtype=np.float32)
    feeds = {k: {s.get_inputs()[0].name: image} for k, s in sessions.items()}
    labels = list(sessions)
    times: Dict[str, List[float]] = {k: [] for k in labels}

    def timed(label: str) -> None:
        start = time.perf_counter()
        sessions[label].run(None, feeds[label])
        times[label].append((time.perf_counter() - start) * 1e3)

    if alternate:
        rounds = lambda n: [labels[(i + r) % len(labels)] for r in range(n) for i in range(len(labels))]  # noqa: E731
        for label in rounds(warmup):
            sessions[label].run(None, feeds[label])
        for label in rounds(runs):
            timed(label)
    else:
        for label in labels:
            for _ in range(warmup):
                sessions[label].run(None, feeds[label])
            for _ in range(runs):
                timed(label)
    return {k: _summary(v) for k, v in times.items()}


def _summary(ms: List[float]) -> Dict[str, float]:
    """Median, 10th and 90th percentiles, minimum and count of run times in milliseconds."""
    values = np.asarray(ms, dtype=np.float64)
    p10, median, p90 = np.percentile(values, [10, 50, 90])
    return {"median_ms": float(median), "p10_ms": float(p10), "p90_ms": float(p90), "min_ms": float(values.min()),
            "runs": int(values.size)}


def _option_factories() -> Dict[str, Callable[[], Any]]:
    """Session-option variants: the plugin's options, and one change each."""
    import onnxruntime as ort

    from ultralytics_prune_plugin.deploy.onnx import session_options

    def with_level(level):
        def make():
            options = session_options()
            options.graph_optimization_level = level
            return options

        return make

    def spinning():
        options = session_options()
        options.add_session_config_entry("session.intra_op.allow_spinning", "1")
        return options

    return {
        "ALL (plugin default)": session_options,
        "EXTENDED (no NCHWc layout)": with_level(ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED),
        "BASIC": with_level(ort.GraphOptimizationLevel.ORT_ENABLE_BASIC),
        "ALL + spinning, timed in blocks": spinning,
    }


def _simplified(src: str, pt: str, imgsz: int, tool: str) -> Optional[str]:
    """Return a simplified copy of an ONNX model: ``onnxsim`` via Ultralytics' exporter, or ``onnxslim``."""
    from importlib.util import find_spec

    if tool == "onnxsim":
        if find_spec("onnxsim") is None:
            return None
        from ultralytics_prune_plugin.deploy.onnx import export_onnx

        out = Path(src).with_name(Path(src).stem + "_onnxsim.onnx")
        return str(export_onnx(pt, imgsz, out=out, simplify=True))
    if find_spec("onnxslim") is None:
        return None
    import onnx
    import onnxslim

    out = Path(src).with_name(Path(src).stem + "_onnxslim.onnx")
    onnx.save(onnxslim.slim(onnx.load(src)), str(out))
    return str(out)


def _fast_dfl_export(pt: str, imgsz: int, out: Path) -> str:
    """Export ``pt`` with the plugin's ``fast_dfl=True`` (the DFL softmax over the last axis; ``deploy.fast_dfl``)."""
    from ultralytics_prune_plugin.deploy.onnx import export_onnx

    return str(export_onnx(pt, imgsz, out=out, fast_dfl=True))


def _dfl_equivalence() -> float:
    """Largest absolute difference between Ultralytics' DFL and the last-axis version on random logits."""
    import torch
    from ultralytics.nn.modules.block import DFL

    from ultralytics_prune_plugin.deploy.fast_dfl import last_axis_dfl_forward

    dfl = DFL(16)
    x = torch.randn(2, 64, 500, generator=torch.Generator().manual_seed(0)) * 4
    with torch.no_grad():
        return float((dfl(x) - last_axis_dfl_forward(dfl, x)).abs().max())


def _ratio_rows(rounds: List[Dict[str, Dict[str, float]]], macs: Mapping[str, float], base: str) -> Dict[str, Any]:
    """Per label: median latency, p10/p90 (first round), speed-up and ratio per round, their median and range."""
    rows = {}
    for label in rounds[0]:
        speedups = [r[base]["median_ms"] / r[label]["median_ms"] for r in rounds]
        macs_x = macs[base] / macs[label]
        ratios = [s / macs_x for s in speedups]
        rows[label] = {
            "median_ms": statistics.median(r[label]["median_ms"] for r in rounds),
            "p10_ms": rounds[0][label]["p10_ms"],
            "p90_ms": rounds[0][label]["p90_ms"],
            "runs_per_round": rounds[0][label]["runs"],
            "macs": macs[label],
            "macs_x": macs_x,
            "speedups": speedups,
            "speedup": statistics.median(speedups),
            "ratio": statistics.median(ratios),
            "ratio_min": min(ratios),
            "ratio_max": max(ratios),
        }
    return rows


def _load_str() -> str:
    """The load averages (1, 5, 15 min) as one string."""
    import os

    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def run_speed(work: Path, cfg: Dict[str, Any], trained: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    """Run part 2 and return its raw record.

    Args:
        work: Folder for the pruned models and ONNX files.
        cfg: ``imgsz``, ``rate``, ``models``, ``round_tos``, ``focus_round_to``, ``runs``, ``warmup``, ``repeats``.
        trained: Optional label -> trained ``.pt`` (label ``baseline`` first) from part 1, timed at ``imgsz`` too.

    Returns:
        Per model: the prune variants, the round_to table, simplify / threads / session-option tables, the profile;
        plus ``trained`` (the part-1 models at ``imgsz``).
    """
    imgsz, runs, warmup, repeats = cfg["imgsz"], cfg["runs"], cfg["warmup"], cfg["repeats"]
    focus = cfg["focus_round_to"]
    record: Dict[str, Any] = {"settings": dict(cfg), "models": {}}
    for model in cfg["models"]:
        LOGGER.info(f"bench speed: {model} at {imgsz}, load {_load_str()}")
        variants = {rt: _prune_untrained(model, imgsz, cfg["rate"], rt, work) for rt in cfg["round_tos"]}
        first = variants[cfg["round_tos"][0]]
        paths = {"baseline": first["base_onnx"], **{_variant_label(rt): v["onnx"] for rt, v in variants.items()}}
        macs = {"baseline": first["base_macs"], **{_variant_label(rt): v["macs"] for rt, v in variants.items()}}
        entry: Dict[str, Any] = {"variants": {_variant_label(rt): v for rt, v in variants.items()}, "load_before": _load_str()}
        rounds = _latency_rounds(paths, imgsz, runs, warmup, repeats)
        entry["round_to"] = _ratio_rows(rounds, macs, "baseline")
        entry["round_to_rounds"] = rounds

        focus_label = _variant_label(focus if focus in variants else cfg["round_tos"][0])
        focus_variant = variants[focus if focus in variants else cfg["round_tos"][0]]
        small = {"baseline": paths["baseline"], "no rounding": paths.get("no rounding", paths[focus_label])}
        small[focus_label] = paths[focus_label]
        small_macs = {k: macs[k] for k in small}

        # export variants: onnxsim (what Ultralytics' simplify=True runs), onnxslim, and fast_dfl=True
        simp_paths, simp_macs, tools = dict(small), dict(small_macs), {}
        for tool in ("onnxsim", "onnxslim", "fast_dfl"):
            try:
                if tool == "fast_dfl":
                    folder = work / f"{model}_dfl"
                    folder.mkdir(parents=True, exist_ok=True)
                    base_s = _fast_dfl_export(first["base_pt"], imgsz, folder / "baseline.onnx")
                    pruned_s = _fast_dfl_export(focus_variant["pt"], imgsz, folder / "pruned.onnx")
                else:
                    base_s = _simplified(first["base_onnx"], first["base_pt"], imgsz, tool)
                    pruned_s = _simplified(focus_variant["onnx"], focus_variant["pt"], imgsz, tool) if base_s else None
            except Exception as e:  # a simplifier failing is a result too
                tools[tool] = f"failed: {type(e).__name__}: {e}"
                continue
            if base_s is None or pruned_s is None:
                tools[tool] = "not installed"
                continue
            tools[tool] = "used"
            simp_paths[f"baseline {tool}"], simp_macs[f"baseline {tool}"] = base_s, first["base_macs"]
            simp_paths[f"{focus_label} {tool}"], simp_macs[f"{focus_label} {tool}"] = pruned_s, focus_variant["macs"]
        entry["simplify_tools"] = tools
        entry["dfl_max_abs_diff"] = _dfl_equivalence()
        if len(simp_paths) > len(small):
            rounds = _latency_rounds(simp_paths, imgsz, runs, warmup, repeats)
            rows = _ratio_rows(rounds, simp_macs, "baseline")
            for tool in tools:  # a variant's speed-up against the baseline exported the same way
                if f"baseline {tool}" in rows:
                    own = [r[f"baseline {tool}"]["median_ms"] / r[f"{focus_label} {tool}"]["median_ms"] for r in rounds]
                    row = rows[f"{focus_label} {tool}"]
                    row["speedup_vs_own_baseline"] = statistics.median(own)
                    row["ratio_vs_own_baseline"] = statistics.median(own) / row["macs_x"]
                    row["ratio_vs_own_baseline_min"] = min(own) / row["macs_x"]
                    row["ratio_vs_own_baseline_max"] = max(own) / row["macs_x"]
            entry["simplify"] = rows
        entry["export_paths"] = simp_paths

        # threads: one ONNX Runtime thread against the default (one per core)
        entry["threads_1"] = _ratio_rows(_latency_rounds(small, imgsz, runs, warmup, 1, threads=1), small_macs, "baseline")
        dfl = {k: simp_paths[k] for k in ("baseline fast_dfl", f"{focus_label} fast_dfl") if k in simp_paths}
        if len(dfl) == 2:  # the combination: rounding, fast_dfl and one thread, against its own baseline
            rounds = _latency_rounds(dfl, imgsz, runs, warmup, repeats, threads=1)
            entry["best_combination"] = _ratio_rows(rounds, {k: simp_macs[k] for k in dfl}, "baseline fast_dfl")

        # session options
        entry["session_options"] = {}
        for name, factory in _option_factories().items():
            alternate = "blocks" not in name
            result = _timed_sessions(small, imgsz, runs, warmup, factory, alternate=alternate)
            entry["session_options"][name] = _ratio_rows([result], small_macs, "baseline")

        # where the time and the MACs sit
        entry["profile"] = {
            label: ort_profile.profile_model(path, imgsz, runs=runs, warmup=warmup) for label, path in small.items()
        }
        for prof in entry["profile"].values():
            prof["nodes"] = sorted(prof["nodes"], key=lambda n: -n["ms"])[:25]  # keep the JSON small
        entry["load_after"] = _load_str()
        record["models"][model] = entry

    if trained:
        record["trained"] = time_trained(trained, imgsz, work / "trained", runs, warmup, repeats)
    return record


def time_trained(trained: Dict[str, str], imgsz: int, out: Path, runs: int, warmup: int, repeats: int) -> Dict[str, Any]:
    """Export the part-1 checkpoints at ``imgsz``, count their MACs there, and time them against the baseline."""
    from ultralytics import YOLO

    from ultralytics_prune_plugin.deploy.onnx import export_onnx
    from ultralytics_prune_plugin.pruning.counting import count_macs_params

    out.mkdir(parents=True, exist_ok=True)
    paths, macs = {}, {}
    for label, pt in trained.items():
        paths[label] = str(export_onnx(pt, imgsz, out=out / f"{label.replace(' ', '_')}.onnx"))
        macs[label] = count_macs_params(YOLO(pt).model.float(), imgsz)[0]
    rounds = _latency_rounds(paths, imgsz, runs, warmup, repeats)
    return {"rows": _ratio_rows(rounds, macs, "baseline"), "rounds": rounds}


if __name__ == "__main__":  # a quick look: python benchmarks/speed.py /tmp/speed
    import sys

    cfg = dict(imgsz=640, rate=0.5, models=["yolov8n"], round_tos=[None, 16], focus_round_to=16, runs=10, warmup=2,
               repeats=1)
    print(json.dumps(run_speed(Path(sys.argv[1]), cfg), indent=1, default=str)[:5000])
