"""Part 1 of the benchmark: accuracy against cost on the generated "hard" data, through the plugin's public API.

Flow (every step is an ordinary Ultralytics / plugin call, nothing of the pruning logic is repeated here):

1. ``make_dataset(..., difficulty="hard")``: several classes, clutter, small low-contrast objects.
2. ``YOLO("yolov8n.yaml").train(...)``: the seeded baseline.
3. From the baseline, the same number of epochs twice: plain (``sparse=False``) and Network Slimming sparse training
   (``sparse=True``), so that both methods start from models with the same training budget.
4. For each rate: ``YOLO(plain).prune(method="depgraph", ...)`` and ``YOLO(sparse).prune(method="slim", ...)`` with
   the same fine-tuning budget in epochs, and ``max_map_drop`` high enough that every rate is reported as pruned.
   Each run's report holds MACs, params, mAP (PyTorch, and ONNX Runtime for the result), the ONNX sizes and the ONNX
   Runtime latency of baseline and result timed alternately in one process.
5. The two unpruned inputs' own PyTorch (batch 1) and ONNX Runtime mAP, for the reference rows.
6. ``target_macs``: one run per method with a MACs target instead of a rate, to show target against reached.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from ultralytics.utils import LOGGER

from ultralytics_prune_plugin.data import make_dataset


class EpochTimer:
    """Ultralytics callbacks that time every training batch and epoch of one run.

    ``batch_s``: seconds between consecutive ``on_train_batch_end`` events (the first batch of an epoch is timed from
    ``on_train_epoch_start``; data loading with ``workers=0`` is included, as it is the same for every run).
    ``train_epoch_s``: ``on_train_epoch_start`` to ``on_train_epoch_end`` (the training loop only).
    ``epoch_s``: ``on_train_epoch_start`` to ``on_fit_epoch_end`` (training, validation, saving, sparsity report).
    """

    def __init__(self):
        """Start with empty records."""
        self.batch_s: List[float] = []
        self.train_epoch_s: List[float] = []
        self.epoch_s: List[float] = []
        self._epoch_start = self._last = 0.0

    def attach(self, yolo) -> None:
        """Register the callbacks on a ``YOLO`` object (the trainer it builds inherits them)."""
        yolo.add_callback("on_train_epoch_start", self._on_epoch_start)
        yolo.add_callback("on_train_batch_end", self._on_batch_end)
        yolo.add_callback("on_train_epoch_end", self._on_train_epoch_end)
        yolo.add_callback("on_fit_epoch_end", self._on_fit_epoch_end)

    def _on_epoch_start(self, trainer) -> None:
        """Start the epoch's clocks."""
        self._epoch_start = self._last = time.perf_counter()

    def _on_batch_end(self, trainer) -> None:
        """Record the batch that just ended."""
        now = time.perf_counter()
        self.batch_s.append(now - self._last)
        self._last = now

    def _on_train_epoch_end(self, trainer) -> None:
        """Record the epoch's training loop."""
        self.train_epoch_s.append(time.perf_counter() - self._epoch_start)

    def _on_fit_epoch_end(self, trainer) -> None:
        """Record the whole epoch (training loop, validation, saving)."""
        if len(self.epoch_s) < len(self.train_epoch_s):  # the final validation fires this event once more
            self.epoch_s.append(time.perf_counter() - self._epoch_start)

    def record(self) -> Dict[str, Any]:
        """Per-epoch and per-batch times, and their medians (the first epoch left out of the epoch medians)."""
        import numpy as np

        def median(values: List[float], skip: int = 0) -> Optional[float]:
            kept = values[skip:] if len(values) > skip else values
            return float(np.median(kept)) if kept else None

        return {
            "epoch_s": self.epoch_s,
            "train_epoch_s": self.train_epoch_s,
            "median_epoch_s": median(self.epoch_s, 1),
            "median_train_epoch_s": median(self.train_epoch_s, 1),
            "median_batch_s": median(self.batch_s),
            "batches": len(self.batch_s),
        }


def _train(model: str, timer: Optional[EpochTimer] = None, **kwargs) -> Dict[str, Any]:
    """Train with Ultralytics' API and return the run folder, wall time and final mAP."""
    from ultralytics import YOLO

    yolo = YOLO(model)
    if timer is not None:
        timer.attach(yolo)
    start = time.perf_counter()
    yolo.train(**kwargs)
    seconds = time.perf_counter() - start
    save_dir = Path(yolo.trainer.save_dir)
    metrics = yolo.trainer.metrics or {}
    return {
        "weights": str(save_dir / "weights" / "best.pt"),
        "dir": str(save_dir),
        "wall_s": seconds,
        "epochs": kwargs.get("epochs"),
        "map50": metrics.get("metrics/mAP50(B)"),
        "map50_95": metrics.get("metrics/mAP50-95(B)"),
        **({"timing": timer.record()} if timer is not None else {}),
    }


def _prune(weights: str, **kwargs) -> Dict[str, Any]:
    """Run ``YOLO(weights).prune(**kwargs)`` and return its report with the wall time added."""
    from ultralytics import YOLO

    start = time.perf_counter()
    report = YOLO(weights).prune(**kwargs)
    report = json.loads(json.dumps(report, default=str))  # plain JSON values (paths become strings)
    report["wall_s"] = time.perf_counter() - start
    return report


def _reference_metrics(weights: str, onnx_file: str, data: str, imgsz: int, project: Path, name: str) -> Dict[str, Any]:
    """PyTorch (batch 1, rect=False, as ONNX Runtime is validated) and ONNX Runtime mAP of an unpruned model."""
    from ultralytics import YOLO

    from ultralytics_prune_plugin.deploy.onnx import validate_onnx

    metrics = YOLO(weights).val(
        data=data, imgsz=imgsz, batch=1, rect=False, plots=False, workers=0, project=str(project), name=f"{name}_pt",
        exist_ok=True, verbose=False,
    )
    ort = validate_onnx(onnx_file, data, imgsz, project=project, name=f"{name}_onnx", exist_ok=True, plots=False)
    return {
        "pytorch_map50": float(metrics.box.map50),
        "pytorch_map50_95": float(metrics.box.map),
        "onnx_map50": ort["map50"],
        "onnx_map50_95": ort["map50_95"],
    }


def run_accuracy(work: Path, cfg: Dict[str, Any]) -> Dict[str, Any]:
    """Run part 1 and return its raw record.

    Args:
        work: Folder for the dataset and every run (not committed).
        cfg: The preset's settings: ``imgsz``, ``n_train``, ``n_val``, ``n_classes``, ``seed``, ``base_epochs``,
            ``sparse_epochs``, ``sr``, ``ft_epochs``, ``depgraph_steps``, ``rates``, ``round_to``, ``extra_round_to``, ``batch``,
            ``target_macs``.

    Returns:
        ``settings``, ``data``, ``baseline``, ``plain``, ``sparse`` (training records), ``reference`` (ONNX/PyTorch
        mAP of baseline and sparse model), ``runs`` (one entry per method and rate, with the prune report) and
        ``target_runs``.
    """
    imgsz, seed = cfg["imgsz"], cfg["seed"]
    data = str(
        make_dataset(
            work / f"data_{imgsz}px_{cfg['n_train']}_{cfg['n_val']}_{cfg['n_classes']}c_s{seed}", n_train=cfg["n_train"], n_val=cfg["n_val"], imgsz=imgsz, n_classes=cfg["n_classes"],
            seed=seed, difficulty="hard",
        )
    )
    project = work / "runs"
    common = dict(data=data, imgsz=imgsz, batch=cfg["batch"], workers=0, seed=seed, deterministic=False, plots=False)
    record: Dict[str, Any] = {"settings": dict(cfg), "data": data}

    LOGGER.info(f"bench: training the baseline ({cfg['base_epochs']} epochs)")
    record["baseline"] = _train(
        "yolov8n.yaml", EpochTimer(), epochs=cfg["base_epochs"], project=str(project), name="baseline", exist_ok=True,
        **common,
    )
    base = record["baseline"]["weights"]
    for name, sparse in (("plain", False), ("sparse", True)):
        LOGGER.info(f"bench: {cfg['sparse_epochs']} more epochs from the baseline, sparse={sparse}")
        extra = dict(sparse=True, sr=cfg["sr"]) if sparse else {}
        record[name] = _train(
            base, EpochTimer(), epochs=cfg["sparse_epochs"], project=str(project), name=name, exist_ok=True, **common,
            **extra,
        )
    plain_weights, sparse_weights = record["plain"]["weights"], record["sparse"]["weights"]

    runs: List[Dict[str, Any]] = []
    prune_common = dict(common, project=str(project), exist_ok=True, max_map_drop=1.0)
    main = cfg.get("round_to")  # the plugin's default unless the preset says otherwise
    plan = [(m, rate, main, False) for m in ("depgraph", "slim") for rate in cfg["rates"]]
    if cfg.get("extra_round_to"):  # the deployment setting of part 2, to see what it costs in mAP
        plan += [(m, 0.5, cfg["extra_round_to"], True) for m in ("depgraph", "slim")]
    for method, rate, round_to, extra in plan:
        name = f"{method}_{rate:g}" + (f"_r{round_to}" if extra else "")
        LOGGER.info(f"bench: prune {name}")
        if method == "depgraph":
            steps = cfg["depgraph_steps"]
            kwargs = dict(iterative_steps=steps, epochs=max(1, cfg["ft_epochs"] // steps))
            source = plain_weights
        else:
            kwargs = dict(epochs=cfg["ft_epochs"])
            source = sparse_weights
        report = _prune(source, method=method, rate=rate, round_to=round_to, name=name, **kwargs, **prune_common)
        runs.append({"name": name, "method": method, "rate": rate, "round_to": round_to, "extra": extra, "report": report})
    record["runs"] = runs

    first = {m: next((r for r in runs if r["method"] == m), None) for m in ("depgraph", "slim")}
    record["reference"] = {}
    for label, weights, run in (("plain", plain_weights, first["depgraph"]), ("sparse", sparse_weights, first["slim"])):
        if run is None:
            continue
        onnx_file = str(Path(run["report"]["save_dir"]) / "weights" / "baseline.onnx")
        record["reference"][label] = _reference_metrics(weights, onnx_file, data, imgsz, project / "val", label)

    record["target_runs"] = []
    if cfg.get("target_macs"):
        for method, source in (("depgraph", plain_weights), ("slim", sparse_weights)):
            name = f"{method}_target{cfg['target_macs']:g}"
            LOGGER.info(f"bench: prune {name} (target_macs={cfg['target_macs']}, epochs=0)")
            kwargs = dict(iterative_steps=8) if method == "depgraph" else {}
            report = _prune(
                source, method=method, rate=0.9, target_macs=cfg["target_macs"], epochs=0, name=name, **kwargs,
                **prune_common,
            )
            record["target_runs"].append({"name": name, "method": method, "report": report})
    return record
