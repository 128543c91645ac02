"""The plugin's benchmark: ``make bench`` (``python benchmarks/run.py``); ``--quick`` for a smoke run of a few minutes.

Three parts, each through the plugin's public API (``YOLO(...).train``, ``YOLO(...).prune``, ``yolo`` commands):

1. ``accuracy`` (:mod:`accuracy`): yolov8n trained on generated hard data, pruned by DepGraph and by Network
   Slimming (after sparse training) at several rates with a fixed fine-tuning budget; MACs, params, mAP in PyTorch and
   ONNX Runtime, ONNX size, ONNX Runtime latency and speed-up.
2. ``speed`` (:mod:`speed`): at 640 px, yolov8n and yolov8s pruned at rate 0.5, the speed-up ÷ MACs ratio under
   channel rounding, ONNX simplification, thread counts and session options, with a per-node profile.
3. ``budgets`` (:mod:`budgets`): prune-step wall time (yolov8s, 640 px), sparse-training overhead per epoch, and peak
   memory of prune runs against plain validation.

The full run writes ``benchmarks/results.md``, ``benchmarks/map_vs_macs.png`` and ``benchmarks/results.json`` (on
Ultralytics 8.1, where the committed ones were measured; on other series into ``benchmarks/ultralytics_X.Y/``); its
working files (data, runs, weights, ONNX) go to ``runs/bench``. ``--quick`` shrinks everything and writes all of it
to ``runs/bench_quick`` instead, so a smoke run never overwrites the committed results.

Usage::

    python benchmarks/run.py                 # the full benchmark (about 25 min on 2 idle cores)
    python benchmarks/run.py --quick         # smoke run, a few minutes
    python benchmarks/run.py --parts speed   # one part only (the results then hold that part only)
    python benchmarks/run.py --parts budgets --merge   # redo one part of the last full run, keep the others

Timings depend on the machine being otherwise idle: each part records the load average, and ``--merge`` redoes a
part that was measured while other jobs ran.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Dict

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

PRESETS: Dict[str, Dict[str, Any]] = {
    "full": {
        "accuracy": dict(
            imgsz=160, n_train=600, n_val=150, n_classes=6, seed=0, batch=16, base_epochs=40, sparse_epochs=10,
            sr=0.01, ft_epochs=10, depgraph_steps=1, rates=[0.3, 0.5, 0.7], round_to=8, extra_round_to=16,
            target_macs=0.5,
        ),
        "speed": dict(
            imgsz=640, rate=0.5, models=["yolov8n", "yolov8s"], round_tos=[None, 8, 16, 32], focus_round_to=16,
            runs=30, warmup=5, repeats=3,
        ),
        "budgets": dict(
            step_model="yolov8s", step_imgsz=640, step_round_to=None, step_repeats=3, mem_imgsz=640, sparse_rounds=3,
            mem_finetune=True, mem_untrained=True,
        ),
    },
    "quick": {
        "accuracy": dict(
            imgsz=64, n_train=16, n_val=8, n_classes=3, seed=0, batch=8, base_epochs=2, sparse_epochs=1, sr=0.01,
            ft_epochs=1, depgraph_steps=1, rates=[0.5], round_to=8, extra_round_to=None, target_macs=0.5,
        ),
        "speed": dict(
            imgsz=320, rate=0.5, models=["yolov8n"], round_tos=[None, 16], focus_round_to=16, runs=5, warmup=1,
            repeats=2,
        ),
        "budgets": dict(
            step_model="yolov8n", step_imgsz=320, step_round_to=None, step_repeats=1, mem_imgsz=128, sparse_rounds=1,
            mem_finetune=False, mem_untrained=False,
        ),
    },
}


def environment() -> Dict[str, Any]:
    """The machine, the load, and the versions of everything that the numbers depend on."""
    from importlib.metadata import PackageNotFoundError, version

    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem_kb = int(next(l for l in Path("/proc/meminfo").read_text().splitlines() if l.startswith("MemTotal")).split()[1])
        mem_gib = mem_kb / 1024**2
    except (OSError, StopIteration, ValueError):
        mem_gib = None
    flags = ""
    try:
        text = Path("/proc/cpuinfo").read_text()
        flags = " ".join(f for f in ("avx2", "avx512f", "avx512_vnni") if f" {f}" in text)
    except OSError:
        pass
    versions = {}
    for package in ("torch", "ultralytics", "torch-pruning", "onnx", "onnxruntime", "onnxsim", "onnxslim", "numpy",
                    "ultralytics-prune-plugin"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {
        "cpu": cpu,
        "cpu_flags": flags,
        "cores": os.cpu_count(),
        "memory_gib": mem_gib,
        "os": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
        "commit": commit,
        "load_start": os.getloadavg(),
        "env_threads": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS") if os.environ.get(k)},
    }


# The committed benchmarks/results.{md,json} and map_vs_macs.png were measured on this series.
COMMITTED_SERIES = (8, 1)


def default_out() -> Path:
    """Where a full run writes its results: ``benchmarks/`` on the series the committed tables come from, and
    ``benchmarks/ultralytics_<major>.<minor>/`` on any other, so ``make bench`` (the latest series) never replaces
    the committed 8.1 tables with another series' numbers."""
    import ultralytics

    series = tuple(int(part) for part in ultralytics.__version__.split(".")[:2])
    return HERE if series == COMMITTED_SERIES else HERE / f"ultralytics_{series[0]}.{series[1]}"


def main(argv=None) -> Dict[str, Any]:
    """Run the benchmark and write its results; return the raw record."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny smoke run; results go to runs/bench_quick")
    parser.add_argument("--parts", default="accuracy,speed,budgets", help="comma-separated: accuracy,speed,budgets")
    parser.add_argument("--out", type=Path, help="folder for results.md/json and the plot (default: benchmarks/ on 8.1, whose "
                        "tables are committed; benchmarks/ultralytics_X.Y/ on other series)")
    parser.add_argument("--work", type=Path, help="folder for data and runs (default: runs/bench)")
    parser.add_argument(
        "--merge", action="store_true",
        help="keep the other parts of the existing results.json and redo only --parts (e.g. a part measured while "
        "the machine was busy); needs the earlier run's --work folder",
    )
    args = parser.parse_args(argv)
    os.environ["YOLO_OFFLINE"] = "True"  # offline runs: no update check by Ultralytics here or in the children
    preset = "quick" if args.quick else "full"
    cfg = PRESETS[preset]
    work = (args.work or ROOT / "runs" / ("bench_quick" if args.quick else "bench")).resolve()
    out = (args.out or (work if args.quick else default_out())).resolve()
    work.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = set(parts) - {"accuracy", "speed", "budgets"}
    if unknown:
        parser.error(f"unknown parts: {sorted(unknown)}")

    import accuracy
    import budgets
    import results_md
    import speed

    for part, folders in (("accuracy", ["accuracy"]), ("speed", ["speed"]), ("budgets", ["memory", "sparse_ab"])):
        if part in parts:  # start each part from a clean folder of its own (never anything else under --work)
            for folder in folders:
                shutil.rmtree(work / folder, ignore_errors=True)

    started = time.time()
    command = shlex.join(["python", "benchmarks/run.py", *(sys.argv[1:] if argv is None else argv)])
    record: Dict[str, Any] = {
        "preset": preset,
        "command": command,
        "started": datetime.now().isoformat(timespec="seconds"),
        "environment": environment(),
        "settings": cfg,
        "parts": parts,
        "timings_s": {},
    }
    previous = out / "results.json"
    if args.merge and previous.is_file():
        old = json.loads(previous.read_text())
        if old.get("preset") != preset:
            parser.error(f"--merge: {previous} holds a '{old.get('preset')}' run, not '{preset}'")
        merged = {k: v for k, v in old.items() if k not in parts}
        merged.setdefault("reruns", []).append(
            {"command": command, "parts": parts, "started": record["started"], "environment": record["environment"]}
        )
        merged["parts"] = [p for p in ("speed", "accuracy", "budgets") if p in set(old.get("parts", [])) | set(parts)]
        merged["timings_s"] = {k: v for k, v in old.get("timings_s", {}).items() if k not in parts and k != "total"}
        record = merged

    def save() -> None:
        (out / "results.json").write_text(json.dumps(record, indent=1, default=str) + "\n")

    # The untrained 640 px speed comparison first: it is the part most sensitive to the machine's load.
    if "speed" in parts:
        t = time.time()
        record["speed"] = speed.run_speed(work / "speed", cfg["speed"])
        record["timings_s"]["speed"] = time.time() - t
        save()
    if "accuracy" in parts:
        t = time.time()
        record["accuracy"] = accuracy.run_accuracy(work / "accuracy", cfg["accuracy"])
        record["timings_s"]["accuracy"] = time.time() - t
        save()
    if {"speed", "accuracy"} & set(parts) and record.get("speed") and record.get("accuracy"):
        # part 1's trained models, timed at the deployment size
        t = time.time()
        acc, s = record["accuracy"], cfg["speed"]
        trained = {"baseline": acc["baseline"]["weights"]}
        trained.update({run["name"]: run["report"]["final"]["weights"] for run in acc["runs"] if run["rate"] == 0.5})
        record["speed"]["trained"] = speed.time_trained(
            trained, s["imgsz"], work / "speed" / "trained", s["runs"], s["warmup"], s["repeats"]
        )
        record["timings_s"]["speed"] = record["timings_s"].get("speed", 0.0) + time.time() - t
        save()
    if "budgets" in parts:
        t = time.time()
        b = cfg["budgets"]
        record["budgets"] = {
            "prune_step": budgets.time_prune_step(b["step_model"], b["step_imgsz"], 0.5, b["step_round_to"], b["step_repeats"])
        }
        if record.get("accuracy"):
            acc, a = record["accuracy"], cfg["accuracy"]
            common = dict(data=acc["data"], imgsz=a["imgsz"], batch=a["batch"], workers=0, seed=a["seed"],
                          deterministic=False, plots=False)
            record["budgets"]["sparse"] = budgets.sparse_overhead(
                acc["baseline"]["weights"], common, a["sr"], b["sparse_rounds"], work / "sparse_ab"
            )
        record["budgets"]["memory"] = budgets.memory_pairs(_memory_groups(record, cfg, work), work / "memory")
        record["timings_s"]["budgets"] = time.time() - t
        save()
    if record.get("reruns"):  # the total of all parts, as a single run would have taken
        record["timings_s"]["total"] = sum(v for k, v in record["timings_s"].items() if k != "total")
        record["reruns"][-1]["load_end"] = os.getloadavg()
        record["reruns"][-1]["finished"] = datetime.now().isoformat(timespec="seconds")
    else:
        record["timings_s"]["total"] = time.time() - started
        record["environment"]["load_end"] = os.getloadavg()
        record["finished"] = datetime.now().isoformat(timespec="seconds")
    save()
    results_md.write(record, out)
    print(f"benchmark results written to {out / 'results.md'} ({record['timings_s']['total'] / 60:.1f} min)")
    return record


def _memory_groups(record: Dict[str, Any], cfg: Dict[str, Any], work: Path):
    """The models whose prune runs are measured against plain validation."""
    from ultralytics_prune_plugin.data import make_dataset

    groups = []
    acc = record.get("accuracy")
    if acc:
        imgsz = cfg["accuracy"]["imgsz"]
        groups.append({
            "label": f"yolov8n trained (part 1), {imgsz} px",
            "model": acc["baseline"]["weights"],
            "data": acc["data"],
            "imgsz": imgsz,
            "prunes": {
                "prune, epochs=0": ["epochs=0", "rate=0.5", "iterative_steps=1"],
                **({"prune + 1 fine-tune epoch": ["epochs=1", "rate=0.5", "iterative_steps=1", "batch=16", "plots=False"]}
                   if cfg["budgets"]["mem_finetune"] else {}),
            },
        })
    b = cfg["budgets"]
    if not b["mem_untrained"] and groups:
        return groups
    imgsz = b["mem_imgsz"]
    data = make_dataset(work / "memory" / "data", n_train=8, n_val=16, imgsz=imgsz, n_classes=6, seed=0, difficulty="hard")
    model = None
    sp = record.get("speed", {}).get("models", {}).get(b["step_model"])
    if sp:
        model = next(iter(sp["variants"].values()))["base_pt"]
    if model is None:  # no speed part: save an untrained checkpoint the way a prune run does
        from ultralytics import YOLO

        report = YOLO(f"{b['step_model']}.yaml").prune(
            rate=0.5, iterative_steps=1, epochs=0, imgsz=64, project=str(work / "memory"), name="source",
            exist_ok=True, verbose=False,
        )
        model = str(Path(report["save_dir"]) / "weights" / "baseline.pt")
    groups.append({
        "label": f"{b['step_model']} untrained, {imgsz} px",
        "model": model,
        "data": str(data),
        "imgsz": imgsz,
        "prunes": {"prune, epochs=0": ["epochs=0", "rate=0.5", "iterative_steps=1"]},
    })
    return groups


if __name__ == "__main__":
    main()
