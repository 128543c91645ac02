"""Pruning on real photographs (the tree-crown tiles of :mod:`real_data`), against converged inputs.

Parts (``--parts``), each through the public ``yolo`` command, each run reused when its folder is complete:

* ``continue``: the collapse check. The converged input trained a few more epochs *without* pruning, under
  variations of the fine-tune settings (``CONTINUATIONS``); the per-epoch mAP50-95 shows which setting keeps what the
  input knew. A fine-tune that starts by falling far below its input wastes its budget on getting back.
* ``recipe``: ``yolo prune model=INPUT data=DATA target_macs=T`` at each ``--targets`` value, with a fine-tune budget
  of ``--budget`` (20 %) of the input's own training epochs, spread over two steps; every other key at the plugin's
  default unless ``--keys`` adds some. Beside it the *control*: the input trained the same number of epochs
  unpruned with the fine-tune defaults.
* ``bigsmall``: prune big or train small. Each ``s`` input of ``--big`` (a model name, taken at ``--imgsz``, or an
  input's name such as ``yolov8s_from_yolov8s_160``) is pruned to the MACs of its family's ``n`` input at the same
  size (``target_gmacs``) with the same recipe. It is compared with that ``n`` input converged, and trained on to the
  same total epochs (input, the input it started from, fine-tunes). The four models are timed together; where the
  pruned model is more than 5 % slower than the ``n`` one, the ``s`` input is pruned again with
  ``target_speedup`` to the ``n`` model's measured latency.
* ``latency``: MACs or latency as the target, at equal measured latency. The ``recipe`` run at ``target_macs=0.5``
  (uniform allocation) is timed against its input; the input is then pruned with ``target_speedup`` set to that
  measured speed-up and ``allocation=latency`` (groups that cost more time lose more), with the same fine-tune budget,
  and the three files are timed together again. Both timings and the run's search use ONNX Runtime's default threads,
  or ``--latency-threads`` (the run's ``threads=`` key). A search measures the machine as it is: with another job on
  the other core, one on all threads misses its target. Run ``recipe`` first.
* ``seeds``: how much of a difference is noise. For each input, the control, the ``recipe`` run at
  ``target_macs=0.5`` and each ``latency`` run (its architecture: ``allocation=latency`` at the MACs fraction its
  search found, so no new search) are run again with each of ``--seeds``; seed 0 is the runs above. ``--jobs 2`` runs
  two at a time (training only: no latency is measured for the record). Run ``recipe`` and ``latency`` first.
* ``retime``: the ``latency`` part's three files of each model timed again, on 1 thread and on ONNX Runtime's default
  threads (``--threads``), with the machine's load average; run it when the machine is idle.

Every input and result is exported at the runs' ``--imgsz`` (the data's 320 px by default) and timed in one process
with ONNX Runtime (CPU, batch 1, all files taking turns). Writes ``results_real.json`` and ``results_real.md`` beside this script (``--out``
for another name) and plots of mAP50-95 against GMACs and against latency.

Run the inputs first (``benchmarks/real_inputs.py``), then::

    OMP_NUM_THREADS=1 python benchmarks/real_prune.py --root /root/bench-real --models yolov8n --parts continue recipe
"""

from __future__ import annotations

import argparse
import csv
import fcntl
import json
import os
import platform
import shutil
import statistics
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, List, Optional

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import real_data  # noqa: E402
import real_inputs  # noqa: E402
import real_report  # noqa: E402
from yolo_cli import run_logged  # noqa: E402

from ultralytics_prune_plugin.config import plugin_keys  # noqa: E402

COMMON = ["imgsz=320", "batch=8", "workers=1", "seed=0", "deterministic=False", "plots=False"]
# The fine-tune defaults of a prune run, spelled out for the control and the continuations (yolo train does not
# apply them): SGD, one optimizer step per batch, no warm-up, mosaic closed throughout.
FT_DEFAULTS = ["optimizer=SGD", "lr0=0.01", "nbs=8", "warmup_epochs=0"]
# Every prune run of this benchmark keeps widths in multiples of 8, the alignment all its recorded runs had (the
# plugin's round_to=auto measures one where a run measures latency); --keys round_to=... changes it.
PRUNE_DEFAULTS = ["round_to=8"]
CONTINUE_EPOCHS = 4
# name -> (what it changes, keys after FT_DEFAULTS)
CONTINUATIONS: Dict[str, Any] = {
    "defaults": ("the prune run's fine-tune defaults", []),
    "lr1e-3": ("lr0 0.001", ["lr0=0.001"]),
    "lr1e-4": ("lr0 0.0001 (where the input's own schedule ended: lr0 × lrf)", ["lr0=0.0001"]),
    "nbs64": ("Ultralytics' nbs=64 (an optimizer step every 8 batches)", ["nbs=64"]),
    "mosaic": ("mosaic kept on (close_mosaic=0)", ["close_mosaic=0"]),
    "warmup": ("Ultralytics' 3 warm-up epochs", ["warmup_epochs=3"]),
    "warmup_nobias": ("3 warm-up epochs, the biases' warm-up rate at 0 (Ultralytics starts it at 0.1)",
                      ["warmup_epochs=3", "warmup_bias_lr=0"]),
    "adamw": ("the input's own optimizer: AdamW at its lr0 0.002", ["optimizer=AdamW", "lr0=0.002"]),
    "mosaic_lr1e-3": ("mosaic kept on, lr0 0.001", ["close_mosaic=0", "lr0=0.001"]),
    "mosaic_lr1e-4": ("mosaic kept on, lr0 0.0001", ["close_mosaic=0", "lr0=0.0001"]),
    "mosaic_warmup_nobias": ("mosaic kept on, 3 warm-up epochs, the biases' warm-up rate at 0",
                             ["close_mosaic=0", "warmup_epochs=3", "warmup_bias_lr=0"]),
    "adamw_end": ("AdamW at 0.0003, where the input's schedule stood when it stopped", ["optimizer=AdamW", "lr0=0.0003"]),
}




def _column(results: Path, name: str = "metrics/mAP50-95(B)") -> List[float]:
    with open(results, newline="") as f:
        rows = [{k.strip(): v for k, v in r.items()} for r in csv.DictReader(f)]
    return [float(r[name]) for r in rows]


def _train(name: str, model: Path, data: Path, epochs: int, keys: List[str], runs: Path,
           common: List[str] = COMMON) -> Dict[str, Any]:
    """``yolo detect train`` of ``model`` for ``epochs`` (reused when finished); its per-epoch mAP50-95."""
    run = runs / name
    if not (run / "weights" / "best.pt").is_file() or len(_column(run / "results.csv")) < epochs:
        shutil.rmtree(run, ignore_errors=True)
        seconds = run_logged(["detect", "train", f"model={model}", f"data={data}", f"epochs={epochs}", *common, *keys,
                        f"project={runs}", f"name={name}", "exist_ok=True"], runs / f"{name}.log")
        (run / "wall_s.txt").write_text(f"{seconds:.1f}\n")
    maps = _column(run / "results.csv")
    return {"epoch_map50_95": maps, "best_map50_95": max(maps), "final_map50_95": maps[-1],
            "wall_s": float((run / "wall_s.txt").read_text()), "best": str(run / "weights" / "best.pt")}


def _prune(name: str, model: Path, data: Path, keys: List[str], runs: Path,
           common: List[str] = COMMON) -> Dict[str, Any]:
    """``yolo prune`` (reused when its report exists); the row of the results table."""
    run = runs / name
    report_file = run / "prune_report.json"
    if not report_file.is_file() or "final" not in json.loads(report_file.read_text()):  # absent or interrupted
        shutil.rmtree(run, ignore_errors=True)
        seconds = run_logged(["prune", f"model={model}", f"data={data}", *common, *PRUNE_DEFAULTS, *keys,
                              f"project={runs}", f"name={name}", "exist_ok=True"], runs / f"{name}.log")
        (run / "wall_s.txt").write_text(f"{seconds:.1f}\n")
    report = json.loads((run / "prune_report.json").read_text())
    return {
        "keys": keys, "macs_before": report["baseline"]["macs"], "macs_after": report["final"]["macs"],
        "input_map50_95": report["baseline"]["map50_95"], "map50_95": report["final"]["map50_95"],
        "steps": [{k: s.get(k) for k in ("step", "macs", "pruned_map50_95", "finetune_map50_95", "retry_map50_95",
                                         "step_model", "recovered_map50_95") if k in s}
                  for s in report["steps"]],
        "wall_s": float((run / "wall_s.txt").read_text()), "pt": str(run / "weights" / "pruned.pt"),
    }


def _macs(pt: Path, imgsz: int = 320) -> float:
    """MACs of a checkpoint at ``imgsz`` with the plugin's counter."""
    from ultralytics import YOLO

    from ultralytics_prune_plugin.pruning.counting import count_macs_params

    return float(count_macs_params(YOLO(str(pt)).model.float().eval(), imgsz)[0])


def _export(files: Dict[str, str], work: Path, imgsz: int = 320) -> Dict[str, str]:
    """Export every checkpoint (label -> .pt) to ONNX at ``imgsz`` under ``work/onnx``; label -> ONNX file."""
    from ultralytics import YOLO

    onnx = {}
    for label, pt in files.items():
        copy = work / "onnx" / f"{label}.pt"
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(pt, copy)
        onnx[label] = YOLO(str(copy)).export(format="onnx", imgsz=imgsz, simplify=False)
    return onnx


def _time(onnx: Dict[str, str], imgsz: int = 320, runs: int = 50, threads: Optional[int] = None) -> Dict[str, float]:
    """Time ONNX files together in ONNX Runtime (taking turns, batch 1); label -> median ms."""
    from ultralytics_prune_plugin.deploy.onnx import measure_latency

    return {k: v["median_ms"] for k, v in measure_latency(onnx, imgsz, runs=runs, warmup=5, threads=threads).items()}


def _latency(files: Dict[str, str], work: Path, imgsz: int = 320, runs: int = 50,
             threads: Optional[int] = None) -> Dict[str, float]:
    """Export every checkpoint at ``imgsz`` and time all of them together in ONNX Runtime; label -> median ms."""
    return _time(_export(files, work, imgsz), imgsz, runs, threads)


def _equal_latency(model: str, best: Path, data: Path, budget: int, record: Dict[str, Any], args, runs: Path,
                   work: Path, imgsz: int, common: List[str], threads: Optional[int] = None) -> Dict[str, Any]:
    """The ``latency`` part for one input: its MACs-targeted result against a latency-targeted one of equal speed."""
    macs = next((r for r in record.get("recipe", []) if (r["model"], r["target"], r["recipe"]) == (model, 0.5, args.tag)
                 and Path(r["pt"]).is_file()), None)
    if macs is None:
        print(f"latency {model}: needs this session's recipe run at target 0.5 (--parts recipe --targets 0.5)")
        return {}
    onnx = _export({model: str(best), "macs": macs["pt"]}, work, imgsz)
    first = _time(onnx, imgsz, runs=100, threads=threads)
    speedup = first[model] / first["macs"]
    keys = [f"target_speedup={speedup:.3f}", "allocation=latency", "iterative_steps=2", f"epochs={budget // 2}",
            "max_map_drop=1", *([f"threads={threads}"] if threads else []), *args.keys]
    fast = _prune(f"{args.tag}_{model}_latency{f'_t{threads}' if threads else ''}", best, data, keys, runs, common)
    final = _time({**onnx, **_export({"latency": fast["pt"]}, work, imgsz)}, imgsz, runs=100, threads=threads)
    print(f"{model}: MACs-targeted {macs['map50_95']:.3f} at {final[model] / final['macs']:.2f}x, latency-targeted "
          f"{fast['map50_95']:.3f} at {final[model] / final['latency']:.2f}x (asked {speedup:.2f}x)", flush=True)
    return {"model": model, "recipe": args.tag, "threads": threads, "budget_epochs": budget, "speedup_asked": speedup,
            "first_latency_ms": first, "latency_ms": final, "input_map50_95": macs["input_map50_95"],
            "macs_before": macs["macs_before"],
            "macs_targeted": {k: macs[k] for k in ("keys", "macs_after", "map50_95", "steps", "wall_s", "pt")},
            "latency_targeted": {k: fast[k] for k in ("keys", "macs_after", "map50_95", "steps", "wall_s", "pt")}}


def _seeds(model: str, best: Path, data: Path, budget: int, args, runs: Path, common: List[str]) -> Dict[str, Any]:
    """The ``seeds`` part for one input: each comparison's runs again with other seeds; label -> one row per seed."""
    jobs = {"control": lambda s, suffix: _train(f"control_{model}_{budget}{suffix}", best, data, budget,
                                                [*FT_DEFAULTS, f"close_mosaic={budget}", f"seed={s}"], runs, common)}
    recipe = ["iterative_steps=2", f"epochs={budget // 2}", "max_map_drop=1", *args.keys]
    jobs["macs"] = lambda s, suffix: _prune(f"{args.tag}_{model}_0.5{suffix}", best, data,
                                            ["target_macs=0.5", *recipe, f"seed={s}"], runs, common)
    found = {}  # latency runs of seed 0 -> (their report, the MACs fraction their search found)
    for label, name in (("latency", f"{args.tag}_{model}_latency"), ("latency_t1", f"{args.tag}_{model}_latency_t1")):
        report = runs / name / "prune_report.json"
        if report.is_file():
            found[label] = json.loads(report.read_text())
    for label, report in found.items():
        threads = report["args"].get("threads")
        keys = ["allocation=latency", f"target_macs={report['target_macs']['requested']!r}",
                *([f"threads={threads}"] if threads else []), *recipe]
        jobs[label] = (lambda keys, label: lambda s, suffix: _prune(
            f"{args.tag}_{model}_{label}{suffix}", best, data, [*keys, f"seed={s}"], runs, common))(keys, label)
    work = [(label, s) for s in args.seeds for label in jobs]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        done = list(pool.map(lambda job: jobs[job[0]](job[1], f"_s{job[1]}" if job[1] else ""), work))
    out: Dict[str, Any] = {"budget_epochs": budget, "seeds": list(args.seeds)}
    for (label, s), row in zip(work, done):
        figure = row["best_map50_95"] if label == "control" else row["map50_95"]
        out.setdefault(label, []).append({"seed": s, "map50_95": figure, "macs_after": row.get("macs_after"),
                                          "wall_s": row["wall_s"]})
        if label != "control":
            out["input_map50_95"], out["macs_before"] = row["input_map50_95"], row["macs_before"]
    for label, report in found.items():  # the same architecture as the searched run, seed for seed
        out[label + "_same_architecture"] = all(r["macs_after"] == report["final"]["macs"] for r in out[label])
    for label in jobs:
        values = [r["map50_95"] for r in out[label]]
        print(f"{model} {label}: {' '.join(f'{v:.3f}' for v in values)} (mean {statistics.mean(values):.3f})",
              flush=True)
    return out


def _retime(onnx: Dict[str, Path], imgsz: int, threads: List[str], runs: int = 200) -> Dict[str, Any]:
    """Time ONNX files together at each thread count ('default': ONNX Runtime's); thread count -> label -> ms."""
    from ultralytics_prune_plugin.deploy.onnx import measure_latency

    out: Dict[str, Any] = {"load_before": os.getloadavg()[0]}
    for t in threads:
        times = measure_latency(onnx, imgsz, runs=runs, warmup=10, threads=None if t == "default" else int(t))
        out[t] = {label: {k: v[k] for k in ("median_ms", "min_ms")} for label, v in times.items()}
    out["load_after"] = os.getloadavg()[0]
    return out


def _cpu() -> Dict[str, str]:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    name = next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("model name")), "")
    flags = " ".join(f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni") if f" {f}" in text)
    return {"cpu": name or platform.processor(), "flags": flags or "no AVX flags", "cores": str(os.cpu_count())}


def main(argv=None) -> Dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=real_data.DEFAULT_ROOT.parent)
    parser.add_argument("--models", nargs="+", default=["yolov8n", "yolo11n", "yolo26n"])
    parser.add_argument("--big", nargs="*", default=["yolov8s", "yolo11s"])
    parser.add_argument("--parts", nargs="+", default=["continue", "recipe", "bigsmall"],
                        choices=["continue", "recipe", "bigsmall", "latency", "seeds", "retime"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="seeds of the seeds part (0: the "
                        "recipe and latency parts' own runs)")
    parser.add_argument("--jobs", type=int, default=1, help="runs of the seeds part at a time")
    parser.add_argument("--latency-threads", type=int, help="ONNX Runtime threads of the latency part (its key "
                        "threads=; default: the runtime's own)")
    parser.add_argument("--threads", nargs="+", default=["1", "default"], help="thread counts of the retime part")
    parser.add_argument("--continuations", nargs="+", default=list(CONTINUATIONS), choices=list(CONTINUATIONS))
    parser.add_argument("--targets", nargs="+", type=float, default=[0.5, 0.33])
    parser.add_argument("--budget", type=float, default=0.2, help="fine-tune epochs as a fraction of the input's")
    parser.add_argument("--keys", nargs="*", default=[], help="extra yolo prune keys (a recipe variant)")
    parser.add_argument("--tag", default="default", help="name of the recipe variant that --keys makes")
    parser.add_argument("--imgsz", type=int, default=320,
                        help="image size of the runs; inputs at another size than 320 are MODEL_IMGSZ in inputs.json")
    parser.add_argument("--no-latency", action="store_true")
    parser.add_argument("--out", default="results_real")
    args = parser.parse_args(argv)

    import torch
    import ultralytics

    os.environ.setdefault("YOLO_OFFLINE", "True")
    root = args.root.resolve()
    data = real_data.build(root / "data")
    runs = root / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    out_json = HERE / f"{args.out}.json"
    # the record is read once and rewritten whole: a second process on the same --out would lose this one's rows
    lock = open(HERE / f".{args.out}.lock", "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        parser.error(f"another real_prune.py is writing {out_json.name}; give this one another --out, or run its "
                     "parts in one process (--jobs runs the seeds part's runs side by side)")
    record = json.loads(out_json.read_text()) if out_json.is_file() else {}
    record.update({
        "machine": _cpu(),
        "versions": f"Python {platform.python_version()}, torch {torch.__version__}, "
                    f"ultralytics {ultralytics.__version__}",
        "threads": os.environ.get("OMP_NUM_THREADS"),
        "updated": datetime.now().isoformat(timespec="seconds"),
    })
    inputs = json.loads((root / "inputs.json").read_text())
    # inputs of earlier sessions stay in the record (their runs may be gone, their numbers are not)
    record["inputs"] = {**record.get("inputs", {}), **inputs}
    imgsz = args.imgsz
    common = [k if not k.startswith("imgsz=") else f"imgsz={imgsz}" for k in COMMON]

    def save():
        out_json.write_text(json.dumps(record, indent=1) + "\n")

    per_model = {"continue", "recipe", "latency", "seeds"} & set(args.parts)
    for model in [real_inputs.input_name(m, imgsz) for m in args.models] if per_model else []:
        info = inputs[model]
        best, epochs = Path(info["best"]), int(info["epochs"])
        budget = max(2, int(args.budget * epochs)) // 2 * 2  # two steps of equal length
        if "continue" in args.parts:
            for name in args.continuations:
                what, keys = CONTINUATIONS[name]
                row = _train(f"continue_{model}_{name}", best, data, CONTINUE_EPOCHS,
                             [*FT_DEFAULTS, f"close_mosaic={CONTINUE_EPOCHS}", *keys], runs, common)
                record.setdefault("continue", {}).setdefault(model, {})[name] = {"what": what, **row}
                save()
                print(f"{model} continue {name}: {' '.join(f'{m:.3f}' for m in row['epoch_map50_95'])}", flush=True)
        if "recipe" in args.parts:
            # the control trains as the variant's fine-tunes do: the defaults, then the variant's training keys
            train_keys = [k for k in args.keys if k.split("=", 1)[0] not in plugin_keys()]
            suffix = "" if not train_keys else "_" + "_".join(k.replace("=", "") for k in train_keys)
            control = _train(f"control_{model}_{budget}{suffix}", best, data, budget,
                             [*FT_DEFAULTS, f"close_mosaic={budget}", *train_keys], runs, common)
            record.setdefault("controls", {})[f"{model}_{budget}ep{suffix}"] = {"epochs": budget, **control}
            for target in args.targets:
                keys = [f"target_macs={target}", "iterative_steps=2", f"epochs={budget // 2}", "max_map_drop=1",
                        *args.keys]
                row = _prune(f"{args.tag}_{model}_{target}", best, data, keys, runs, common)
                row.update(model=model, target=target, recipe=args.tag, budget_epochs=budget,
                           input_epochs=epochs, control_map50_95=control["best_map50_95"])
                rows = record.setdefault("recipe", [])
                rows[:] = [r for r in rows if (r["model"], r["target"], r["recipe"]) != (model, target, args.tag)]
                rows.append(row)
                save()
                print(f"{model} {args.tag} target {target}: {row['input_map50_95']:.3f} -> {row['map50_95']:.3f} "
                      f"({row['map50_95'] / row['input_map50_95']:.1%}; control {control['best_map50_95']:.3f})",
                      flush=True)
        if "latency" in args.parts:
            suffix = f"_t{args.latency_threads}" if args.latency_threads else ""
            row = _equal_latency(model, best, data, budget, record, args, runs,
                                 root / "latency" / f"equal_{model}{suffix}", imgsz, common, args.latency_threads)
            if row:
                rows = record.setdefault("equal_latency", [])
                rows[:] = [r for r in rows if (r["model"], r["recipe"], r.get("threads")) !=
                           (model, args.tag, args.latency_threads)]
                rows.append(row)
                save()
        if "seeds" in args.parts:
            record.setdefault("seeds", {})[model] = _seeds(model, best, data, budget, args, runs, common)
            save()
    for row in record.get("equal_latency", []) if "retime" in args.parts else []:
        folder = f"equal_{row['model']}" + (f"_t{row['threads']}" if row.get("threads") else "")
        onnx = {label: root / "latency" / folder / "onnx" / f"{label}.onnx"
                for label in (row["model"], "macs", "latency")}
        if all(f.is_file() for f in onnx.values()):
            row["retimed"] = _retime(onnx, imgsz, args.threads)
            save()
    if "bigsmall" in args.parts:
        known = record["inputs"]  # this session's inputs and earlier ones, whose files may be gone
        for name in args.big:
            big = name if name in inputs else real_inputs.input_name(name, imgsz)
            small_model = big.split("_")[0][:-1] + "n"
            small = real_inputs.input_name(small_model, imgsz)
            if big not in inputs or small not in known:
                print(f"bigsmall {big}: needs converged inputs {big} and {small} (benchmarks/real_inputs.py)")
                continue
            # MACs and latency depend on the architecture alone: where the small input's file is gone, another input
            # of the same model (trained at another size) stands in for it
            small_file = Path(known[small]["best"])
            others = [Path(i["best"]) for k, i in inputs.items() if k.startswith(f"{small_model}_")]
            stand_in = small_file if small_file.is_file() else next((f for f in others if f.is_file()), None)
            if stand_in is None:
                print(f"bigsmall {big}: no file of {small_model} to count its MACs and time it")
                continue
            epochs = int(inputs[big]["epochs"])
            budget = max(2, int(args.budget * epochs)) // 2 * 2
            gmacs = _macs(stand_in, imgsz) / 1e9
            keys = [f"target_gmacs={gmacs:.4f}", "iterative_steps=2", f"epochs={budget // 2}", "max_map_drop=1",
                    *args.keys]
            row = _prune(f"{args.tag}_{big}_to_{small}", Path(inputs[big]["best"]), data, keys, runs, common)
            # the small model given the same total epochs as the big one (its input's training, then unpruned
            # epochs with the fine-tune defaults, as the controls get) where the big one trained longer; where its
            # file is gone, the longest control an earlier session trained
            total = int(inputs[big].get("init_epochs", 0)) + epochs + budget
            small_epochs = int(known[small]["epochs"])
            extra = total - small_epochs
            equal = None
            if extra > 0 and small_file.is_file():
                equal = _train(f"equal_{small}_{extra}", small_file, data, extra,
                               [*FT_DEFAULTS, f"close_mosaic={extra}"], runs, common)
            elif extra > 0:
                controls = [(c["epochs"], c["best_map50_95"]) for k, c in record.get("controls", {}).items()
                            if k == f"{small}_{c['epochs']}ep"]
                if controls:
                    extra, best_control = max(controls)
                    equal = {"best_map50_95": best_control}
            row.update(big=big, small=small, recipe=args.tag, imgsz=imgsz, big_epochs=epochs, budget_epochs=budget,
                       big_init=inputs[big].get("init"), big_init_epochs=inputs[big].get("init_epochs", 0),
                       small_epochs=small_epochs, small_map50_95=known[small]["best_map50_95"], small_macs=gmacs * 1e9,
                       big_map50_95=inputs[big]["best_map50_95"], small_extra_epochs=max(0, extra) if equal else 0,
                       small_equal_map50_95=equal["best_map50_95"] if equal else known[small]["best_map50_95"],
                       small_timed_file=str(stand_in))
            if not args.no_latency:  # the models of the comparison, timed together at the runs' image size
                files = {big: inputs[big]["best"], "pruned": row["pt"], small: str(stand_in)}
                if equal and "best" in equal:
                    files["equal"] = equal["best"]
                work = root / "latency" / f"{big}_to_{small}"
                onnx = _export(files, work, imgsz)
                row["latency_ms"] = latency = _time(onnx, imgsz)
                if latency["pruned"] > 1.05 * latency[small]:
                    # slower than the small model at equal MACs: prune the big input again to the small model's
                    # measured speed, as a speed-up over the big input (a ratio holds on a busy machine; ms do not)
                    speedup = latency[big] / latency[small]
                    keys = [f"target_speedup={speedup:.3f}", "iterative_steps=2", f"epochs={budget // 2}",
                            "max_map_drop=1", *args.keys]
                    fast = _prune(f"{args.tag}_{big}_to_{small}_latency", Path(inputs[big]["best"]), data, keys, runs,
                                  common)
                    row["equal_latency"] = {k: fast[k] for k in ("keys", "macs_after", "map50_95", "steps", "wall_s",
                                                                  "pt")}
                    onnx.update(_export({"pruned_latency": fast["pt"]}, work, imgsz))
                    row["latency_ms"] = _time(onnx, imgsz)
            rows = record.setdefault("bigsmall", [])
            rows[:] = [r for r in rows if (r["big"], r["recipe"]) != (big, args.tag)]
            rows.append(row)
            save()
    if not args.no_latency and "recipe" in args.parts:  # the 320-px inputs and recipes whose files are here
        files = {m: info["best"] for m, info in inputs.items() if info.get("train_args", {}).get("imgsz", 320) == 320}
        files.update({f"{r['recipe']}_{r['model']}_{r['target']}": r["pt"] for r in record.get("recipe", [])})
        files = {k: v for k, v in files.items() if Path(v).is_file()}
        record["latency_ms"] = _latency(files, root / "latency")
        record["latency_threads"] = "ONNX Runtime default"
        save()
    real_report.write(record, out_json.with_suffix(""))
    return record


if __name__ == "__main__":
    main()
