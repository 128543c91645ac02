"""Head pruning at equal MACs: what ``prune_head=True`` buys in ONNX Runtime CPU speed (640 px, batch 1).

At a MACs target, pruning the head's inner convolutions too lets the backbone and neck keep more channels, so the
same MACs cut is spread differently. Latency does not depend on the weights, so untrained ``<model>.yaml`` models
(80 classes, as deployed on COCO) are pruned to ``target_macs`` with ``epochs=0`` through ``YOLO(...).prune()``,
once with ``prune_head=False`` (the default) and once with ``prune_head=True``; each run exports its baseline and its
result at 640 px with Ultralytics' exporter. Then, in this process, the three files of a model are timed together
(``measure_latency``, taking turns run by run), ``--repeats`` times; the table gives the median of the repeats.

The accuracy side of the trade is in ``results_equal_macs.md`` (trained models, equal epochs).

Usage: ``python benchmarks/head_speed.py [--models yolov8n yolo11n yolov8s] [--target 0.43]``; writes
``results_head_speed.md`` and ``.json`` next to this file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, List

HERE = Path(__file__).resolve().parent
IMGSZ = 640


def prune_untrained(model: str, target: float, prune_head: bool, project: Path) -> Dict[str, Any]:
    """Prune ``<model>.yaml`` (untrained) to ``target`` with ``epochs=0``; return MACs, params and ONNX files."""
    from ultralytics import YOLO

    start = time.perf_counter()
    report = YOLO(f"{model}.yaml").prune(
        target_macs=target, iterative_steps=1, epochs=0, imgsz=IMGSZ, prune_head=prune_head, project=str(project),
        name=f"{model}_head{int(prune_head)}", exist_ok=True, verbose=False,
    )
    weights = Path(report["save_dir"]) / "weights"
    return {
        "prune_head": prune_head, "wall_s": time.perf_counter() - start,
        "base_macs": report["baseline"]["macs"], "macs": report["final"]["macs"],
        "base_params": report["baseline"]["params"], "params": report["final"]["params"],
        "base_onnx": str(weights / "baseline.onnx"), "onnx": str(weights / "pruned.onnx"),
    }


def time_model(runs: List[Dict[str, Any]], repeats: int, timed_runs: int) -> Dict[str, float]:
    """Median latency (ms) of the baseline and of each run's result, over ``repeats`` alternating rounds."""
    from ultralytics_prune_plugin.deploy.onnx import measure_latency

    paths = {"input": runs[0]["base_onnx"], **{f"head{int(r['prune_head'])}": r["onnx"] for r in runs}}
    rounds = [measure_latency(paths, IMGSZ, runs=timed_runs, warmup=3) for _ in range(repeats)]
    return {label: statistics.median(r[label]["median_ms"] for r in rounds) for label in paths}


def markdown(record: Dict[str, Any]) -> str:
    """The results as a Markdown page."""
    lines = [
        "# Head pruning at equal MACs: ONNX Runtime speed",
        "",
        f"Command: `python benchmarks/head_speed.py {' '.join(record['argv'])}`, {record['started']} on "
        f"{record['machine']}; {record['versions']}.",
        "",
        f"Untrained `<model>.yaml` (80 classes) pruned to `target_macs={record['target']}` in one step with `epochs=0`; "
        f"ONNX Runtime CPU, batch 1, {IMGSZ} px, the three files of a model taking turns; median over "
        f"{record['repeats']} rounds of {record['runs']} timed runs each.",
        "",
        "| model | prune_head | MACs cut | params cut | ORT 640 ms | input ms | speed-up |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in record["rows"]:
        lines.append(
            f"| {r['model']} | {r['prune_head']} | {r['base_macs'] / r['macs']:.2f}× | "
            f"{r['base_params'] / r['params']:.2f}× | {r['ms']:.1f} | {r['input_ms']:.1f} | "
            f"**{r['input_ms'] / r['ms']:.2f}×** |"
        )
    lines.append("")
    return "\n".join(lines)


def main(argv=None) -> Dict[str, Any]:
    """Prune, export, time; write ``results_head_speed.{md,json}``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["yolov8n", "yolo11n", "yolov8s"])
    parser.add_argument("--target", type=float, default=0.43)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--work", default=str(HERE.parent / "runs" / "bench_head_speed"))
    args = parser.parse_args(argv)
    os.environ.setdefault("YOLO_OFFLINE", "True")

    import torch
    import ultralytics

    record = {
        "argv": list(argv if argv is not None else sys.argv[1:]),
        "started": datetime.now().isoformat(timespec="seconds"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "versions": f"Python {platform.python_version()}, torch {torch.__version__}, ultralytics {ultralytics.__version__}",
        "target": args.target, "repeats": args.repeats, "runs": args.runs, "rows": [],
    }
    work = Path(args.work).resolve()
    for model in args.models:
        runs = [prune_untrained(model, args.target, head, work) for head in (False, True)]
        latency = time_model(runs, args.repeats, args.runs)
        for r in runs:
            record["rows"].append({"model": model, **r, "ms": latency[f"head{int(r['prune_head'])}"],
                                   "input_ms": latency["input"]})
            print(f"{model} prune_head={r['prune_head']}: {latency['input'] / record['rows'][-1]['ms']:.2f}x", flush=True)
    (HERE / "results_head_speed.json").write_text(json.dumps(record, indent=1))
    (HERE / "results_head_speed.md").write_text(markdown(record))
    return record


if __name__ == "__main__":
    main()
