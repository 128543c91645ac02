"""Converged inputs for the real-data benchmark: each model trained from its ``*.yaml`` on the tree-crown tiles of
:mod:`real_data` until validation mAP50-95 stops improving (Ultralytics' ``patience``).

No pretrained weights can be downloaded here, so every input starts from random weights. A run that was stopped is
resumed from its ``last.pt``; a finished one (``weights/best.pt`` beside a ``results.csv`` whose last epoch is the
final one or an early stop) is reused. Each run's wall time and its epochs are written to ``inputs.json`` in the
root, which the results quote.

Trainings take hours on 2 cores: run them pinned to one thread (``OMP_NUM_THREADS=1``) so that other work can use
the second core::

    OMP_NUM_THREADS=1 python benchmarks/real_inputs.py --root /root/bench-real yolov8n yolo11n
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path
from typing import Optional

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import real_data  # noqa: E402

# One recipe for every input: the data is small (72 training tiles), so many epochs, with early stopping.
TRAIN_ARGS = dict(imgsz=320, batch=8, epochs=300, patience=50, workers=1, seed=0, deterministic=False, plots=False)


def _finished(run: Path) -> bool:
    """Whether the run ended: Ultralytics strips the optimizer from last.pt when a training ends."""
    last = run / "weights" / "last.pt"
    if not last.is_file():
        return False
    import torch

    ckpt = torch.load(last, map_location="cpu", weights_only=False)
    return ckpt.get("optimizer") is None


def _epochs(run: Path) -> tuple[int, float]:
    """Epochs run and best validation mAP50-95 from the run's results.csv."""
    with open(run / "results.csv", newline="") as f:
        rows = [{k.strip(): v for k, v in r.items()} for r in csv.DictReader(f)]
    return len(rows), max(float(r["metrics/mAP50-95(B)"]) for r in rows)


def _train_seconds(run: Path) -> float:
    """Training time from the run's results.csv: Ultralytics' ``time`` column restarts at each resume, so the time
    reached before every restart is added to the last one (0 where the column is absent)."""
    with open(run / "results.csv", newline="") as f:
        times = [float(r["time"]) for r in ({k.strip(): v for k, v in r.items()} for r in csv.DictReader(f))
                 if r.get("time")]
    if not times:
        return 0.0
    return sum(a for a, b in zip(times, times[1:]) if b < a) + times[-1]


def input_name(model: str, imgsz: int = TRAIN_ARGS["imgsz"], init: Optional[str] = None) -> str:
    """Name of an input's run and of its ``inputs.json`` entry: the model, with the image size where it is not the
    data's own 320 px (``yolov8s_160``), and the input it started from where it did not start from random weights
    (``yolov8s_from_yolov8s_160``)."""
    name = model if imgsz == TRAIN_ARGS["imgsz"] else f"{model}_{imgsz}"
    return name if init is None else f"{name}_from_{init}"


def train_input(model: str, data: Path, runs: Path, imgsz: int = TRAIN_ARGS["imgsz"],
                init: Optional[Path] = None) -> Path:
    """Train (or resume, or reuse) one converged input at ``imgsz``, from random weights or from the weights of
    ``init`` (another input's best.pt: transfer, as users start from pretrained weights); returns its best.pt."""
    from ultralytics import YOLO

    name = input_name(model, imgsz, init.parent.parent.name if init else None)
    run = runs / name
    if not _finished(run):
        last = run / "weights" / "last.pt"
        if last.is_file():
            YOLO(str(last)).train(resume=True)
        else:
            YOLO(str(init) if init else f"{model}.yaml").train(data=str(data), project=str(runs), name=name,
                                                               exist_ok=False, **{**TRAIN_ARGS, "imgsz": imgsz})
    return run / "weights" / "best.pt"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="model names, e.g. yolov8n yolo11n yolo26n yolov8s yolo11s")
    parser.add_argument("--root", type=Path, default=real_data.DEFAULT_ROOT.parent, help="benchmark folder")
    parser.add_argument("--imgsz", type=int, default=TRAIN_ARGS["imgsz"],
                        help="training image size; inputs at another size than 320 are named MODEL_IMGSZ")
    parser.add_argument("--init", help="start from this input's weights (its name in inputs.json) instead of random "
                                       "ones; the run is named MODEL_from_INIT")
    ns = parser.parse_args()
    os.environ.setdefault("YOLO_OFFLINE", "True")
    root = ns.root.resolve()
    data = real_data.build(root / "data")
    log = root / "inputs.json"
    init = Path(json.loads(log.read_text())[ns.init]["best"]) if ns.init else None
    for model in ns.models:
        start = time.time()
        best = train_input(model, data, root / "inputs", ns.imgsz, init)
        epochs, best_map = _epochs(best.parent.parent)
        # read now, not at the start: trainings of other models may run beside this one and have written theirs
        record = json.loads(log.read_text()) if log.is_file() else {}
        name = input_name(model, ns.imgsz, ns.init)
        entry = record.setdefault(name, {"wall_s": 0.0})
        if ns.init:  # the epochs that made the starting weights count towards this input's total
            entry.update(init=ns.init, init_epochs=record[ns.init]["epochs"])
        entry.update(best=str(best), epochs=epochs, best_map50_95=best_map,
                     train_args={**TRAIN_ARGS, "imgsz": ns.imgsz},
                     wall_s=entry["wall_s"] + time.time() - start, threads=os.environ.get("OMP_NUM_THREADS"),
                     train_s=_train_seconds(best.parent.parent))
        log.write_text(json.dumps(record, indent=2) + "\n")
        print(f"{name}: {epochs} epochs, best mAP50-95 {best_map:.3f}, {entry['train_s'] / 3600:.2f} h of training")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
