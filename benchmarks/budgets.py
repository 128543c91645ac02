"""Part 3 of the benchmark: time and memory budgets, measured rather than asserted in tests.

* **Prune step**: the wall time of one ``prune_once`` call (DepGraph: plan widths, trace, build the pruner, prune,
  count MACs before and after) and of one ``slim_prune`` call on yolov8s at 640 px, each on a freshly built model,
  ``repeats`` times (median). The pruner's own build + step time (``prune_seconds``) is reported too.
* **Peak memory**: the real ``yolo`` command in a child process (:mod:`peak_child`), whose peak resident set size
  (``VmHWM``) it records itself: ``yolo prune`` against ``yolo val`` of the same model on the same data.
* **Sparse training**: plain and sparse training of the same model on the same data, one epoch per run, the runs
  alternating (plain, sparse, sparse, plain, ...) so that a change in the machine's load hits both alike; compared
  by the median batch time and the median training-loop time per epoch.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional


def time_prune_step(model: str, imgsz: int, rate: float, round_to: Optional[int], repeats: int) -> Dict[str, Any]:
    """Median wall time of one DepGraph ``prune_once`` and one ``slim_prune`` on freshly built ``model`` at ``imgsz``.

    Building the model and swapping C2f for C2f_v2 (``prepare_for_pruning``) happen before the clock starts; they
    are timed separately as ``prepare_s``.
    """
    from ultralytics import YOLO

    from ultralytics_prune_plugin.pruning.depgraph import prepare_for_pruning, prune_once
    from ultralytics_prune_plugin.pruning.slim import slim_prune

    out: Dict[str, List[float]] = {"prepare_s": [], "depgraph_s": [], "depgraph_pruner_s": [], "slim_s": []}
    for _ in range(repeats):
        net = YOLO(f"{model}.yaml").model
        start = time.perf_counter()
        prepare_for_pruning(net)
        out["prepare_s"].append(time.perf_counter() - start)
        start = time.perf_counter()
        info = prune_once(net, imgsz, rate, round_to=round_to)
        out["depgraph_s"].append(time.perf_counter() - start)
        out["depgraph_pruner_s"].append(info["prune_seconds"])

        net = prepare_for_pruning(YOLO(f"{model}.yaml").model)
        start = time.perf_counter()
        slim_prune(net, rate, imgsz=imgsz, round_to=round_to, verbose=False)
        out["slim_s"].append(time.perf_counter() - start)
    return {
        "model": model,
        "imgsz": imgsz,
        "rate": rate,
        "round_to": round_to,
        "repeats": repeats,
        **{k: v for k, v in out.items()},
        **{f"median_{k}": statistics.median(v) for k, v in out.items()},
    }


def peak_rss(args: List[str], cwd: Path, log: Path) -> Dict[str, Any]:
    """Run ``yolo *args`` in a child process; return its peak resident memory (MiB), wall time and exit status.

    The child is ``peak_child.py``, which runs Ultralytics' ``yolo`` entry point and writes its own ``VmHWM`` when it
    exits (see that module for why ``ru_maxrss`` of a forked child is not usable here).
    """
    cwd.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    result_file = log.with_suffix(".mem.json")
    result_file.unlink(missing_ok=True)
    command = [sys.executable, str(Path(__file__).with_name("peak_child.py")), str(result_file), *args]
    start = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.run(command, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT, env=env)
    seconds = time.perf_counter() - start
    peak = json.loads(result_file.read_text())["vmhwm_kib"] / 1024.0 if result_file.is_file() else None
    return {
        "command": "yolo " + " ".join(args),
        "peak_rss_mib": peak,
        "wall_s": seconds,
        "returncode": proc.returncode,
        "log": str(log),
    }


def memory_pairs(groups: List[Dict[str, Any]], work: Path) -> List[Dict[str, Any]]:
    """Peak RSS of ``yolo val`` and of one or more ``yolo prune`` runs of the same model on the same data.

    Args:
        groups: ``{"label", "model", "data", "imgsz", "prunes": {label: [extra prune args]}}`` each.
        work: Folder for the runs and their logs.

    Returns:
        Per group: ``label``, ``val`` and ``prunes`` (label -> :func:`peak_rss` record).
    """
    results = []
    for i, group in enumerate(groups):
        common = [f"model={group['model']}", f"data={group['data']}", f"imgsz={group['imgsz']}", "workers=0"]
        folder = work / f"mem{i}"
        val = peak_rss(
            ["val", *common, "batch=16", "plots=False", f"project={folder}", "name=val", "exist_ok=True"],
            folder, folder / "val.log",
        )
        prunes = {}
        for j, (label, args) in enumerate(group["prunes"].items()):
            prunes[label] = peak_rss(
                ["prune", *common, *args, f"project={folder}", f"name=prune{j}", "exist_ok=True"],
                folder, folder / f"prune{j}.log",
            )
        results.append({"label": group["label"], "model": group["model"], "imgsz": group["imgsz"], "val": val,
                        "prunes": prunes})
    return results


def sparse_overhead(weights: str, common: Dict[str, Any], sr: float, rounds: int, project: Path) -> Dict[str, Any]:
    """Time plain against sparse training of ``weights``, one epoch per run, alternating, ``rounds`` pairs.

    Args:
        weights: The checkpoint to train from (part 1's baseline).
        common: Training arguments shared by both (data, imgsz, batch, workers, seed, ...).
        sr: Sparsity rate of the sparse runs.
        rounds: Number of (plain, sparse) pairs; the order flips every round.
        project: Folder for the runs.

    Returns:
        Per kind: the batch and epoch times of every run; the overheads of sparse over plain: ``overhead_batch``
        (pooled median batch time), ``overhead_train_epoch`` and ``overhead_epoch`` (median over the rounds of the
        per-round ratio of the training loop / whole epoch, validation and saving included).
    """
    from accuracy import EpochTimer, _train

    runs: Dict[str, List[Dict[str, Any]]] = {"plain": [], "sparse": []}
    for r in range(rounds):
        order = ("plain", "sparse") if r % 2 == 0 else ("sparse", "plain")
        for kind in order:
            extra = dict(sparse=True, sr=sr) if kind == "sparse" else {}
            timer = EpochTimer()
            _train(weights, timer, epochs=1, project=str(project), name=f"{kind}{r}", exist_ok=True, **common, **extra)
            runs[kind].append({"batch_s": timer.batch_s, "train_epoch_s": timer.train_epoch_s[0],
                               "epoch_s": timer.epoch_s[0]})

    def pooled_median(kind: str) -> float:
        return statistics.median(t for run in runs[kind] for t in run["batch_s"])

    def per_round(key: str) -> float:
        return statistics.median(s[key] / p[key] for p, s in zip(runs["plain"], runs["sparse"])) - 1.0

    return {
        "rounds": rounds,
        "plain": runs["plain"],
        "sparse": runs["sparse"],
        "median_batch_s": {k: pooled_median(k) for k in runs},
        "median_train_epoch_s": {k: statistics.median(run["train_epoch_s"] for run in runs[k]) for k in runs},
        "median_epoch_s": {k: statistics.median(run["epoch_s"] for run in runs[k]) for k in runs},
        "overhead_batch": pooled_median("sparse") / pooled_median("plain") - 1.0,
        "overhead_train_epoch": per_round("train_epoch_s"),
        "overhead_epoch": per_round("epoch_s"),
    }
