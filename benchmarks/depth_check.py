"""Would removing whole blocks (depth) lift speed-up ÷ MACs cut where channel pruning stops? (ONNX Runtime CPU, 640 px,
batch 1)

Issue 17 asks for a measured speed-up of 2× at speed-up ÷ MACs cut ≥ 0.9 on one thread and on all threads.
``speedup_check.py`` shows that channel pruning stays below that on the nano models: pruned channels leave the
element-wise work (SiLU, reorders, adds, concatenations) falling only with the width, while the MACs fall with its
square. Removing a residual block takes its element-wise nodes with it, so a mix of fewer blocks and narrower layers
might keep pace with the MACs. This script measures how far that goes before anything is built for it.

For each model (``yolov8n``, ``yolo11n``, ``yolo26n``: their ``.yaml``, untrained; latency does not depend on the
weights) it builds architectures at three depths, four where a block holds attention:

- ``full``: the model's own block counts;
- ``no_backbone_blocks``: every ``C2f`` / ``C3k2`` of the backbone without its residual blocks (``n=0``);
- ``no_blocks``: every ``C2f`` / ``C3k2`` without them (the attention block ``C2PSA`` is kept; yolo26n's last
  ``C3k2`` holds an attention block of its own, which goes with its blocks);
- ``no_attention`` (only where a ``C3k2`` holds attention, as in yolo26n): every block kept, but those ``C3k2`` built
  without their attention (``attn=False``), to tell the attention's share from the blocks';

each at a range of widths (the model's width multiple times 1.0 … 0.28; Ultralytics rounds every layer's channels to a
multiple of 8, as ``round_to=8`` would). Every architecture is exported with Ultralytics' exporter; a **separate
process** (this script with ``--measure``) times all files of a model interleaved, on one thread, then on all threads.
Per depth, the MACs cut that gives a measured 2× is interpolated between the two widths around it, and with it the
speed-up ÷ MACs cut at 2×.

Uniform width is a stand-in for a pruned allocation, and blocks taken out of the architecture stand in for blocks
pruned out of a trained model; what is measured is the runtime's time per MAC at each shape, not accuracy.

Usage: ``python benchmarks/depth_check.py [--models yolov8n yolo11n yolo26n] [--runs 30] [--out NAME]``; writes
``results_depth.md``, ``.json`` and ``.png`` next to this file. ``--render --out NAME`` rewrites ``NAME.md`` from
``NAME.json``; ``--update --models M`` measures ``M`` again into the existing results, keeping the other models'.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from speedup_check import add_mode_arguments, machine, measure_or_render  # noqa: E402

IMGSZ = 640
SPEEDUP = 2.0
BLOCKS = ("C2f", "C3k2")  # modules whose repeat count is a number of residual blocks
DEPTHS = ("full", "no_backbone_blocks", "no_blocks", "no_attention")
WIDTH_FACTORS = (1.0, 0.9, 0.8, 0.72, 0.65, 0.58, 0.52, 0.46, 0.4, 0.34, 0.28)


def architecture(model: str, depth: str, width_factor: float) -> Dict[str, Any]:
    """``<model>.yaml`` at scale ``n`` with its block counts written out (depth multiple 1.0), the chosen blocks
    removed, and its width multiple times ``width_factor``."""
    from ultralytics.nn.tasks import yaml_model_load

    source = yaml_model_load(f"{model}.yaml")
    depth_multiple, width_multiple, max_channels = source["scales"][source.get("scale") or "n"]
    cfg = {k: v for k, v in source.items() if k not in ("yaml_file", "scale", "scales", "backbone", "head")}
    cfg["scales"] = {"n": [1.0, round(width_multiple * width_factor, 4), max_channels]}
    for part in ("backbone", "head"):
        layers = []
        for origin, repeats, module, args in source[part]:
            repeats = max(round(repeats * depth_multiple), 1) if repeats > 1 else repeats
            if module in BLOCKS and (depth == "no_blocks" or (depth == "no_backbone_blocks" and part == "backbone")):
                repeats = 0
            if depth == "no_attention" and has_attention(module, args):
                args = [*args[:3], False, *args[4:]]
            layers.append([origin, repeats, module, args])
        cfg[part] = layers
    return cfg


def has_attention(module: str, args: List[Any]) -> bool:
    """Whether a yaml layer is a ``C3k2`` built with attention (``[c2, c3k, e, attn, ...]``)."""
    return module == "C3k2" and len(args) > 3 and args[3] is True


def depths(model: str) -> List[str]:
    """The depths measured for ``model``: ``no_attention`` only where some ``C3k2`` holds attention."""
    from ultralytics.nn.tasks import yaml_model_load

    source = yaml_model_load(f"{model}.yaml")
    attention = any(has_attention(module, args) for *_, module, args in source["backbone"] + source["head"])
    return [d for d in DEPTHS if d != "no_attention" or attention]


def build(model: str, work: Path) -> Dict[str, Dict[str, Any]]:
    """Export every depth × width of ``model``; label -> ``{"depth", "width_factor", "macs", "onnx"}``."""
    import torch
    import torch_pruning as tp
    import yaml
    from ultralytics import YOLO

    built = {}
    for depth in depths(model):
        for factor in WIDTH_FACTORS:
            label = f"{model}_{depth}_w{factor}"
            path = work / f"{label}.yaml"
            path.write_text(yaml.safe_dump(architecture(model, depth, factor), sort_keys=False))
            yolo = YOLO(str(path))
            macs, _ = tp.utils.count_ops_and_params(yolo.model.eval(), torch.zeros(1, 3, IMGSZ, IMGSZ))
            onnx = work / f"{label}.onnx"
            if not onnx.is_file():
                Path(yolo.export(format="onnx", imgsz=IMGSZ, verbose=False)).replace(onnx)
            built[label] = {"depth": depth, "width_factor": factor, "macs": float(macs), "onnx": str(onnx)}
    return built


def measure(files: Dict[str, str], runs: int) -> Dict[str, Any]:
    """Time ``files`` interleaved on one thread and on all threads."""
    from ultralytics_prune_plugin.deploy.latency import time_models

    models = {label: ("onnxruntime", path) for label, path in files.items()}
    return {str(threads): time_models(models, IMGSZ, runs=runs, warmup=3, threads=threads) for threads in (1, None)}


def measure_in_child(files: Dict[str, str], runs: int, out: Path) -> Dict[str, Any]:
    """Run :func:`measure` in a fresh Python process and read its result."""
    argv = [sys.executable, __file__, "--measure", str(out), "--runs", str(runs)]
    subprocess.run(argv + [f"{label}={path}" for label, path in files.items()], check=True)
    return json.loads(out.read_text())


def at_speedup(points: List[Dict[str, float]], target: float = SPEEDUP) -> Optional[Dict[str, float]]:
    """The MACs cut at which the measured speed-up reaches ``target``, interpolated linearly between the two widths
    around it (points sorted by MACs cut), and the ratio there; None if no width reaches it."""
    points = sorted(points, key=lambda p: p["cut"])
    for low, high in zip(points, points[1:]):
        if low["speedup"] <= target <= high["speedup"] and high["speedup"] > low["speedup"]:
            cut = low["cut"] + (target - low["speedup"]) * (high["cut"] - low["cut"]) / (high["speedup"] - low["speedup"])
            return {"cut": cut, "ratio": target / cut}
    return None


def analyse(model: str, built: Dict[str, Dict[str, Any]], timed: Dict[str, Any]) -> Dict[str, Any]:
    """Per thread count and depth: every width's MACs cut, speed-up (fastest runs) and ratio, and the ratio at 2×."""
    reference = f"{model}_full_w1.0"
    out: Dict[str, Any] = {}
    for threads, times in timed.items():
        base_ms, base_macs = times[reference]["min_ms"], built[reference]["macs"]
        per_depth = {}
        for depth in dict.fromkeys(info["depth"] for info in built.values()):
            points = []
            for label, info in built.items():
                if info["depth"] == depth:
                    cut, speedup = base_macs / info["macs"], base_ms / times[label]["min_ms"]
                    points.append({"width_factor": info["width_factor"], "cut": cut, "speedup": speedup,
                                   "ratio": speedup / cut, "ms": times[label]["min_ms"]})
            per_depth[depth] = {"points": points, "at_2x": at_speedup(points)}
        out[threads] = per_depth
    return out


def markdown(record: Dict[str, Any]) -> str:
    """The results page."""
    flags = ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in record["cpu_flags"].items())
    lines = [
        "# Depth against width: speed-up ÷ MACs cut at a measured 2× (`benchmarks/depth_check.py`)",
        "",
        f"- Measured {record['started']} on {record['cpu']} ({record['cores']} cores; {flags}); {record['versions']}."
        + "".join(f" {model} measured again {when} (`--update`), on the same machine." for model, when in
                  record.get("updated", {}).items()),
        f"- ONNX Runtime CPU, {record['imgsz']} px, batch 1; every architecture of a model timed interleaved in one "
        f"separate process, {record['runs']} runs each; speed-ups from the fastest runs, against the model's own "
        "architecture (`full`, width 1.0). Untrained models built from their `.yaml`: latency only, no accuracy.",
        "- Depths: `full` (the model's block counts), `no_backbone_blocks` (the backbone's `C2f`/`C3k2` without "
        "residual blocks), `no_blocks` (every `C2f`/`C3k2` without them; `C2PSA` kept; in yolo26n this removes the "
        "attention block (`PSABlock`) inside the head's last `C3k2` too), and for yolo26n `no_attention` (every block "
        "kept, that `C3k2` built without its attention). Widths: the model's width multiple × 1.0 … 0.28, channels "
        "rounded to multiples of 8.",
        "",
        "## At a measured 2×",
        "",
        "| model | threads | depth | MACs cut for 2× | speed-up ÷ MACs cut |",
        "|---|---|---|---|---|",
    ]
    for model, entry in record["models"].items():
        for threads, per_depth in entry["analysis"].items():
            for depth, result in per_depth.items():
                at = result["at_2x"]
                best = max(p["speedup"] for p in result["points"])
                cells = (f"{at['cut']:.2f}×", f"**{at['ratio']:.2f}**") if at else (f"not reached (max {best:.2f}×)", "")
                lines.append(f"| {model} | {'1' if threads == '1' else 'all'} | {depth} | {cells[0]} | {cells[1]} |")
    lines += ["", "## Every architecture", ""]
    for model, entry in record["models"].items():
        for threads, per_depth in entry["analysis"].items():
            lines += [f"**{model}, {'1 thread' if threads == '1' else 'all threads'}** (MACs cut / speed-up / ratio)", "",
                      "| width × | " + " | ".join(per_depth) + " |", "|---" * (len(per_depth) + 1) + "|"]
            for factor in WIDTH_FACTORS:
                cells = []
                for depth in per_depth:
                    p = next(p for p in per_depth[depth]["points"] if p["width_factor"] == factor)
                    cells.append(f"{p['cut']:.2f} / {p['speedup']:.2f} / {p['ratio']:.2f}")
                lines.append(f"| {factor} | " + " | ".join(cells) + " |")
            lines.append("")
    lines += ["## Reading", ""] + conclusions(record)
    return "\n".join(lines) + "\n"


def conclusions(record: Dict[str, Any]) -> List[str]:
    """One line per model and thread count: how much removing the blocks moved the ratio at 2×."""
    lines = []
    for model, entry in record["models"].items():
        for threads, per_depth in entry["analysis"].items():
            ratios = {d: (r["at_2x"] or {}).get("ratio") for d, r in per_depth.items()}
            shown = ", ".join(f"{d} {v:.2f}" if v else f"{d} not reached" for d, v in ratios.items())
            lines.append(f"- {model}, {'1 thread' if threads == '1' else 'all threads'}: {shown}.")
    return lines


def plot(record: Dict[str, Any], path: Path) -> None:
    """Speed-up against MACs cut per depth, one panel per model and thread count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(record["models"])
    fig, axes = plt.subplots(2, len(models), figsize=(4.2 * len(models), 7.6), squeeze=False)
    for col, model in enumerate(models):
        for row, (threads, per_depth) in enumerate(record["models"][model]["analysis"].items()):
            ax = axes[row][col]
            cuts = [p["cut"] for r in per_depth.values() for p in r["points"]]
            lim = [1.0, max(cuts) * 1.05]
            ax.plot(lim, lim, "k:", lw=1, label="speed-up = MACs cut")
            ax.plot(lim, [0.9 * x for x in lim], "k--", lw=0.8, alpha=0.5, label="ratio 0.9")
            ax.axhline(SPEEDUP, color="grey", lw=0.8, alpha=0.6)
            for i, (depth, result) in enumerate(per_depth.items()):
                points = sorted(result["points"], key=lambda p: p["cut"])
                ax.plot([p["cut"] for p in points], [p["speedup"] for p in points], "o-", ms=3, color=f"C{i}",
                        label=depth)
            ax.set_title(f"{model}, {'1 thread' if threads == '1' else 'all threads'}")
            ax.set_xlabel("MACs cut (×)")
            ax.set_ylabel("measured speed-up (×)")
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    """Build, time in a separate process, write the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["yolov8n", "yolo11n", "yolo26n"])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--work", default=str(HERE.parent / "runs" / "bench_depth"))
    parser.add_argument("--update", action="store_true", help="measure --models again into the existing <out>.json, "
                        "keeping its other models")
    add_mode_arguments(parser, "results_depth")
    args = parser.parse_args(argv)
    os.environ.setdefault("YOLO_OFFLINE", "True")
    done = measure_or_render(args, lambda files: measure(files, args.runs), markdown)
    if done is not None:
        return done

    record: Dict[str, Any] = {**machine(), "imgsz": IMGSZ, "runs": args.runs, "models": {}}
    earlier = HERE / f"{args.out}.json"
    if args.update and earlier.is_file():  # keep the other models' results; note when each part was measured
        kept = json.loads(earlier.read_text())
        record = {**kept, "updated": {**kept.get("updated", {}), **{m: record["started"] for m in args.models}}}
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    for model in args.models:
        built = build(model, work)
        timed = measure_in_child({k: v["onnx"] for k, v in built.items()}, args.runs, work / f"{model}_timed.json")
        record["models"][model] = {"built": built, "analysis": analyse(model, built, timed)}
        print("\n".join(line for line in conclusions({"models": {model: record["models"][model]}})), flush=True)
    (HERE / f"{args.out}.json").write_text(json.dumps(record, indent=1))
    (HERE / f"{args.out}.md").write_text(markdown(record))
    plot(record, HERE / f"{args.out}.png")
    return record


if __name__ == "__main__":
    main()
