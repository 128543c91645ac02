"""One validation tile of the real photographs, three ways: the hand-drawn boxes, the unpruned input's detections and
the pruned model's, side by side, so that readers can judge the detections by looking.

Reads the record of :mod:`real_prune` (``results_real.json``) for the input and the pruned model of ``--model`` at
``--target``, picks the val tile with the most hand-drawn crowns (or ``--image``), and writes
``results_real_example.jpg`` beside the record.

Usage::

    python benchmarks/real_images.py --root /root/bench-real --model yolov8n --target 0.5
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import List, Tuple

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import real_data  # noqa: E402

Box = Tuple[float, float, float, float]


def ground_truth(image: Path) -> List[Box]:
    """The hand-drawn boxes of a tile as pixel corners, from its YOLO label file."""
    from PIL import Image

    width, height = Image.open(image).size
    label = image.parent.parent.parent / "labels" / image.parent.name / f"{image.stem}.txt"
    boxes = []
    for line in label.read_text().splitlines() if label.is_file() else []:
        _, x, y, w, h = map(float, line.split()[:5])
        boxes.append(((x - w / 2) * width, (y - h / 2) * height, (x + w / 2) * width, (y + h / 2) * height))
    return boxes


def detections(weights: Path, image: Path, imgsz: int, conf: float) -> List[Box]:
    """The boxes a checkpoint predicts on ``image`` (Ultralytics' own predictor, CPU)."""
    from ultralytics import YOLO

    result = YOLO(str(weights)).predict(str(image), imgsz=imgsz, conf=conf, device="cpu", verbose=False)[0]
    return [tuple(b) for b in result.boxes.xyxy.tolist()]


def draw(image: Path, panels: List[Tuple[str, List[Box], str]], out: Path) -> Path:
    """Draw ``(title, boxes, colour)`` panels over the same image, side by side."""
    import matplotlib

    matplotlib.use("Agg", force=False)  # a script of its own: no user backend to keep
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle
    from PIL import Image

    pixels = Image.open(image).convert("RGB")
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.6))
    for ax, (title, boxes, colour) in zip(axes, panels):
        ax.imshow(pixels)
        for x1, y1, x2, y2 in boxes:
            ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=colour, linewidth=1.2))
        ax.set_title(f"{title}\n{len(boxes)} boxes", fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return out


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=real_data.DEFAULT_ROOT.parent, help="benchmark folder")
    parser.add_argument("--record", type=Path, default=HERE / "results_real.json")
    parser.add_argument("--model", default="yolov8n")
    parser.add_argument("--target", type=float, default=0.5)
    parser.add_argument("--recipe", default="default")
    parser.add_argument("--image", type=Path, help="a val tile (default: the one with the most crowns)")
    parser.add_argument("--conf", type=float, default=0.25)
    args = parser.parse_args(argv)

    record = json.loads(args.record.read_text())
    data = real_data.build(args.root.resolve() / "data")
    row = next(r for r in record["recipe"]
               if (r["model"], r["target"], r["recipe"]) == (args.model, args.target, args.recipe))
    tiles = sorted((data.parent / "images" / "val").glob("*.png")) + sorted((data.parent / "images" / "val").glob("*.jpg"))
    image = args.image or max(tiles, key=lambda p: len(ground_truth(p)))
    imgsz = 320
    panels = [
        ("hand-drawn crowns", ground_truth(image), "yellow"),
        (f"{args.model} trained here (mAP50-95 {row['input_map50_95']:.3f})",
         detections(Path(record["inputs"][args.model]["best"]), image, imgsz, args.conf), "cyan"),
        (f"pruned, {row['macs_before'] / row['macs_after']:.2f}× fewer MACs (mAP50-95 {row['map50_95']:.3f})",
         detections(Path(row["pt"]), image, imgsz, args.conf), "magenta"),
    ]
    out = draw(image, panels, args.record.parent / f"{args.record.stem}_example.jpg")
    print(f"written {out}")
    return out


if __name__ == "__main__":
    main()
