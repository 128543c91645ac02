"""What distillation costs in training time: seconds per epoch with and without a teacher.

A yolov8n is trained from its yaml on generated data, once without distillation and once with ``teacher=`` a yolov8n
checkpoint of the same size (as in ``yolo prune``, where the unpruned input teaches the pruned model, the teacher is
at least as large as the student). Each epoch's training loop is timed between Ultralytics' ``on_train_epoch_start``
and ``on_train_epoch_end`` callbacks, so validation (which never runs the teacher) is left out. The two runs
alternate ``--repeats`` times and the mean seconds per epoch of each are printed on one line.

Run: ``python benchmarks/distill_cost.py [--imgsz 160 --images 64 --epochs 2 --repeats 1]`` in an environment with
the plugin.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import List, Optional


class EpochTimer:
    """Callbacks that record the seconds of each epoch's training loop."""

    def __init__(self):
        """Start with no epochs recorded."""
        self.seconds: List[float] = []
        self._started = 0.0

    def attach(self, yolo) -> None:
        """Register the timing callbacks on a ``YOLO`` object before it trains."""
        yolo.add_callback("on_train_epoch_start", self.start)
        yolo.add_callback("on_train_epoch_end", self.end)

    def start(self, trainer) -> None:
        """Callback: an epoch's training loop begins."""
        self._started = time.perf_counter()

    def end(self, trainer) -> None:
        """Callback: an epoch's training loop ended."""
        self.seconds.append(time.perf_counter() - self._started)


def make_teacher(path: Path, nc: int) -> Path:
    """Save a freshly built yolov8n with ``nc`` classes as the teacher checkpoint."""
    from ultralytics.nn.tasks import DetectionModel

    from ultralytics_prune_plugin.engine.checkpoint import save_checkpoint

    return save_checkpoint(DetectionModel("yolov8n.yaml", nc=nc, verbose=False), path, {"task": "detect"})


def train_epochs(data: Path, work: Path, name: str, imgsz: int, epochs: int, teacher: Optional[Path]) -> List[float]:
    """Train yolov8n for ``epochs`` and return each epoch's training seconds."""
    from ultralytics import YOLO

    timer = EpochTimer()
    yolo = YOLO("yolov8n.yaml")
    timer.attach(yolo)
    yolo.train(data=str(data), epochs=epochs, imgsz=imgsz, batch=16, workers=0, plots=False, deterministic=False,
               amp=False, project=str(work), name=name, exist_ok=True, verbose=False,
               **({"teacher": str(teacher)} if teacher is not None else {}))
    if teacher is not None:
        assert yolo.trainer.distillation is not None, "the run did not distill"
    return timer.seconds


def main(argv=None) -> None:
    """Time the runs and print one line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--imgsz", type=int, default=160)
    parser.add_argument("--images", type=int, default=64, help="training images (validation: a quarter)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1, help="alternating runs of each kind")
    args = parser.parse_args(argv)

    import ultralytics

    from ultralytics_prune_plugin.data import make_dataset

    with tempfile.TemporaryDirectory(prefix="distill-cost-") as tmp:
        work = Path(tmp)
        data = make_dataset(work / "data", n_train=args.images, n_val=max(args.images // 4, 1), imgsz=args.imgsz,
                            n_classes=2)
        teacher = make_teacher(work / "teacher.pt", nc=2)
        plain, distilled = [], []
        for r in range(args.repeats):
            plain += train_epochs(data, work, f"plain{r}", args.imgsz, args.epochs, None)
            distilled += train_epochs(data, work, f"distill{r}", args.imgsz, args.epochs, teacher)
    without, with_ = statistics.mean(plain), statistics.mean(distilled)
    print(
        f"distillation cost: {without:.2f} s/epoch without a teacher, {with_:.2f} s/epoch with one "
        f"({with_ / without - 1:+.0%}); yolov8n teaching yolov8n, {args.imgsz} px, {args.images} training images, "
        f"batch 16, {args.epochs} epochs × {args.repeats} run(s) each, ultralytics {ultralytics.__version__}, CPU"
    )


if __name__ == "__main__":
    main()
