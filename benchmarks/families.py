"""MACs cut and ONNX Runtime CPU speed-up of each model family at rate 0.5, 640 px, batch 1.

Latency does not depend on the weights, so each family's untrained nano model (80 classes, as deployed on COCO) is
pruned in one step with ``YOLO(yaml).prune(rate=0.5, iterative_steps=1, epochs=0, imgsz=640)``; the prune run's own
ONNX export and timing (median of 30 runs after 5 warm-ups, baseline and result taking turns in one process) give
the numbers, and the table is written to ``benchmarks/results_families.md``. Families the installed Ultralytics does not ship are skipped.

Run: ``python benchmarks/families.py [--repeats 3]`` in an environment with the plugin (``make install``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
from pathlib import Path

FAMILIES = ("yolov8n.yaml", "yolo11n.yaml", "yolo26n.yaml")
HERE = Path(__file__).resolve().parent


def measure(yaml: str, work: Path, repeats: int) -> dict:
    """Prune ``yaml`` at rate 0.5 ``repeats`` times (epochs=0) and return MACs and the speed-ups measured."""
    from ultralytics import YOLO

    runs = []
    for i in range(repeats):
        report = YOLO(yaml).prune(
            rate=0.5, iterative_steps=1, epochs=0, imgsz=640, project=str(work), name=f"{Path(yaml).stem}_{i}"
        )
        runs.append(report)
    first = runs[0]
    speedups = [r["onnx"]["speedup"] for r in runs]
    return {
        "model": Path(yaml).stem,
        "macs_before": first["baseline"]["macs"],
        "macs_after": first["final"]["macs"],
        "macs_cut": first["baseline"]["macs"] / first["final"]["macs"],
        "latency_ms_before": statistics.median(r["onnx"]["latency_ms"]["baseline"]["median_ms"] for r in runs),
        "latency_ms_after": statistics.median(r["onnx"]["latency_ms"]["pruned"]["median_ms"] for r in runs),
        "speedups": speedups,
        "speedup": statistics.median(speedups),
    }


def markdown(rows, versions: dict) -> str:
    """The results table, with the machine and versions it was measured with."""
    lines = [
        "# Model families at rate 0.5 (DepGraph, round_to=8, 640 px, ONNX Runtime CPU, batch 1)",
        "",
        f"Measured by `python benchmarks/families.py` on {versions['machine']}: "
        + ", ".join(f"{k} {v}" for k, v in versions.items() if k != "machine")
        + ". Untrained nano models with 80 classes (latency does not depend on the weights); each speed-up is the "
        "median over the repeats of the prune run's own timing (30 runs after 5 warm-ups, both models alternating).",
        "",
        "| model | GMACs before → after | MACs cut | ORT latency before → after (ms) | speed-up (repeats) |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['macs_before'] / 1e9:.2f} → {r['macs_after'] / 1e9:.2f} | {r['macs_cut']:.2f}× | "
            f"{r['latency_ms_before']:.1f} → {r['latency_ms_after']:.1f} | {r['speedup']:.2f}× "
            f"({', '.join(f'{s:.2f}' for s in r['speedups'])}) |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    """Measure every family the installed Ultralytics ships and write the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    os.environ["YOLO_OFFLINE"] = "True"
    from importlib import metadata

    import onnxruntime
    import torch
    import ultralytics

    series = tuple(int(v) for v in ultralytics.__version__.split(".")[:2])
    first_series = {"yolo11": (8, 3), "yolo26": (8, 4)}
    shipped = [y for y in FAMILIES if series >= first_series.get(y[:6], (8, 0))]
    with tempfile.TemporaryDirectory() as work:
        rows = [measure(yaml, Path(work), args.repeats) for yaml in shipped]
    versions = {
        "machine": f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()})",
        "ultralytics": ultralytics.__version__,
        "torch": torch.__version__,
        "torch-pruning": metadata.version("torch-pruning"),  # the module's own string lags its release
        "onnxruntime": onnxruntime.__version__,
    }
    (HERE / "results_families.md").write_text(markdown(rows, versions), encoding="utf-8")
    (HERE / "results_families.json").write_text(json.dumps({"versions": versions, "rows": rows}, indent=1))
    print(markdown(rows, versions))


if __name__ == "__main__":
    main()
