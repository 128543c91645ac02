"""Cut Pascal VOC annotated photographs into square tiles and write them as a YOLO detection dataset.

Large aerial or scanned images hold far more pixels than a detector's input size; cutting them into tiles at their
native resolution keeps small objects small instead of shrinking them away. Each source image is assigned to one
split as a whole, so no pixel of a validation tile is ever seen in training::

    root/
        data.yaml                  # absolute ``path``, ``train``, ``val`` and ``names``
        voc_tiles.json             # manifest: sources, split, tile size, boxes kept (cache key)
        images/{train,val}/<source>_<row>_<col>.png
        labels/{train,val}/<source>_<row>_<col>.txt   # ``cls xc yc w h``, normalised to [0, 1]

Tiles start every ``tile - overlap`` pixels; the last row and column are moved back to end at the image's edge, so
the whole image is covered with tiles of one size. A box cut by a tile edge is kept, clipped, when at least
``min_visible`` of its area lies inside the tile; boxes less visible than that are dropped from that tile (the
object is then labelled in a neighbouring tile). Tiles without any box are kept: they teach what background looks
like and they count against false positives in validation.

Example::

    python -m ultralytics_prune_plugin.data.voc_tiles --root /tmp/trees --tile 320 \\
        --train a.png b.png --val c.png            # each image's annotation is the .xml beside it
"""

from __future__ import annotations

import argparse
import json
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import yaml

__all__ = ["VocBox", "main", "make_tiled_dataset", "read_voc", "tile_origins"]

FORMAT_VERSION = 1
YAML_NAME = "data.yaml"
MANIFEST_NAME = "voc_tiles.json"
SPLITS = ("train", "val")


@dataclass(frozen=True)
class VocBox:
    """One annotated object: class name and pixel corners (``x2``/``y2`` exclusive, as floats)."""

    name: str
    x1: float
    y1: float
    x2: float
    y2: float


def read_voc(xml_path: str | Path) -> tuple[tuple[int, int], list[VocBox]]:
    """Read a Pascal VOC annotation file.

    VOC corners are 1-based and inclusive; they are returned 0-based with exclusive ends, so ``x2 - x1`` is the
    box's width in pixels.

    Args:
        xml_path: The ``.xml`` file.

    Returns:
        ``((width, height), boxes)`` with the image size the annotation states.

    Raises:
        ValueError: If the file lacks an image size or a box has no positive area.
    """
    root = ET.parse(xml_path).getroot()
    size = root.find("size")
    if size is None or size.findtext("width") is None or size.findtext("height") is None:
        raise ValueError(f"{xml_path}: no <size><width>/<height>")
    width, height = int(float(size.findtext("width"))), int(float(size.findtext("height")))
    boxes = []
    for obj in root.iter("object"):
        bb = obj.find("bndbox")
        x1, y1, x2, y2 = (float(bb.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
        box = VocBox(obj.findtext("name", "").strip(), x1 - 1, y1 - 1, x2, y2)
        if box.x2 <= box.x1 or box.y2 <= box.y1:
            raise ValueError(f"{xml_path}: box {x1, y1, x2, y2} of {box.name!r} has no area")
        boxes.append(box)
    return (width, height), boxes


def tile_origins(length: int, tile: int, overlap: int = 0) -> list[int]:
    """Start offsets of the tiles along one side of ``length`` pixels.

    Args:
        length: The side's length in pixels.
        tile: Tile side (> ``overlap``).
        overlap: Pixels shared by neighbouring tiles (the last tile may share more, to end at the edge).

    Returns:
        Sorted offsets; ``[0]`` when the side is not longer than one tile.
    """
    if length <= tile:
        return [0]
    stride = tile - overlap
    origins = list(range(0, length - tile + 1, stride))
    if origins[-1] + tile < length:
        origins.append(length - tile)
    return origins


def _tile_labels(boxes: Sequence[VocBox], x0: int, y0: int, tw: int, th: int, classes: dict, min_visible: float):
    """YOLO label lines of the boxes visible enough in one tile."""
    lines = []
    for b in boxes:
        cx1, cy1 = max(b.x1, x0), max(b.y1, y0)
        cx2, cy2 = min(b.x2, x0 + tw), min(b.y2, y0 + th)
        if cx2 <= cx1 or cy2 <= cy1:
            continue
        if (cx2 - cx1) * (cy2 - cy1) < min_visible * (b.x2 - b.x1) * (b.y2 - b.y1):
            continue
        xc, yc = ((cx1 + cx2) / 2 - x0) / tw, ((cy1 + cy2) / 2 - y0) / th
        lines.append(f"{classes[b.name]} {xc:.6f} {yc:.6f} {(cx2 - cx1) / tw:.6f} {(cy2 - cy1) / th:.6f}")
    return lines


def _annotation_of(image: Path) -> Path:
    xml = image.with_suffix(".xml")
    if not xml.is_file():
        raise FileNotFoundError(f"{image}: no Pascal VOC annotation {xml.name} beside it")
    return xml


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def make_tiled_dataset(
    root: str | Path,
    train: Sequence[str | Path],
    val: Sequence[str | Path],
    tile: int = 320,
    overlap: int = 0,
    min_visible: float = 0.5,
    names: Sequence[str] | None = None,
    rename: dict[str, str] | None = None,
) -> Path:
    """Write a YOLO detection dataset of square tiles cut from VOC-annotated images.

    Every image's annotation is the ``.xml`` of the same name beside it. An image smaller than ``tile`` is padded
    with grey (114, as Ultralytics pads) to the tile size at its bottom-right. If ``root`` already holds a finished
    dataset made from the same sources and settings it is reused as is; nothing in ``root`` is ever deleted.

    Args:
        root: Output folder; created if missing.
        train: Source images of the training split.
        val: Source images of the validation split (none of them may also be in ``train``).
        tile: Tile side in pixels (32 to 4096).
        overlap: Pixels shared by neighbouring tiles (0 to ``tile // 2``).
        min_visible: Least fraction of a box's area inside a tile for the box to be labelled there (0 < x <= 1).
        names: Class names in label order; the sorted names found in the annotations (after ``rename``) if
            ``None``.
        rename: Annotation names to relabel, e.g. ``{"Dead": "Tree"}`` to merge classes.

    Returns:
        Absolute path of ``root/data.yaml``.

    Raises:
        ValueError: For an argument out of range, a source in both splits, an annotation whose size differs from its
            image, or a class missing from ``names``.
        FileNotFoundError: For a missing image or annotation.
        FileExistsError: If ``root`` holds files not made by this function with these arguments.
    """
    if not 32 <= int(tile) <= 4096:
        raise ValueError(f"tile={tile} must be 32-4096 pixels")
    if not 0 <= int(overlap) <= tile // 2:
        raise ValueError(f"overlap={overlap} must be 0-{tile // 2} (half the tile)")
    if not 0 < float(min_visible) <= 1:
        raise ValueError(f"min_visible={min_visible} must be in (0, 1]")
    sources = {split: [Path(p).expanduser().resolve() for p in paths] for split, paths in zip(SPLITS, (train, val))}
    if not sources["train"] or not sources["val"]:
        raise ValueError("both train and val need at least one source image")
    shared = {p.stem for p in sources["train"]} & {p.stem for p in sources["val"]}
    if shared:
        raise ValueError(f"source images in both train and val: {sorted(shared)} (they would share pixels)")
    annotations = {}
    for split in SPLITS:
        for image in sources[split]:
            if not image.is_file():
                raise FileNotFoundError(f"{image}: no such image")
            size, boxes = read_voc(_annotation_of(image))
            renamed = [VocBox((rename or {}).get(b.name, b.name), b.x1, b.y1, b.x2, b.y2) for b in boxes]
            annotations[image] = size, renamed
    found = sorted({b.name for _, boxes in annotations.values() for b in boxes})
    names = list(names) if names is not None else found
    missing = sorted(set(found) - set(names))
    if missing:
        raise ValueError(f"classes {missing} in the annotations are not in names={names}")
    manifest = {
        "format": FORMAT_VERSION,
        "tile": int(tile),
        "overlap": int(overlap),
        "min_visible": float(min_visible),
        "names": names,
        "rename": dict(sorted((rename or {}).items())),
        "sources": {split: [p.name for p in sources[split]] for split in SPLITS},
    }
    root = Path(root).expanduser().resolve()
    yaml_path = root / YAML_NAME
    if (root / MANIFEST_NAME).is_file():
        old = json.loads((root / MANIFEST_NAME).read_text(encoding="utf-8"))
        old_counts = old.pop("counts", None)
        if old != manifest:
            raise FileExistsError(f"{root} holds a tiled dataset made with other settings; choose another root")
        if yaml_path.is_file() and old_counts is not None:
            return yaml_path
    elif root.is_dir() and any(root.iterdir()):
        raise FileExistsError(f"{root} is not empty and holds no tiled dataset; choose another root")
    root.mkdir(parents=True, exist_ok=True)
    _write_atomic(root / MANIFEST_NAME, json.dumps(manifest, indent=2) + "\n")
    classes = {n: i for i, n in enumerate(names)}
    counts = {split: {"images": 0, "tiles": 0, "boxes": 0, "labels": 0} for split in SPLITS}
    for split in SPLITS:
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for image in sources[split]:
            (width, height), boxes = annotations[image]
            img = cv2.imread(str(image), cv2.IMREAD_COLOR)
            if img is None:
                raise ValueError(f"{image}: not an image OpenCV can read")
            if img.shape[:2] != (height, width):
                raise ValueError(f"{image}: {img.shape[1]}x{img.shape[0]} pixels, its annotation says {width}x{height}")
            if height < tile or width < tile:
                padded = np.full((max(height, tile), max(width, tile), 3), 114, np.uint8)
                padded[:height, :width] = img
                img = padded
            counts[split]["images"] += 1
            counts[split]["boxes"] += len(boxes)
            for r, y0 in enumerate(tile_origins(img.shape[0], tile, overlap)):
                for c, x0 in enumerate(tile_origins(img.shape[1], tile, overlap)):
                    stem = f"{image.stem}_{r:02d}_{c:02d}".replace(" ", "_")
                    lines = _tile_labels(boxes, x0, y0, tile, tile, classes, min_visible)
                    if not cv2.imwrite(str(root / "images" / split / f"{stem}.png"), img[y0 : y0 + tile, x0 : x0 + tile]):
                        raise OSError(f"could not write {stem}.png under {root}")
                    _write_atomic(root / "labels" / split / f"{stem}.txt", "".join(f"{ln}\n" for ln in lines))
                    counts[split]["tiles"] += 1
                    counts[split]["labels"] += len(lines)
    data = {
        "path": str(root),
        "train": "images/train",
        "val": "images/val",
        "names": dict(enumerate(names)),
    }
    _write_atomic(root / MANIFEST_NAME, json.dumps({**manifest, "counts": counts}, indent=2) + "\n")
    _write_atomic(yaml_path, yaml.safe_dump(data, sort_keys=False))  # written last: marks the dataset finished
    return yaml_path


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; prints the path of the data YAML.

    Args:
        argv: Arguments without the program name; ``sys.argv[1:]`` if ``None``.

    Returns:
        Process exit status (0 on success; argument errors exit with 2).
    """
    parser = argparse.ArgumentParser(
        prog="python -m ultralytics_prune_plugin.data.voc_tiles",
        description="Cut Pascal VOC annotated images into tiles of a YOLO detection dataset; prints its data YAML.",
    )
    parser.add_argument("--root", required=True, help="output folder")
    parser.add_argument("--train", nargs="+", required=True, help="training source images (.xml beside each)")
    parser.add_argument("--val", nargs="+", required=True, help="validation source images (.xml beside each)")
    parser.add_argument("--tile", type=int, default=320, help="tile side in pixels (default 320)")
    parser.add_argument("--overlap", type=int, default=0, help="pixels shared by neighbouring tiles (default 0)")
    parser.add_argument("--min-visible", type=float, default=0.5, help="least visible box fraction (default 0.5)")
    ns = parser.parse_args(argv)
    try:
        path = make_tiled_dataset(ns.root, ns.train, ns.val, ns.tile, ns.overlap, ns.min_visible)
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        parser.error(str(e))
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
