"""Issue 17's done-when check: does ``target_speedup=2`` give a model that really runs 2× faster, and does the speed-up
keep pace with the MACs cut? (ONNX Runtime CPU, 640 px, batch 1)

For each model (``yolov8n``, ``yolo11n``, ``yolo26n``, built from their ``.yaml``: untrained, 80 classes; latency does
not depend on the weights) and each ``allocation`` (``uniform``, ``latency``), ``YOLO(...).prune(target_speedup=2,
runtime='onnxruntime', epochs=0, imgsz=640)`` runs at the runtime's default thread count, as a user's run would;
``iterative_steps=1`` (without fine-tuning the steps only split the same widths into parts: the ideal widths compound
to the same result). Each run exports its input (``baseline.onnx``) and its result (``pruned.onnx``) with Ultralytics'
exporter.

Then a **separate process** (this script with ``--measure``) opens every model's three files (the unpruned input and
both pruned results) in ONNX Runtime and times them interleaved, run by run (``time_models``), first on one thread,
then on all threads; its speed-ups are the ones reported. Both statistics are given: the median, and the fastest run
(the least disturbed on a shared machine, the one ``target_speedup``'s search compares). The same process profiles the
files node by node (:func:`ultralytics_prune_plugin.deploy.node_profile.profile_nodes`, the profiler behind the
per-layer latency table) on one thread, to show per category and per layer what keeps the speed-up below the MACs cut,
and what ratio the input's own split of time allows (:func:`attainable_ratio`).

Usage: ``python benchmarks/speedup_check.py [--models yolov8n yolo11n yolo26n] [--runs 40] [--out NAME]``; writes
``results_speedup.md``, ``.json`` and ``results_speedup.png`` (``NAME.*`` with ``--out``: another machine's results
beside the earlier ones) next to this file. ``--render --out NAME`` rewrites ``NAME.md`` from ``NAME.json`` without
measuring.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, List, Optional

HERE = Path(__file__).resolve().parent
IMGSZ = 640
SPEEDUP = 2.0
ALLOCATIONS = ("uniform", "latency")
EQUAL_MACS = "latency_at_uniform_macs"  # allocation=latency pruned to the uniform result's MACs (target_macs)
FLAGS = {"avx2": "AVX2", "avx512f": "AVX-512", "avx512_vnni": "AVX-512 VNNI", "avx_vnni": "AVX-VNNI"}


def cpu_flags() -> Dict[str, bool]:
    """Which of AVX2, AVX-512 and VNNI ``/proc/cpuinfo`` lists."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags |= set(line.split(":", 1)[1].split())
    return {name: flag in flags for flag, name in FLAGS.items()}


def prune(model: str, allocation: str, work: Path, reuse: bool = False, target_macs: Optional[float] = None,
          label: Optional[str] = None, round_to: Any = "auto", extra: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """One ``target_speedup=2`` run of ``<model>.yaml`` with ``allocation`` (or, with ``target_macs``, a run to that
    MACs fraction); the numbers of its report. With ``reuse``, a finished run already in its folder is read instead."""
    from ultralytics import YOLO

    label = label or allocation
    start = time.perf_counter()
    done = work / f"{model}_{label}" / "prune_report.json"
    reused = reuse and done.is_file() and "final" in json.loads(done.read_text())
    if reused:
        report = json.loads(done.read_text())
    else:
        target = {"target_macs": target_macs} if target_macs else {"target_speedup": SPEEDUP}
        report = YOLO(f"{model}.yaml").prune(
            **target, runtime="onnxruntime", allocation=allocation, iterative_steps=1, epochs=0,
            imgsz=IMGSZ, project=str(work), name=f"{model}_{label}", exist_ok=True, verbose=False, round_to=round_to,
            **(extra or {}),
        )
    weights = Path(report["save_dir"]) / "weights"
    search = report.get("latency_target") or {}
    return {
        "model": model, "allocation": allocation, "label": label, "wall_s": time.perf_counter() - start,
        "reused": reused, "target_macs": target_macs,
        "base_macs": report["baseline"]["macs"], "macs": report["final"]["macs"],
        "macs_cut": report["baseline"]["macs"] / report["final"]["macs"],
        "chosen_macs_fraction": search.get("chosen_macs_fraction", target_macs),
        "search_speedup": search.get("chosen_speedup"), "search_met": search.get("met"),
        "candidates": len(search.get("candidates", [])), "run_final_speedup": search.get("final_speedup"),
        "base_onnx": str(weights / "baseline.onnx"), "onnx": str(weights / "pruned.onnx"),
        "weights": (report.get("allocation") or {}).get("layers"),
        "round_to": (report.get("round_to") or {}).get("chosen", report["args"].get("round_to")),
        "alignment": report.get("round_to"),
    }


# The separate process ---------------------------------------------------------------------------------------------
def measure(files: Dict[str, str], runs: int, profile_runs: int) -> Dict[str, Any]:
    """Time ``files`` interleaved at one and at all threads, and profile each one node by node (one thread)."""
    from ultralytics_prune_plugin.deploy.latency import time_models
    from ultralytics_prune_plugin.deploy.node_profile import profile_nodes

    models = {label: ("onnxruntime", path) for label, path in files.items()}
    timed = {str(threads): time_models(models, IMGSZ, runs=runs, warmup=5, threads=threads)
             for threads in (1, None)}
    profiles = {}
    for label, path in files.items():
        nodes = profile_nodes(path, IMGSZ, "onnxruntime", threads=1, runs=profile_runs, warmup=3)
        profiles[label] = [n.to_dict() for n in nodes]
    return {"timed": timed, "profiles": profiles}


def measure_in_child(files: Dict[str, str], runs: int, profile_runs: int, out: Path) -> Dict[str, Any]:
    """Run :func:`measure` in a fresh Python process and read its result."""
    argv = [sys.executable, __file__, "--measure", str(out), "--runs", str(runs), "--profile-runs", str(profile_runs),
            "--imgsz", str(IMGSZ)]
    subprocess.run(argv + [f"{label}={path}" for label, path in files.items()], check=True)
    return json.loads(out.read_text())


# Analysis -----------------------------------------------------------------------------------------------------------
def category(node: Dict[str, Any], head: str) -> str:
    """A node's category, as ``ort_profile`` groups them (conv backbone+neck, conv Detect head, SiLU, ...)."""
    sys.path.insert(0, str(HERE))
    import ort_profile

    return ort_profile._category(node["name"], node["op"], head)


def by_category(nodes: List[Dict[str, Any]], head: str) -> Dict[str, Dict[str, float]]:
    """Milliseconds and MACs per category."""
    out: Dict[str, Dict[str, float]] = {}
    for node in nodes:
        entry = out.setdefault(category(node, head), {"ms": 0.0, "macs": 0.0})
        entry["ms"] += node["ms"]
        entry["macs"] += node["macs"]
    return out


# How each category's time can fall with a uniform MACs cut c: a convolution loses input and output channels (its time
# can fall as c), an element-wise node or a layout copy only its channels (as the square root of c), and the Detect
# head's decode (DFL, class sigmoid, box assembly over every anchor) does not shrink at all.
ELEMENTWISE = ("SiLU", "layout reorders", "other")
FIXED = ("head post-processing",)


def category_ms(categories: Dict[str, Dict[str, float]], names=None) -> float:
    """Milliseconds of the named categories of a profile (all of them without ``names``)."""
    return sum(c["ms"] for name, c in categories.items() if names is None or name in names)


def attainable_ratio(input_categories: Dict[str, Dict[str, float]], cut: float, elementwise: bool = True) -> float:
    """The speed-up ÷ MACs cut that the input's own time split allows at a MACs cut of ``cut``, if every convolution
    were as efficient pruned as unpruned: convolutions fall with ``cut``, the decode stays, and the element-wise nodes
    fall with ``sqrt(cut)`` (or, with ``elementwise=False``, with ``cut`` too: the decode alone as the limit)."""
    total, fixed = category_ms(input_categories), category_ms(input_categories, FIXED)
    flat = category_ms(input_categories, ELEMENTWISE) if elementwise else 0.0
    pruned = fixed + flat / cut ** 0.5 + (total - fixed - flat) / cut
    return total / pruned / cut


def by_layer(nodes: List[Dict[str, Any]]) -> Dict[str, Dict[str, float]]:
    """Milliseconds and MACs per top-level layer (``model.<i>``; runtime-added nodes as ``reorders``)."""
    out: Dict[str, Dict[str, float]] = {}
    for node in nodes:
        module = node["module"]
        layer = ".".join(module.split(".")[:2]) if module else "reorders"
        entry = out.setdefault(layer, {"ms": 0.0, "macs": 0.0})
        entry["ms"] += node["ms"]
        entry["macs"] += node["macs"]
    return out


def head_prefix(nodes: List[Dict[str, Any]]) -> str:
    """``/model.<last layer>/``: the Detect head's node prefix."""
    last = max(int(n["module"].split(".")[1]) for n in nodes if n["module"] and n["module"].startswith("model."))
    return f"/model.{last}/"


def summarise(record: Dict[str, Any]) -> None:
    """Fill every row with its re-measured speed-ups and ratios, and every model with its profile tables."""
    for model, entry in record["models"].items():
        timed, profiles = entry["measured"]["timed"], entry["measured"]["profiles"]
        head = head_prefix(profiles["input"])
        base_cat, base_layer = by_category(profiles["input"], head), by_layer(profiles["input"])
        entry["categories"] = {"input": base_cat}
        entry["layers"] = {"input": base_layer}
        for row in entry["rows"]:
            label = row["label"]
            for threads, t in timed.items():
                name = "1" if threads == "1" else "all"
                for stat in ("median_ms", "min_ms"):
                    speedup = t["input"][stat] / t[label][stat]
                    row[f"speedup_{name}_{stat[:-3]}"] = speedup
                    row[f"ratio_{name}_{stat[:-3]}"] = speedup / row["macs_cut"]
                row[f"ms_{name}"] = t[label]["median_ms"]
                row[f"input_ms_{name}"] = t["input"]["median_ms"]
            row["meets_095"] = row["speedup_all_min"] >= 0.95 * SPEEDUP if not row["target_macs"] else None
            entry["categories"][label] = by_category(profiles[label], head)
            entry["layers"][label] = by_layer(profiles[label])


# Report -------------------------------------------------------------------------------------------------------------
def markdown(record: Dict[str, Any]) -> str:
    """The results page."""
    flags = record["cpu_flags"]
    yes = [name for name, on in flags.items() if on] or ["none of them"]
    no = [name for name, on in flags.items() if not on]
    ran = {r["label"] for entry in record["models"].values() for r in entry["rows"]}
    lines = [
        "# Does `target_speedup=2` deliver 2×? (issue 17, done-when check)",
        "",
        f"Measured {record['started']} on **{record['cpu']}** ({record['cores']} cores; flags: {', '.join(yes)}"
        + (f"; not {', '.join(no)}" if no else "") + f"), {record['versions']}. "
        f"Load average (1 min) when the runs started: {record['load'][0]:.2f}, when the measurement ended: "
        f"{record['load'][1]:.2f}"
        + (": other jobs shared the cores, and the all-thread numbers suffer most from that." if record["load"][0] >= 0.5
           else ": the machine was otherwise idle (the load at the end is this script's own measurement)."),
        "",
        "Untrained models built from their `.yaml` (80 classes; latency does not depend on the weights), pruned by "
        "`YOLO(...).prune(target_speedup=2, runtime=onnxruntime, epochs=0, imgsz=640, iterative_steps=1)` at the "
        "runtime's default thread count, with "
        + " and ".join(f"`allocation={a}`" for a in ALLOCATIONS if a in ran) + ". The run exports its input "
        "and its result with Ultralytics' exporter; a **separate process** then times the input and the results "
        f"interleaved ({record['runs']} runs each, batch 1) on 1 thread and on all threads. Speed-up = input ms / "
        "pruned ms; *fastest* compares the fastest runs (what the search compares), *median* the medians. Ratio = "
        "speed-up ÷ MACs cut (1.0 is the physical limit; the issue asks ≥ 0.9). Goal: speed-up ≥ 0.95 × 2 = 1.90 "
        "at all threads.",
        "",
        *([f"The row `{EQUAL_MACS}` is `allocation=latency` pruned with `target_macs` set to the uniform result's "
           "MACs fraction (and its `round_to`): it compares the two allocations per MAC without the noise of the "
           "latency search.", ""] if EQUAL_MACS in ran else []),
        f"`round_to={record.get('round_to_arg', 8)}` was given to every run; the column shows the alignment each used"
        + (" (`auto`: measured by the run among 4, 8, 16 and 32 at half the MACs, `engine/alignment.py`)."
           if record.get("round_to_arg", "8") == "auto" else "."),
        "",
        *([f"Every run was also given {', '.join(f'`{k}={v}`' for k, v in record['prune_args'].items())}.", ""]
          if record.get("prune_args") else []),
        "| model | run | round_to | MACs cut | in-run search | 1 thread: speed-up (fastest / median) | ratio | "
        "all threads: speed-up (fastest / median) | ratio | ≥ 1.90× |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for model, entry in record["models"].items():
        for r in entry["rows"]:
            search = (f"{r['search_speedup']:.2f}× ({r['candidates']} candidates)" if r["search_speedup"] is not None
                      else f"target_macs={r['target_macs']:.3f}")
            meets = "–" if r["target_macs"] else ("yes" if r["meets_095"] else "no")
            lines.append(
                f"| {model} | {r['label']}{' *' if r.get('reused') else ''} | {r.get('round_to', 8)} | "
                f"{r['macs_cut']:.2f}× | {search} | "
                f"{r['speedup_1_min']:.2f}× / {r['speedup_1_median']:.2f}× | {r['ratio_1_min']:.2f} / "
                f"{r['ratio_1_median']:.2f} | {r['speedup_all_min']:.2f}× / {r['speedup_all_median']:.2f}× | "
                f"{r['ratio_all_min']:.2f} / {r['ratio_all_median']:.2f} | {meets} |"
            )
    if any(r.get("reused") for e in record["models"].values() for r in e["rows"]):
        lines += ["", "\\* pruned by an earlier invocation (`--reuse`); timed again now with the others."]
    labels = [label for label in ("uniform", "latency", EQUAL_MACS) if label in ran]
    lines += ["", "Latency in ms (median; 1 thread / all threads):", "",
              "| model | input | " + " | ".join(labels) + " |", "|---|---|" + "---|" * len(labels)]
    for model, entry in record["models"].items():
        cells = {r["label"]: f"{r['ms_1']:.1f} / {r['ms_all']:.1f}" for r in entry["rows"]}
        r0 = entry["rows"][0]
        lines.append(f"| {model} | {r0['input_ms_1']:.1f} / {r0['input_ms_all']:.1f} | "
                     + " | ".join(cells.get(label, "") for label in labels) + " |")
    lines += ["", "## What the time split allows (1 thread)", "",
              "The ratio each result could reach if every convolution were as efficient pruned as unpruned, from its "
              "input's per-category profile (below): convolutions falling with the MACs cut (input and output channels "
              "shrink), the element-wise nodes (SiLU, layout reorders, adds, concatenations, resizes) with its square "
              "root (only their channels shrink), the Detect head's decode (DFL, class sigmoid, box assembly over "
              "every anchor) not at all. *Decode only*: every node but the decode falling with the MACs cut.", "",
              "| model | run | MACs cut | decode share | element-wise share | attainable: decode only | attainable: "
              "decode + element-wise | measured (profile) | measured (timed) |", "|---|---|---|---|---|---|---|---|---|"]
    for model, entry in record["models"].items():
        cats = entry["categories"]
        total = category_ms(cats["input"])
        for r in entry["rows"]:
            if r["label"] not in cats:
                continue
            profiled = total / category_ms(cats[r["label"]]) / r["macs_cut"]
            lines.append(
                f"| {model} | {r['label']} | {r['macs_cut']:.2f}× | {category_ms(cats['input'], FIXED) / total:.1%} | "
                f"{category_ms(cats['input'], ELEMENTWISE) / total:.1%} | "
                f"{attainable_ratio(cats['input'], r['macs_cut'], elementwise=False):.2f} | "
                f"{attainable_ratio(cats['input'], r['macs_cut']):.2f} | {profiled:.2f} | {r['ratio_1_min']:.2f} |"
            )
    lines += ["", "## What limits the ratio: per-category profile (1 thread)", "",
              "ONNX Runtime's node profiler, median per node, summed per category; MACs from the profiled convolution "
              "shapes. *cut* columns: input ÷ pruned, time and MACs.", ""]
    for model, entry in record["models"].items():
        cats = entry["categories"]
        labels = [label for label in ("uniform", "latency") if label in cats]
        lines += [f"**{model}**", "", "| category | input ms | " + " | ".join(
            f"{label} ms | {label} time cut | {label} MACs cut" for label in labels) + " |",
            "|---|---|" + "---|---|---|" * len(labels)]
        for cat in cats["input"]:
            b = cats["input"][cat]
            cells = []
            for label in labels:
                p = cats[label].get(cat, {"ms": 0.0, "macs": 0.0})
                macs = f"{b['macs'] / p['macs']:.2f}×" if p["macs"] else "–"
                cells.append(f"{p['ms']:.2f} | {b['ms'] / p['ms']:.2f}× | {macs}" if p["ms"] else "– | – | –")
            lines.append(f"| {cat} | {b['ms']:.2f} | " + " | ".join(cells) + " |")
        lines.append("")
        lines += layer_lines(entry)
    return "\n".join(lines) + "\n"


def layer_lines(entry: Dict[str, Any], top: int = 8) -> List[str]:
    """The layers whose time cut lags their MACs cut the most (ms above what the MACs cut alone would leave), for
    the uniform and the latency result."""
    layers = entry["layers"]
    rows = []
    for label in ("uniform", "latency"):
        if label not in layers:
            continue
        for layer, b in layers["input"].items():
            p = layers[label].get(layer)
            if not p or not p["ms"] or not b["macs"] or not p["macs"]:
                continue
            macs_cut = b["macs"] / p["macs"]
            excess = p["ms"] - b["ms"] / macs_cut  # ms above what the MACs cut alone would leave
            rows.append((label, layer, b["ms"], p["ms"], b["ms"] / p["ms"], macs_cut, excess))
    rows.sort(key=lambda r: -r[6])
    lines = [f"Layers whose time falls least with their MACs (ms above what their MACs cut would leave; top {top}):",
             "", "| result | layer | input ms | pruned ms | time cut | MACs cut | excess ms |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r[0]} | {r[1]} | {r[2]:.2f} | {r[3]:.2f} | {r[4]:.2f}× | {r[5]:.2f}× | {r[6]:.2f} |"
              for r in rows[:top]]
    return lines + [""]


def plot(record: Dict[str, Any], path: Path) -> None:
    """Measured speed-up against MACs cut, per model and allocation, at 1 and all threads."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), sharey=True)
    for ax, name, title in ((axes[0], "1", "1 thread"), (axes[1], "all", "all threads")):
        cuts = [r["macs_cut"] for e in record["models"].values() for r in e["rows"]]
        lim = [1.0, max(cuts + [2.5]) * 1.1]
        ax.plot(lim, lim, "k:", lw=1, label="speed-up = MACs cut")
        ax.plot(lim, [0.9 * x for x in lim], "k--", lw=0.8, alpha=0.5, label="ratio 0.9")
        ax.axhline(0.95 * SPEEDUP, color="grey", lw=0.8, alpha=0.6, label="0.95 × 2")
        for i, (model, entry) in enumerate(record["models"].items()):
            for r in entry["rows"]:
                marker = {"uniform": "o", "latency": "s"}.get(r["label"], "^")
                ax.scatter(r["macs_cut"], r[f"speedup_{name}_min"], marker=marker, color=f"C{i}",
                           label=f"{model} {r['label']}")
        ax.set_title(f"ONNX Runtime CPU, 640 px, {title}")
        ax.set_xlabel("MACs cut (×)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("measured speed-up (×, fastest runs)")
    axes[1].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def prune_args(items: List[str]) -> Dict[str, Any]:
    """``KEY=VALUE`` strings as keyword arguments (``True``/``False``, numbers, else the string)."""
    out: Dict[str, Any] = {}
    for item in items:
        key, _, value = item.partition("=")
        lowered = value.lower()
        if lowered in ("true", "false"):
            out[key] = lowered == "true"
        else:
            try:
                out[key] = int(value)
            except ValueError:
                try:
                    out[key] = float(value)
                except ValueError:
                    out[key] = value
    return out


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    """Prune, re-measure in a separate process, write the results."""
    global IMGSZ
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["yolov8n", "yolo11n", "yolo26n"])
    parser.add_argument("--allocations", nargs="+", default=list(ALLOCATIONS))
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--imgsz", type=int, default=IMGSZ, help="input size (640 for the results; less to try it out)")
    parser.add_argument("--profile-runs", type=int, default=15)
    parser.add_argument("--work", default=str(HERE.parent / "runs" / "bench_speedup"))
    parser.add_argument("--reuse", action="store_true", help="read finished runs from --work instead of running them")
    parser.add_argument("--round-to", default="auto", help="round_to of every run: 'auto' (the plugin's default: "
                        "measured, since these runs measure latency) or a number (8: the earlier results)")
    parser.add_argument("--prune-args", nargs="*", default=[], metavar="KEY=VALUE",
                        help="more arguments for every run, e.g. prune_head=True fast_dfl=True")
    add_mode_arguments(parser, "results_speedup")
    args = parser.parse_args(argv)
    os.environ.setdefault("YOLO_OFFLINE", "True")
    IMGSZ = args.imgsz
    done = measure_or_render(args, lambda files: measure(files, args.runs, args.profile_runs), markdown)
    if done is not None:
        return done

    record: Dict[str, Any] = {
        "argv": list(argv if argv is not None else sys.argv[1:]), **machine(),
        "runs": args.runs, "imgsz": IMGSZ, "models": {}, "load": [os.getloadavg()[0], None],
        "round_to_arg": args.round_to, "prune_args": prune_args(args.prune_args),
    }
    work = Path(args.work).resolve()
    for model in args.models:
        round_to = args.round_to if args.round_to == "auto" else int(args.round_to)
        rows = [prune(model, allocation, work, args.reuse, round_to=round_to,
                      extra=record["prune_args"]) for allocation in args.allocations]
        uniform = next((r for r in rows if r["allocation"] == "uniform"), None)
        if uniform is not None and "latency" in args.allocations:  # per MAC, without the search's noise
            rows.append(prune(model, "latency", work, args.reuse, target_macs=uniform["macs"] / uniform["base_macs"],
                              label=EQUAL_MACS, round_to=uniform["round_to"], extra=record["prune_args"]))
        files = {"input": rows[0]["base_onnx"], **{r["label"]: r["onnx"] for r in rows}}
        measured = measure_in_child(files, args.runs, args.profile_runs, work / f"{model}_measured.json")
        record["models"][model] = {"rows": rows, "measured": measured}
        print(f"{model}: done", flush=True)
    record["load"][1] = os.getloadavg()[0]
    summarise(record)
    write(record, args.out)
    return record


def machine() -> Dict[str, Any]:
    """When and on what a benchmark ran: start time, CPU model, cores, instruction-set flags, package versions."""
    import onnxruntime
    import torch
    import ultralytics

    from ultralytics_prune_plugin.deploy.layer_latency import cpu_model

    return {
        "started": datetime.now().isoformat(timespec="minutes"),
        "cpu": cpu_model(), "cores": os.cpu_count(), "cpu_flags": cpu_flags(),
        "versions": f"Python {platform.python_version()}, torch {torch.__version__}, ultralytics "
                    f"{ultralytics.__version__}, onnxruntime {onnxruntime.__version__}",
    }


def add_mode_arguments(parser: argparse.ArgumentParser, out: str) -> None:
    """``--out`` (the results' name, default ``out``) and the modes :func:`measure_or_render` serves."""
    parser.add_argument("--out", default=out, help="name of the results files (without suffix)")
    parser.add_argument("--measure", help="(internal) time the label=path files into this JSON file")
    parser.add_argument("--render", action="store_true", help="rewrite <out>.md from <out>.json (no measuring)")
    parser.add_argument("files", nargs="*")


def measure_or_render(args: argparse.Namespace, measure_files, render) -> Optional[Dict[str, Any]]:
    """The two modes besides a full run: ``--measure`` (the separate process: ``measure_files`` on the ``label=path``
    arguments, written to that JSON file; returns ``{}``) and ``--render`` (``<out>.md`` rewritten by ``render`` from
    ``<out>.json``; returns the record). None when neither is asked for."""
    if args.measure:
        files = dict(item.split("=", 1) for item in args.files)
        Path(args.measure).write_text(json.dumps(measure_files(files)))
        return {}
    if args.render:
        record = json.loads((HERE / f"{args.out}.json").read_text())
        (HERE / f"{args.out}.md").write_text(render(record))
        return record
    return None


def write(record: Dict[str, Any], name: str = "results_speedup") -> None:
    """Write ``<name>.json`` (without the raw node lists), ``.md`` and ``.png`` next to this file."""
    slim = json.loads(json.dumps(record))
    for entry in slim["models"].values():
        entry["measured"] = {"timed": entry["measured"]["timed"]}
    (HERE / f"{name}.json").write_text(json.dumps(slim, indent=1))
    (HERE / f"{name}.md").write_text(markdown(record))
    plot(record, HERE / f"{name}.png")


if __name__ == "__main__":
    main()
