"""How long a prune run takes, and what ``epochs=0`` keeps: the README's guidance for planning a run.

Through the public ``yolo`` command, on the demo's generated data (256 training and 32 validation images of four
shape classes):

1. the input: ``yolov8n.yaml`` trained 30 epochs at 128 px (the demo's baseline);
2. ``small``: ``yolo prune target_macs=0.5 iterative_steps=2 epochs=2`` at 128 px;
3. ``640``: the same at 640 px (``epochs=1``);
4. ``epochs=0`` at ``target_macs`` 0.8 and 0.5, 128 px: the pruned model's mAP50-95 without a fine-tune, with and
   without BatchNorm recalibration.

For each run: the wall time of the whole command, the fine-tune seconds of each step (``prune_report.json``), the
seconds per fine-tune epoch, and the fixed part of a run (wall time minus all fine-tunes: loading, the baseline's
validation, each step's prune, recalibration and validations, ONNX export and its check). Writes
``results_run_time.json`` and ``results_run_time.md`` beside this script.

Usage: ``python benchmarks/run_time.py [--work runs/bench_run_time]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from yolo_cli import run_logged  # noqa: E402

COMMON = ["batch=16", "workers=0", "seed=0", "deterministic=False", "plots=False"]




def _prune(name, base, data, keys, work):
    run = work / "runs" / name
    wall = run_logged(["prune", f"model={base}", f"data={data}", *COMMON, *keys, f"project={work / 'runs'}", f"name={name}",
                 "exist_ok=True"], work / f"{name}.log")
    report = json.loads((run / "prune_report.json").read_text())
    steps = report["steps"]
    finetune = [s.get("finetune_s") or 0.0 for s in steps]
    epochs = next((int(k.split("=")[1]) for k in keys if k.startswith("epochs=")), 0)
    return {
        "keys": keys, "wall_s": wall, "steps": len(steps), "finetune_s": finetune,
        "s_per_epoch": sum(finetune) / max(1, epochs * len(steps)),
        "fixed_s": wall - sum(finetune),
        "input_map50_95": report["baseline"]["map50_95"], "map50_95": report["final"]["map50_95"],
        "pruned_map50_95": [s.get("pruned_map50_95") for s in steps],
        "macs_cut": report["baseline"]["macs"] / report["final"]["macs"],
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "bench_run_time")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    import torch
    import ultralytics

    from ultralytics_prune_plugin.data import make_dataset

    os.environ.setdefault("YOLO_OFFLINE", "True")
    work = args.work.resolve()
    (work / "runs").mkdir(parents=True, exist_ok=True)
    data = make_dataset(work / "data", n_train=256, n_val=32, imgsz=128, n_classes=4, seed=0)
    base = work / "runs" / "base" / "weights" / "best.pt"
    record = {"started": datetime.now().isoformat(timespec="seconds"), "versions":
              f"torch {torch.__version__}, ultralytics {ultralytics.__version__}",
              "load_before": os.getloadavg(), "cores": os.cpu_count(), "runs": {}}
    if not base.is_file():
        record["base_s"] = run_logged(["detect", "train", "model=yolov8n.yaml", f"data={data}", "epochs=30", "imgsz=128",
                                 *COMMON, f"project={work / 'runs'}", "name=base", "exist_ok=True"], work / "base.log")
    dg = ["target_macs=0.5", "iterative_steps=2", "max_map_drop=1"]
    plan = {
        "small": [*dg, "epochs=2", "imgsz=128"],
        "640": [*dg, "epochs=1", "imgsz=640"],
        "epochs0_0.8": ["target_macs=0.8", "iterative_steps=1", "epochs=0", "imgsz=128"],
        "epochs0_0.5": ["target_macs=0.5", "iterative_steps=1", "epochs=0", "imgsz=128"],
        "epochs0_0.5_norecal": ["target_macs=0.5", "iterative_steps=1", "epochs=0", "imgsz=128",
                                "recalibrate_bn=False"],
    }
    for name, keys in plan.items():
        record["runs"][name] = _prune(name, base, data, keys, work)
        print(name, json.dumps(record["runs"][name]), flush=True)
    record["load_after"] = os.getloadavg()
    record["finished"] = datetime.now().isoformat(timespec="seconds")
    (HERE / "results_run_time.json").write_text(json.dumps(record, indent=1) + "\n")
    write_markdown(record)
    return record


def write_markdown(record):
    """``results_run_time.md`` from the record."""
    r = record["runs"]
    lines = [
        "# How long a prune run takes",
        "",
        f"`python benchmarks/run_time.py`, {record['started']} to {record['finished']}, {record['versions']}, "
        f"{record['cores']} cores ({platform.processor() or platform.machine()}), load average before "
        f"{record['load_before'][0]:.2f}, after {record['load_after'][0]:.2f}. Input: yolov8n trained 30 epochs at "
        "128 px on 256 generated images (32 validation images), batch 16.",
        "",
        "| run | keys | wall (s) | fine-tune s per epoch | fixed part (s) | mAP50-95 input → result |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in r.items():
        lines.append(
            f"| {name} | `{' '.join(row['keys'])}` | {row['wall_s']:.0f} | "
            f"{row['s_per_epoch']:.1f} | {row['fixed_s']:.0f} | {row['input_map50_95']:.3f} → {row['map50_95']:.3f} "
            + (f"({row['map50_95'] / row['input_map50_95']:.0%}) |" if row["input_map50_95"] else "(input trained at 128 px) |")
        )
    lines.append("")
    (HERE / "results_run_time.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
