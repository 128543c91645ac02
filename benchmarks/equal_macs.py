"""Pruning recipes compared at equal MACs and equal training epochs (``make bench`` part 4).

A channel rate cannot be compared across methods (slim removes cheap channels, DepGraph removes them uniformly), so
every recipe here is given the same MACs target (``target_macs``) and the same training budget after the input model:
``EPOCHS`` epochs in all, sparse-training epochs included. Flow, through the plugin's public CLI only:

1. ``make_dataset(..., difficulty="hard")`` (the data of part 1) and, per model, ``yolo train`` of ``<model>.yaml``
   for ``--base-epochs`` epochs: the input every recipe starts from (trained once, reused by later runs).
2. Per model, target and recipe: ``yolo prune model=<input> target_macs=<t> ...`` with the recipe's keys (see
   :data:`RECIPES`); recipes with sparse training first run ``yolo train`` on the input with ``sparse=True``.
3. The run's report gives MACs, mAP50-95 (PyTorch) and wall time; afterwards every result and its input are exported
   at 640 px and timed together in ONNX Runtime (CPU, batch 1, all files of a model taking turns run by run).
4. The control, per model: the unpruned input trained ``EPOCHS`` more epochs with the fine-tune defaults of a prune
   run (SGD, one optimizer step per batch, no warm-up, no mosaic). A result can keep more than 100 % of an input
   that was not trained to the end; *of control* says what it keeps of the same training without pruning.

Writes ``results_equal_macs.json``, ``results_equal_macs.md`` and two plots (``equal_macs_map_vs_*.png``) next to
this file; ``--out NAME`` writes ``NAME.json``, ``NAME.md`` and ``NAME_map_vs_*.png`` instead (another series, say).
Run: ``python benchmarks/equal_macs.py [--models yolov8n yolo11n] [--targets 0.5 0.43 0.3] [--recipes ...]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, List

HERE = Path(__file__).resolve().parent
EPOCHS = 10  # training epochs after the input, in every recipe
STEPS = 2  # DepGraph steps; each fine-tunes EPOCHS // STEPS epochs
IMGSZ, N_TRAIN, N_VAL, N_CLASSES = 160, 600, 150, 6
COMMON = ["imgsz=160", "batch=16", "workers=0", "seed=0", "deterministic=False", "plots=False"]
# No prune run stops on its mAP budget before its target, so that every row is at the same MACs.
PRUNE_COMMON = [*COMMON, "max_map_drop=1"]

# name -> (what it is, epochs of sparse training first, its keys, keys of `yolo prune`). Every recipe totals EPOCHS.
_DG = [f"iterative_steps={STEPS}", f"epochs={EPOCHS // STEPS}"]
_OLD = ["prune_head=False", "nbs=64"]  # the defaults before issue 12
_AUTO = "optimizer=auto"  # Ultralytics' default, and the fine-tunes' until optimizer=SGD became theirs
RECIPES: Dict[str, Any] = {
    # The ablation: each recipe pins every key it was measured with, so that later defaults do not change it.
    "l2": ("DepGraph, group L2, the same fraction of every layer, head kept, Ultralytics' fine-tune settings (warm-up, "
           "nbs=64), no distillation: the plugin's recipe before issue 12", 0, [],
           [*_DG, _AUTO, *_OLD, "distill=False", "recalibrate_bn=False", "warmup_epochs=3"]),
    "l2+nowarmup": ("l2, fine-tunes without warm-up", 0, [],
                    [*_DG, _AUTO, *_OLD, "distill=False", "recalibrate_bn=False", "warmup_epochs=0"]),
    "l2+recal": ("l2+nowarmup, BatchNorm statistics re-estimated after each prune", 0, [],
                 [*_DG, _AUTO, *_OLD, "distill=False", "recalibrate_bn=True", "warmup_epochs=0"]),
    "l2+kd": ("l2+recal, the input distilled into every fine-tune", 0, [],
              [*_DG, _AUTO, *_OLD, "distill=True", "recalibrate_bn=True", "warmup_epochs=0"]),
    "l2+kd4": ("l2+kd with distill_weight=4", 0, [],
               [*_DG, _AUTO, *_OLD, "distill=True", "distill_weight=4", "recalibrate_bn=True", "warmup_epochs=0"]),
    "global+kd": ("l2+kd, channels ranked globally (max_layer_rate 0.8)", 0, [],
                  [*_DG, _AUTO, *_OLD, "distill=True", "recalibrate_bn=True", "warmup_epochs=0",
                   "global_pruning=True"]),
    "taylor+kd": ("l2+kd with Taylor importance", 0, [],
                  [*_DG, _AUTO, *_OLD, "distill=True", "recalibrate_bn=True", "warmup_epochs=0",
                   "importance=taylor"]),
    "head+kd": ("l2+kd with prune_head=True", 0, [],
                [*_DG, _AUTO, "nbs=64", "distill=True", "recalibrate_bn=True", "warmup_epochs=0",
                 "prune_head=True"]),
    "l2+nbs16": ("l2+recal with one optimizer step per batch (nbs=16)", 0, [],
                 [*_DG, _AUTO, "prune_head=False", "nbs=16", "distill=False", "recalibrate_bn=True",
                  "warmup_epochs=0"]),
    "l2+kd+nbs16": ("l2+kd with nbs=16", 0, [],
                    [*_DG, _AUTO, "prune_head=False", "nbs=16", "distill=True", "recalibrate_bn=True",
                     "warmup_epochs=0"]),
    "taylor+kd+nbs16": ("taylor+kd with nbs=16", 0, [],
                        [*_DG, _AUTO, "prune_head=False", "nbs=16", "distill=True", "recalibrate_bn=True",
                         "warmup_epochs=0", "importance=taylor"]),
    "head+kd+nbs16": ("l2+kd+nbs16 with the head's inner convolutions pruned too (prune_head=True)", 0, [],
                      [*_DG, _AUTO, "prune_head=True", "nbs=16", "distill=True", "recalibrate_bn=True",
                       "warmup_epochs=0"]),
    "l2+kd+nbs16+sgd": ("l2+kd+nbs16 with SGD at lr0 0.01 (optimizer=auto picks AdamW at 0.002·5/(4+nc) = 0.001 "
                        "for a run this short)", 0, [],
                        [*_DG, "prune_head=False", "nbs=16", "distill=True", "recalibrate_bn=True", "warmup_epochs=0",
                         "optimizer=SGD", "lr0=0.01"]),
    "head+kd+nbs16+sgd": ("head+kd+nbs16 with SGD at lr0 0.01", 0, [],
                          [*_DG, "prune_head=True", "nbs=16", "distill=True", "recalibrate_bn=True",
                           "warmup_epochs=0", "optimizer=SGD"]),
    "l2+kd+nbs16+lowlr": ("l2+kd+nbs16 with AdamW at lr0 0.0002 (what optimizer=auto gives 80 classes is 0.00012)",
                          0, [],
                          [*_DG, "prune_head=False", "nbs=16", "distill=True", "recalibrate_bn=True",
                           "warmup_epochs=0", "optimizer=AdamW", "lr0=0.0002"]),
    "l2+ukd+nbs16": ("l2+nbs16 distilled by Ultralytics' own feature distillation (8.4 and later: `distill_model`, "
                     "`dis` 6) instead of the plugin's", 0, [],
                     [*_DG, _AUTO, "prune_head=False", "nbs=16", "distill=False", "recalibrate_bn=True",
                      "warmup_epochs=0", "distill_model={input}"]),
    # Sparse training first (5 of the 10 epochs), then the default fine-tune settings.
    "group+kd": ("group sparse learning for 5 epochs (sr 1e-3), then one DepGraph step with 5 distilled epochs, "
                 "optimizer=auto", 5, ["method=group", "sr=0.001"],
                 ["iterative_steps=1", f"epochs={EPOCHS - 5}", "distill=True", "prune_head=False", "nbs=16", _AUTO]),
    "group+head+kd": ("group+kd with the head's inner convolutions pruned too", 5, ["method=group", "sr=0.001"],
                      ["iterative_steps=1", f"epochs={EPOCHS - 5}", "distill=True", "prune_head=True", "nbs=16", _AUTO]),
    "group+kd+sgd": ("group+kd with SGD fine-tuning (the default now)", 5, ["method=group", "sr=0.001"],
                     ["iterative_steps=1", f"epochs={EPOCHS - 5}", "distill=True", "prune_head=False", "nbs=16",
                      "optimizer=SGD"]),
    "slim+kd": ("Network Slimming: 5 sparse epochs (sr 0.01), one threshold, 5 distilled fine-tune epochs", 5,
                ["sr=0.01"], ["method=slim", f"epochs={EPOCHS - 5}", "distill=True", "nbs=16", _AUTO]),
    "slim+kd+sgd": ("slim+kd with SGD fine-tuning (the default now)", 5, ["sr=0.01"],
                    ["method=slim", f"epochs={EPOCHS - 5}", "distill=True", "nbs=16", "optimizer=SGD"]),
    "default": ("`yolo prune target_macs=T iterative_steps=2 epochs=5`, every other key at its default: the same keys as "
                "l2+kd+nbs16+sgd", 0, [], _DG),
}


def _yolo() -> str:
    """The ``yolo`` command of the running interpreter's environment."""
    path = Path(sys.executable).with_name("yolo")
    return str(path) if path.exists() else "yolo"


def _run(args: List[str], log: Path, cwd: Path) -> float:
    """Run ``yolo <args>``, its output to ``log``; return the wall time. Raises on failure, naming the log."""
    start = time.time()
    with open(log, "w") as f:
        proc = subprocess.run([_yolo(), *args], cwd=cwd, stdout=f, stderr=subprocess.STDOUT, env={**os.environ})
    if proc.returncode:
        raise RuntimeError(f"yolo {' '.join(args)} failed (exit {proc.returncode}); see {log}")
    return time.time() - start


def _input_model(model: str, data: str, work: Path, epochs: int) -> Path:
    """Train ``<model>.yaml`` once (reused when its weights exist); return its best weights."""
    best = work / "runs" / f"base_{model}" / "weights" / "best.pt"
    if not best.is_file():
        _run(["detect", "train", f"model={model}.yaml", f"data={data}", f"epochs={epochs}", *COMMON,
              f"project={work / 'runs'}", f"name=base_{model}", "exist_ok=True"], work / f"base_{model}.log", work)
    return best


def _sparse_input(base: Path, data: str, work: Path, model: str, epochs: int, keys: List[str]) -> Path:
    """Sparse-train the input for ``epochs`` epochs with ``keys`` once; return its last weights."""
    name = f"sparse_{model}_{epochs}_{'_'.join(k.replace('=', '') for k in keys)}"
    last = work / "runs" / name / "weights" / "last.pt"
    if not last.is_file():
        _run(["train", f"model={base}", f"data={data}", f"epochs={epochs}", "sparse=True", *keys, *COMMON,
              "close_mosaic=0", "warmup_epochs=0", f"project={work / 'runs'}", f"name={name}", "exist_ok=True"], work / f"{name}.log", work)
    return last


def control_map(model: str, base: Path, data: str, work: Path, optimizer: str = "SGD") -> float:
    """Train the unpruned input ``EPOCHS`` more epochs with a prune run's fine-tune defaults (once); return the best
    mAP50-95 of its epochs."""
    name = f"control_{model}_{optimizer}"
    results = work / "runs" / name / "results.csv"
    if not (work / "runs" / name / "weights" / "best.pt").is_file():
        _run(["detect", "train", f"model={base}", f"data={data}", f"epochs={EPOCHS}", *COMMON, "nbs=16",
              "warmup_epochs=0", f"close_mosaic={EPOCHS}", f"optimizer={optimizer}", f"project={work / 'runs'}",
              f"name={name}", "exist_ok=True"], work / f"{name}.log", work)
    lines = results.read_text().splitlines()
    column = [c.strip() for c in lines[0].split(",")].index("metrics/mAP50-95(B)")
    return max(float(line.split(",")[column]) for line in lines[1:])


def run_recipe(model: str, target: float, recipe: str, base: Path, data: str, work: Path) -> Dict[str, Any]:
    """One prune run of ``recipe`` at ``target``; the row of the results table."""
    _, sparse_epochs, sparse_keys, keys = RECIPES[recipe]
    source, pre_s = base, 0.0
    if sparse_epochs:
        start = time.time()
        source = _sparse_input(base, data, work, model, sparse_epochs, sparse_keys)
        pre_s = time.time() - start  # 0 when reused: the table reports the first measurement
    name = f"{model}_{target}_{recipe}".replace("+", "-")
    run_dir = work / "runs" / name
    if run_dir.exists():
        shutil.rmtree(run_dir)
    keys = [key.replace("{input}", str(base)) for key in keys]  # the unpruned input, where a recipe names it
    seconds = _run(["prune", f"model={source}", f"data={data}", f"target_macs={target}", *keys, *PRUNE_COMMON,
                    f"project={work / 'runs'}", f"name={name}", "exist_ok=True"], work / f"{name}.log", work)
    row = row_from_run(model, target, recipe, run_dir, seconds, pre_s)
    (run_dir / "benchmark_row.json").write_text(json.dumps(row, indent=1))
    return row


def row_from_run(model: str, target: float, recipe: str, run_dir: Path, seconds, pre_s) -> Dict[str, Any]:
    """The table row of one finished prune run (``seconds``: its wall time, None when not measured)."""
    report = json.loads((run_dir / "prune_report.json").read_text())
    base_report = report["baseline"]
    return {
        "model": model, "target": target, "recipe": recipe, "run": str(run_dir),
        "input_map50_95": None, "source_map50_95": base_report["map50_95"],
        "macs_before": base_report["macs"], "macs_after": report["final"]["macs"],
        "map50_95": report["final"]["map50_95"], "kept_step": report["final"]["step"],
        "prune_s": seconds, "sparse_s": pre_s,
        "finetune_s": sum(row.get("finetune_s", 0.0) for row in report["steps"]),
        "pt": str(run_dir / "weights" / "pruned.pt"),
    }


def time_at_640(rows: List[Dict[str, Any]], inputs: Dict[str, Path], work: Path, runs: int = 20) -> None:
    """Export every result and input at 640 px and time them together in ONNX Runtime; fill ``ort_ms``/``speedup``."""
    from ultralytics import YOLO

    from ultralytics_prune_plugin.deploy.onnx import measure_latency

    for model, base in inputs.items():
        files = {"input": base}
        files.update({r["recipe"] + f"@{r['target']}": Path(r["pt"]) for r in rows if r["model"] == model})
        onnx = {}
        for label, pt in files.items():
            target = work / "onnx640" / model / f"{label.replace('+', '-').replace('@', '_')}.pt"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(pt, target)
            onnx[label] = YOLO(str(target)).export(format="onnx", imgsz=640, opset=17, simplify=False)
        latency = measure_latency(onnx, 640, runs=runs, warmup=3)
        base_ms = latency["input"]["median_ms"]
        for r in rows:
            if r["model"] == model:
                r["ort_ms"] = latency[r["recipe"] + f"@{r['target']}"]["median_ms"]
                r["input_ort_ms"] = base_ms
                r["speedup"] = base_ms / r["ort_ms"]


def markdown(record: Dict[str, Any]) -> str:
    """The results as a Markdown page."""
    env = record["environment"]
    lines = [
        "# Recipes at equal MACs and equal epochs",
        "",
        f"Command: `python benchmarks/equal_macs.py {' '.join(record['argv'])}`, started {record['started']}, "
        f"finished {record['finished']} on {env['machine']}; {env['versions']}.",
        "",
        f"Data: the generated hard data of part 1 ({N_TRAIN} training and {N_VAL} validation images at {IMGSZ} px, "
        f"{N_CLASSES} classes). Input: `<model>.yaml` trained for {record['base_epochs']} epochs. Every recipe gets "
        f"`target_macs` and {EPOCHS} training epochs after the input, sparse-training epochs included (DepGraph: "
        f"{STEPS} steps × {EPOCHS // STEPS} fine-tune epochs). *kept*: the result's mAP50-95 over the input's (both "
        "Ultralytics validation of the PyTorch model). Latency: ONNX Runtime CPU, batch 1, 640 px, median of "
        "20 runs, all files of a model taking turns; other work ran on the machine at the same time, so the "
        "latencies are noisy. Wall time: the whole `yolo prune` run (validations, ONNX check included) plus any "
        "sparse training. Every run has `max_map_drop=1`, so that none stops on its mAP budget before its target.",
        "",
        "*of control*: the result's mAP50-95 over the control's, the unpruned input trained the same "
        f"{EPOCHS} epochs with a prune run's fine-tune defaults (SGD at 0.01, one optimizer step per batch, no "
        "warm-up, no mosaic; best epoch): "
        + ", ".join(f"{m} {c['SGD']:.3f}" + (f" (with optimizer=auto {c['auto']:.3f})" if "auto" in c else "")
                    for m, c in record.get("controls", {}).items())
        + ". The inputs were not trained to the end, so *kept* above 100 % is partly further training; *of control* "
        "is the cost of pruning itself.",
        "",
        "The default recipe of `yolo prune` is **l2+kd+nbs16+sgd** (its keys are the defaults): uniform group-L2 "
        "DepGraph pruning to the target, BatchNorm recalibration, distilled fine-tunes with SGD at lr0 0.01, without "
        "warm-up and with one optimizer step per batch.",
        "",
        "| model | target MACs | recipe | GMACs (160 px) | MACs cut | mAP50-95 | kept | of control | ORT 640 ms "
        "| speed-up | wall (min) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in record["rows"]:
        lines.append(
            f"| {r['model']} | {r['target']} | {r['recipe']} | {r['macs_after'] / 1e9:.3f} | "
            f"{r['macs_before'] / r['macs_after']:.2f}× | {r['map50_95']:.3f} | **{r['kept']:.1%}** | "
            f"{r.get('of_control', float('nan')):.1%} | {r.get('ort_ms', float('nan')):.1f} | {r.get('speedup', float('nan')):.2f}× | "
            + (f"{(r['prune_s'] + r['sparse_s']) / 60:.1f} |"
               if r.get("prune_s") and (r["sparse_s"] is not None or not RECIPES[r["recipe"]][1]) else "– |")
        )
    lines += ["", "Recipes:", ""]
    lines += [
        f"- **{name}**: {what}; " + (f"`yolo sparse {' '.join(sparse)}` for {n} epochs, then " if n else "")
        + f"`yolo prune {' '.join(k.replace('{input}', 'INPUT.pt') for k in keys)}`."
        for name, (what, n, sparse, keys) in RECIPES.items()
        if any(r["recipe"] == name for r in record["rows"])
    ]
    prefix = _plot_prefix(record["out"])
    if len({r["target"] for r in record["rows"]}) > 1:  # else plots() draws nothing
        lines += ["", f"![mAP50-95 against MACs]({prefix}_map_vs_macs.png)",
                  f"![mAP50-95 against latency]({prefix}_map_vs_latency.png)"]
    lines.append("")
    return "\n".join(lines)


def _plot_prefix(out: str) -> str:
    """The plots' file-name prefix for the results named ``out``."""
    return "equal_macs" if out == "results_equal_macs" else out


def plots(record: Dict[str, Any]) -> None:
    """mAP50-95 kept against MACs cut and against 640 px latency: one panel per model, one line per recipe measured
    at more than one target (the single-target ablation rows are in the table only)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = [m for m in ("yolov8n", "yolo11n") if any(r["model"] == m for r in record["rows"])]
    lines = sorted({r["recipe"] for r in record["rows"]
                    if len({x["target"] for x in record["rows"] if x["recipe"] == r["recipe"]}) > 1})
    if not lines:
        return
    colours = {recipe: plt.get_cmap("tab10")(i % 10) for i, recipe in enumerate(lines)}
    for x_key, x_label, file in (
        ("macs_cut", "MACs cut (×)", f"{_plot_prefix(record['out'])}_map_vs_macs.png"),
        ("ort_ms", "ONNX Runtime latency at 640 px (ms)", f"{_plot_prefix(record['out'])}_map_vs_latency.png"),
    ):
        fig, axes = plt.subplots(1, len(models), figsize=(5.5 * len(models), 4.5), squeeze=False, sharey=True)
        for ax, model in zip(axes[0], models):
            for recipe in lines:
                pts = sorted((r for r in record["rows"] if r["recipe"] == recipe and r["model"] == model),
                             key=lambda r: r["target"])
                xs = [r["macs_before"] / r["macs_after"] if x_key == "macs_cut" else r.get("ort_ms") for r in pts]
                if pts and None not in xs:
                    ax.plot(xs, [r["kept"] for r in pts], marker="o", color=colours[recipe], label=recipe)
            ax.axhline(0.97, color="grey", linestyle=":", linewidth=1)
            ax.set_title(model)
            ax.set_xlabel(x_label)
        axes[0][0].set_ylabel("mAP50-95 kept (fraction of the input's)")
        handles = {}
        for ax in axes[0]:
            handles.update(zip(*reversed(ax.get_legend_handles_labels())))  # label -> line, both panels
        if handles:
            axes[0][-1].legend([handles[k] for k in sorted(handles)], sorted(handles), fontsize=8, loc="lower left")
        fig.tight_layout()
        fig.savefig(HERE / file, dpi=120)
        plt.close(fig)


def main(argv=None) -> Dict[str, Any]:
    """Run the comparison and write its files."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["yolov8n", "yolo11n"])
    parser.add_argument("--targets", nargs="+", type=float, default=[0.5, 0.43, 0.3])
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--base-epochs", type=int, default=50)
    parser.add_argument("--work", default=str(HERE.parent / "runs" / "bench_equal_macs"))
    parser.add_argument("--merge", action="store_true", help="keep rows of earlier runs for other combinations")
    parser.add_argument("--no-latency", action="store_true")
    parser.add_argument("--collect", action="store_true", help="only gather finished runs of --work into the tables")
    parser.add_argument("--auto-control", action="store_true",
                        help="also train the control with optimizer=auto (the fine-tune default before)")
    parser.add_argument("--out", default="results_equal_macs", help="name of the result files next to this script")
    args = parser.parse_args(argv)

    import torch
    import ultralytics

    from ultralytics_prune_plugin.data import make_dataset

    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    out_json = HERE / f"{args.out}.json"
    record = json.loads(out_json.read_text()) if args.merge and out_json.exists() else {"rows": []}
    record.update({
        "argv": list(argv if argv is not None else sys.argv[1:]),
        "started": datetime.now().isoformat(timespec="seconds"),
        "base_epochs": args.base_epochs,
        "out": args.out,
        "environment": {
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
            "versions": f"Python {platform.python_version()}, torch {torch.__version__}, "
                        f"ultralytics {ultralytics.__version__}",
        },
    })
    data = str(make_dataset(work / "data", n_train=N_TRAIN, n_val=N_VAL, imgsz=IMGSZ, n_classes=N_CLASSES, seed=0,
                            difficulty="hard"))
    inputs, controls = {}, {}
    for model in args.models:
        inputs[model] = _input_model(model, data, work, args.base_epochs)
        controls[model] = control_map(model, inputs[model], data, work)
        record.setdefault("controls", {})[model] = {"SGD": controls[model]}
        if args.auto_control:
            record["controls"][model]["auto"] = control_map(model, inputs[model], data, work, "auto")
        for target in args.targets:
            for recipe in args.recipes:
                if args.collect:
                    run_dir = work / "runs" / f"{model}_{target}_{recipe}".replace("+", "-")
                    saved = run_dir / "benchmark_row.json"
                    if saved.is_file():
                        row = json.loads(saved.read_text())
                    elif (run_dir / "prune_report.json").is_file():
                        row = row_from_run(model, target, recipe, run_dir, None, 0.0)
                    else:
                        continue
                else:
                    row = run_recipe(model, target, recipe, inputs[model], data, work)
                record["rows"] = [r for r in record["rows"] if (r["model"], r["target"], r["recipe"]) != (model, target, recipe)]
                record["rows"].append(row)
                out_json.write_text(json.dumps(record, indent=1))
                print(f"{model} target {target} {recipe}: mAP50-95 {row['map50_95']:.3f}", flush=True)
    record["rows"] = [r for r in record["rows"] if (Path(r["run"]) / "prune_report.json").is_file()]  # runs still there
    for r in record["rows"]:
        base_map = json.loads((Path(r["run"]) / "prune_report.json").read_text())["baseline"]["map50_95"]
        if RECIPES[r["recipe"]][1]:  # a sparse-trained source: compare with the plain input
            base_map = next(
                (x["source_map50_95"] for x in record["rows"] if x["model"] == r["model"] and not RECIPES[x["recipe"]][1]),
                base_map,
            )
        r["input_map50_95"] = base_map
        r["kept"] = r["map50_95"] / base_map
        if RECIPES[r["recipe"]][1] and (r.get("sparse_s") or 0.0) < 10:  # a reused sparse input: its training time
            r["sparse_s"] = max((x.get("sparse_s") or 0.0 for x in record["rows"] if x["model"] == r["model"]
                                 and RECIPES[x["recipe"]][2] == RECIPES[r["recipe"]][2]), default=0.0) or None
        control = controls.get(r["model"]) or record.get("controls", {}).get(r["model"], {}).get("SGD")
        r["control_map50_95"] = control  # None for a model this run did not train a control for
        r["of_control"] = r["map50_95"] / control if control else float("nan")
    if not args.no_latency:
        time_at_640([r for r in record["rows"] if r["model"] in inputs], inputs, work)
    record["rows"].sort(key=lambda r: (r["model"], -r["target"], r["recipe"]))
    record["finished"] = datetime.now().isoformat(timespec="seconds")
    out_json.write_text(json.dumps(record, indent=1))
    (HERE / f"{args.out}.md").write_text(markdown(record))
    plots(record)
    return record


if __name__ == "__main__":
    main()
