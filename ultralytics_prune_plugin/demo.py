"""The offline demo: generate data, train yolov8n (and YOLO11n) briefly, prune, fine-tune, export, compare.

Run it with ``python -m ultralytics_prune_plugin.demo`` (or ``make demo``). Nothing is downloaded: the model is built
from ``yolov8n.yaml`` and the dataset is generated. Everything lands in ``runs/demo`` (``demo2``, ... on later runs):

1. ``data/``      a generated dataset of coloured shapes;
2. ``baseline/``  yolov8n trained from scratch;
3. ``depgraph/``  DepGraph with the default recipe: ``target_macs=0.43``, two steps, distilled fine-tunes (``yolo prune``);
4. ``sparse/``    the baseline trained further with the Network Slimming penalty (``yolo train sparse=True``);
5. ``slim/``      slim pruning of the sparse model with fine-tuning (``yolo prune method=slim``);
6. ``baseline11/``, ``depgraph11/``  on Ultralytics 8.3 and later: YOLO11n trained the same way and pruned with
   DepGraph beside YOLOv8n;
7. ``demo_summary.json`` and the comparison table printed at the end (paths in the JSON are relative to the demo
   folder; each method is compared with its own input: DepGraph with the baseline, slim with the sparse-trained model).

The default preset takes a few minutes on 2 CPU cores (the README quotes the measured wall time). Training runs with
``deterministic=False`` (twice as fast on CPU), so the numbers differ a little from run to run.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

PRESETS = {
    # name: dataset size, image size, epochs for baseline / sparse / each fine-tune, DepGraph steps
    "default": dict(n_train=256, n_val=32, imgsz=128, base_epochs=30, sparse_epochs=10, ft_epochs=5, steps=2),
    "quick": dict(n_train=32, n_val=8, imgsz=64, base_epochs=1, sparse_epochs=1, ft_epochs=1, steps=1),
}


def run_demo(
    out: Optional[Path] = None, preset: str = "default", rate: float = 0.5, seed: int = 0, target_macs: float = 0.43
) -> Dict[str, Any]:
    """Run the whole demo and return its summary (also written to ``demo_summary.json``).

    Args:
        out (Path, optional): The demo folder; by default a new ``runs/demo*`` folder.
        preset (str): 'default' (a few minutes on 2 CPU cores) or 'quick' (a smoke test of a minute or two).
        rate (float): The channel rate Network Slimming prunes.
        seed (int): Seed of the dataset and of the trainings.
        target_macs (float): The MACs target of DepGraph's default recipe (a fraction of the input's MACs).

    Returns:
        (dict): MACs, params and mAP before and after for both methods, with the run folders and timings.
    """
    from ultralytics import YOLO
    from ultralytics.utils import LOGGER
    from ultralytics.utils.files import increment_path

    from ultralytics_prune_plugin.data import make_dataset
    from ultralytics_prune_plugin.report.files import write_json_atomic

    p = PRESETS[preset]
    out = Path(out) if out else increment_path(Path("runs") / "demo")
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    common = dict(imgsz=p["imgsz"], batch=16, workers=0, seed=seed, project=str(out.resolve()), exist_ok=False)
    # Short runs from scratch learn fastest with AdamW and a short warm-up; deterministic=True halves CPU speed.
    tuned = dict(optimizer="AdamW", lr0=0.002, warmup_epochs=1, deterministic=False)
    data = str(make_dataset(out / "data", n_train=p["n_train"], n_val=p["n_val"], imgsz=p["imgsz"], n_classes=4, seed=seed))

    timings: Dict[str, float] = {}
    t = time.time()
    YOLO("yolov8n.yaml").train(data=data, epochs=p["base_epochs"], name="baseline", **common, **tuned)
    baseline = out / "baseline" / "weights" / "best.pt"
    timings["baseline_train_s"] = time.time() - t

    t = time.time()
    # DepGraph with the default recipe: a MACs target and the plugin's own fine-tune settings (distilled, no warm-up).
    depgraph = YOLO(baseline).prune(
        data=data, target_macs=target_macs, iterative_steps=p["steps"], epochs=p["ft_epochs"], max_map_drop=0.2,
        name="depgraph", **common,
    )
    timings["depgraph_s"] = time.time() - t

    t = time.time()
    # The L1 pull on γ is lr · sr per step: plain SGD keeps it exact (Adam would rescale it per parameter).
    sparse_args = dict(optimizer="SGD", lr0=0.01, warmup_epochs=1, deterministic=False)
    YOLO(baseline).train(
        data=data, epochs=p["sparse_epochs"], sparse=True, sr=0.05, sr_final=0.005, name="sparse", **common, **sparse_args
    )
    sparse = out / "sparse" / "weights" / "best.pt"
    timings["sparse_train_s"] = time.time() - t

    t = time.time()
    slim = YOLO(sparse).prune(
        data=data, method="slim", rate=rate, epochs=p["ft_epochs"] * p["steps"], max_map_drop=0.2, name="slim",
        **common, **tuned,
    )
    timings["slim_s"] = time.time() - t

    yolo11 = None
    if _ships_yolo11():
        t = time.time()
        YOLO("yolo11n.yaml").train(data=data, epochs=p["base_epochs"], name="baseline11", **common, **tuned)
        yolo11 = YOLO(out / "baseline11" / "weights" / "best.pt").prune(
            data=data, target_macs=target_macs, iterative_steps=p["steps"], epochs=p["ft_epochs"], max_map_drop=0.2,
            name="depgraph11", **common,
        )
        timings["yolo11n_s"] = time.time() - t
    timings["total_s"] = time.time() - started

    def relative(path) -> str:
        """A path relative to the demo folder, the one kind of path in demo_summary.json."""
        return os.path.relpath(Path(path).resolve(), out.resolve())

    summary = {
        "preset": preset,
        "rate": rate,
        "target_macs": target_macs,
        "paths": "relative to the folder of demo_summary.json",
        "data": relative(data),
        "runs": {
            "baseline": relative(baseline.parent.parent),
            "sparse": relative(sparse.parent.parent),
            "depgraph": relative(depgraph["save_dir"]),
            "slim": relative(slim["save_dir"]),
            **({"yolo11n_depgraph": relative(yolo11["save_dir"])} if yolo11 else {}),
        },
        "depgraph": _result(depgraph),
        "slim": {**_result(slim), "applied_rate": slim.get("slim", {}).get("applied_rate")},
        **({"yolo11n_depgraph": _result(yolo11)} if yolo11 else {}),
        "timings_s": timings,
    }
    summary["verdict"] = _verdict(summary["depgraph"], summary["slim"])
    write_json_atomic(out / "demo_summary.json", summary)
    LOGGER.info(format_summary({**summary, "out": str(out.resolve())}))
    return summary


def _ships_yolo11() -> bool:
    """True when the installed Ultralytics ships YOLO11 (8.3 and later)."""
    import ultralytics

    return tuple(int(part) for part in ultralytics.__version__.split(".")[:2]) >= (8, 3)


def _result(report: Dict[str, Any]) -> Dict[str, Any]:
    """The before/after numbers of one prune report."""
    base, final, onnx = report["baseline"], report["final"], report.get("onnx", {})
    return {
        "baseline": {k: base.get(k) for k in ("macs", "params", "map50", "map50_95")},
        "final": {k: final.get(k) for k in ("macs", "params", "map50", "map50_95", "step")},
        "onnx_map50_95": onnx.get("onnx_map50_95"),
        "speedup": onnx.get("speedup"),
    }


def _verdict(depgraph: Dict[str, Any], slim: Dict[str, Any]) -> str:
    """Say which method kept more mAP50-95, and at what MACs each ended."""
    d, s = depgraph["final"], slim["final"]
    if d["map50_95"] is None or s["map50_95"] is None:
        return "no mAP to compare"
    better = "DepGraph" if d["map50_95"] >= s["map50_95"] else "Network Slimming"
    return (
        f"{better} kept more mAP50-95 ({d['map50_95']:.4f} DepGraph at {d['macs'] / 1e9:.3f} GMACs vs "
        f"{s['map50_95']:.4f} slim at {s['macs'] / 1e9:.3f} GMACs)"
    )


def format_summary(summary: Dict[str, Any]) -> str:
    """The comparison table printed at the end of the demo."""
    target = f"DepGraph target_macs={summary['target_macs']}, " if "target_macs" in summary else ""
    lines: List[str] = ["", f"Demo summary ({target}slim rate={summary['rate']}, preset={summary['preset']})"]
    lines.append(
        f"{'':<26}{'GMACs':>8}{'params':>12}{'mAP50':>9}{'mAP50-95':>10}  {'mAP50-95 change':<20}{'ORT speed-up':>12}"
    )
    inputs = {
        "depgraph": "baseline (DepGraph input)",
        "slim": "sparse-trained (slim input)",
        "yolo11n_depgraph": "YOLO11n baseline",
    }
    methods = [("depgraph", "DepGraph"), ("slim", "Network Slimming"), ("yolo11n_depgraph", "YOLO11n DepGraph")]
    for name, label in (m for m in methods if m[0] in summary):
        base, final = summary[name]["baseline"], summary[name]["final"]
        lines.append(_row(inputs[name], base, None, None))
        lines.append(_row(f"  → {label}", final, summary[name]["speedup"], base.get("map50_95")))
    lines.append(summary["verdict"])
    lines.append(f"total time {summary['timings_s']['total_s'] / 60:.1f} min; results in {summary.get('out', '.')}")
    return "\n".join(lines)


def _row(name: str, r: Dict[str, Any], speedup: Optional[float], input_map: Optional[float]) -> str:
    """One line of the comparison table; ``input_map``: the mAP50-95 of the method's own input, for the change."""
    fmt = lambda v, f: "-" if v is None else f.format(v)  # noqa: E731
    change = ""
    if input_map and r.get("map50_95") is not None:
        delta = r["map50_95"] - input_map
        sign = "−" if delta < 0 else "+"
        change = f"{sign}{abs(delta):.3f} ({sign}{abs(delta) / input_map * 100:.1f} %)"
    return (
        f"{name:<26}{fmt(r['macs'] / 1e9, '{:.3f}'):>8}{fmt(r['params'], '{:,}'):>12}{fmt(r['map50'], '{:.4f}'):>9}"
        f"{fmt(r['map50_95'], '{:.4f}'):>10}  {change:<20}{fmt(speedup, '{:.2f}x'):>12}"
    )


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command-line entry point of the demo."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="demo folder (default: a new runs/demo*)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="default", help="size of the demo")
    parser.add_argument("--rate", type=float, default=0.5, help="channel rate pruned by Network Slimming")
    parser.add_argument("--target-macs", type=float, default=0.43, help="DepGraph's MACs target (fraction)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    # The demo is offline: Ultralytics (8.1 and 8.4 alike) skips its update check when this is set before it is
    # imported. Only the demo's own process gets it; a user's own runs keep their settings.
    os.environ["YOLO_OFFLINE"] = "True"
    if args.out is not None and args.out.exists() and any(args.out.iterdir()):
        parser.error(f"--out {args.out} is not empty; the demo never writes over earlier results")
    run_demo(args.out, args.preset, args.rate, args.seed, args.target_macs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
