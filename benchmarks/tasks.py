"""Every task at rate 0.5 on its generated data: the MACs cut and how much of the task's own metric is kept.

For each task (detect, segment, pose, obb, classify) the installed series' nano model (YOLO11 from 8.3 on, else
YOLOv8) is trained from its yaml on the project's generated data of that task, then pruned with the default
``yolo prune`` method (DepGraph, ``round_to=8``) at rate 0.5 in one step with a short fine-tune. The table goes to
``benchmarks/results_tasks.md``; MACs are counted at 640 px (the training size only sets the metric).

Run: ``python benchmarks/tasks.py [--epochs 20 --finetune 5 --imgsz 128]`` in an environment with the plugin.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SUFFIX = {"detect": "", "segment": "-seg", "pose": "-pose", "obb": "-obb", "classify": "-cls"}


def run_task(task: str, family: str, work: Path, epochs: int, finetune: int, imgsz: int) -> dict:
    """Train, prune and measure one task; return its row."""
    from ultralytics import YOLO

    from ultralytics_prune_plugin.data import make_dataset
    from ultralytics_prune_plugin.pruning.counting import count_macs_params

    data = make_dataset(work / f"data-{task}", n_train=256, n_val=32, imgsz=imgsz, n_classes=4, task=task)
    common = dict(imgsz=imgsz, batch=16, workers=0, project=str(work), deterministic=False, plots=False)
    started = time.time()
    model = YOLO(f"{family}{SUFFIX[task]}.yaml")
    model.train(data=str(data), epochs=epochs, name=f"{task}-base", optimizer="AdamW", lr0=0.002, **common)
    best = work / f"{task}-base" / "weights" / "best.pt"
    report = YOLO(best).prune(data=str(data), rate=0.5, iterative_steps=1, epochs=finetune, name=f"{task}-prune",
                              optimizer="AdamW", lr0=0.002, **common)
    macs_640 = {k: count_macs_params(YOLO(report[k]["weights"]).model, 640)[0] for k in ("baseline", "final")}
    base, final = report["baseline"]["map50_95"], report["final"]["map50_95"]
    return {
        "task": task,
        "model": f"{family}{SUFFIX[task]}",
        "metric": report["metrics"]["map50_95"],
        "gmacs_640": [macs_640["baseline"] / 1e9, macs_640["final"] / 1e9],
        "macs_cut": macs_640["baseline"] / macs_640["final"],
        "metric_before": base,
        "metric_after": final,
        "kept": final / base if base else None,
        "onnx_agrees": report["onnx"].get("onnx_agrees"),
        "speedup": report["onnx"]["speedup"],
        "seconds": time.time() - started,
    }


def main(argv=None) -> None:
    """Run every task and write the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--finetune", type=int, default=5)
    parser.add_argument("--imgsz", type=int, default=128)
    args = parser.parse_args(argv)
    os.environ["YOLO_OFFLINE"] = "True"
    import ultralytics

    series = tuple(int(v) for v in ultralytics.__version__.split(".")[:2])
    family = "yolo11n" if series >= (8, 3) else "yolov8n"
    with tempfile.TemporaryDirectory() as work:
        rows = [run_task(t, family, Path(work), args.epochs, args.finetune, args.imgsz) for t in SUFFIX]
    lines = [
        "# Every task at rate 0.5 (DepGraph, one step, round_to=8) on generated data",
        "",
        f"Measured by `python benchmarks/tasks.py` with ultralytics {ultralytics.__version__} on {os.cpu_count()} CPU "
        f"cores: 256 training images of each task at {args.imgsz} px, 4 classes; {args.epochs} training epochs from "
        f"scratch, then pruning and {args.finetune} fine-tune epochs. MACs at 640 px. The metric is the task's own "
        "(the one `max_map_drop` applies to); \"kept\" is after / before.",
        "",
        "| task | model | GMACs (640 px) before → after | MACs cut | metric | before → after | kept | ORT agrees |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        kept = f"{r['kept']:.0%}" if r["kept"] is not None else "-"
        lines.append(
            f"| {r['task']} | {r['model']} | {r['gmacs_640'][0]:.2f} → {r['gmacs_640'][1]:.2f} | {r['macs_cut']:.2f}× | "
            f"{r['metric']} | {r['metric_before']:.3f} → {r['metric_after']:.3f} | {kept} | {r['onnx_agrees']} |"
        )
    text = "\n".join(lines) + "\n"
    (HERE / "results_tasks.md").write_text(text, encoding="utf-8")
    (HERE / "results_tasks.json").write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1))
    print(text)


if __name__ == "__main__":
    main()
