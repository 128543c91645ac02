"""Deterministic synthetic YOLO datasets (detect, segment, pose, obb, classify) built from simple shapes.

The generator draws filled geometric shapes (one class per shape type) with
OpenCV onto textured, noisy backgrounds and writes a dataset in the layout that
Ultralytics expects::

    root/
        data.yaml            # absolute ``path``, ``train``, ``val`` and ``names``
        synthetic.json       # manifest with the generation arguments (cache key)
        images/{train,val}/*.png
        labels/{train,val}/*.txt   # ``cls xc yc w h``, normalised to [0, 1]

Images are PNG so that the same arguments always give the same bytes. Every
image draws from its own ``numpy.random.default_rng([seed, split, index])``
stream, so the validation images do not change when ``n_train`` changes.

Two difficulty profiles exist. ``"easy"`` uses one to three large,
high-contrast shapes that yolov8n learns in a few epochs. ``"hard"`` uses one
to six small, low-contrast, partly overlapping shapes among unlabelled clutter
(outlines, cut shapes, shapes of unused classes, blobs and lines), with
stronger noise and occasional blur, so that baselines stay well below
saturation. Use a larger ``n_classes`` to make it harder still.

Example::

    python -m ultralytics_prune_plugin.data.synthetic --root /tmp/shapes --difficulty hard
"""

from __future__ import annotations

import argparse
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import yaml

__all__ = ["CLASS_NAMES", "TASKS", "main", "make_dataset"]

CLASS_NAMES = ("square", "disc", "triangle", "cross", "ring", "bar", "star", "diamond")
FORMAT_VERSION = 1
YAML_NAME = "data.yaml"
MANIFEST_NAME = "synthetic.json"
CLASS_LIST_NAME = "classes.txt"
TASKS = ("detect", "segment", "pose", "obb", "classify")
DIFFICULTIES = ("easy", "hard")
SPLITS = ("train", "val")

_SHIFT = 4  # sub-pixel bits for OpenCV polygon drawing
_BOX_THRESHOLD = 64  # alpha level (0-255) a pixel needs to count towards a box


@dataclass(frozen=True)
class _Profile:
    """Knobs of one difficulty level.

    Attributes:
        objects: Inclusive range of labelled objects per image.
        size: Range of object size as a fraction of the image side.
        contrast: Range of RGB distance between object and background colour.
        texture: Amplitude of the low-frequency background texture.
        noise: Range of the per-pixel Gaussian noise standard deviation.
        distractors: Inclusive range of unlabelled clutter items per image.
        max_overlap: Largest allowed intersection over the smaller box area
            between two labelled objects.
        rotation: Largest absolute shape rotation in degrees.
        blur_prob: Probability of a light Gaussian blur on an image.
    """

    objects: tuple[int, int]
    size: tuple[float, float]
    contrast: tuple[float, float]
    texture: float
    noise: tuple[float, float]
    distractors: tuple[int, int]
    max_overlap: float
    rotation: float
    blur_prob: float


_PROFILES = {
    "easy": _Profile(
        objects=(1, 3),
        size=(0.22, 0.42),
        contrast=(150.0, 260.0),
        texture=20.0,
        noise=(2.0, 6.0),
        distractors=(0, 0),
        max_overlap=0.0,
        rotation=8.0,
        blur_prob=0.0,
    ),
    "hard": _Profile(
        objects=(1, 6),
        size=(0.12, 0.34),
        contrast=(70.0, 140.0),
        texture=30.0,
        noise=(4.0, 12.0),
        distractors=(2, 5),
        max_overlap=0.3,
        rotation=20.0,
        blur_prob=0.25,
    ),
}


def _circle(radius: float, n: int = 48) -> np.ndarray:
    """Return a polygon approximating a circle centred on the origin."""
    t = np.linspace(0.0, 2.0 * math.pi, n, endpoint=False)
    return np.stack([radius * np.cos(t), radius * np.sin(t)], axis=1)


def _star(outer: float, inner: float, points: int = 5) -> np.ndarray:
    """Return a star polygon centred on the origin with its first tip up."""
    t = -math.pi / 2 + np.arange(2 * points) * math.pi / points
    r = np.where(np.arange(2 * points) % 2 == 0, outer, inner)
    return np.stack([r * np.cos(t), r * np.sin(t)], axis=1)


def _cross(half_arm: float) -> np.ndarray:
    """Return a plus-sign polygon of extent 1 and arm half-width ``half_arm``."""
    a, h = half_arm, 0.5
    pts = [
        (-a, -h),
        (a, -h),
        (a, -a),
        (h, -a),
        (h, a),
        (a, a),
        (a, h),
        (-a, h),
        (-a, a),
        (-h, a),
        (-h, -a),
        (-a, -a),
    ]
    return np.array(pts, dtype=np.float64)


# Unit shapes of extent ~1 centred on the origin: (filled polygons, holes).
_UNIT_SHAPES: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {
    "square": ([np.array([(-0.5, -0.5), (0.5, -0.5), (0.5, 0.5), (-0.5, 0.5)])], []),
    "disc": ([_circle(0.5)], []),
    "triangle": ([np.array([(0.0, -0.5), (0.5, 0.5), (-0.5, 0.5)])], []),
    "cross": ([_cross(1 / 6)], []),
    "ring": ([_circle(0.5)], [_circle(0.31)]),
    "bar": ([np.array([(-0.5, -0.11), (0.5, -0.11), (0.5, 0.11), (-0.5, 0.11)])], []),
    "star": ([_star(0.5, 0.21)], []),
    "diamond": ([np.array([(0.0, -0.5), (0.5, 0.0), (0.0, 0.5), (-0.5, 0.0)])], []),
}


@dataclass(frozen=True)
class _Pose:
    """Placement of a unit shape in an image (pixels and degrees)."""

    cx: float
    cy: float
    sx: float
    sy: float
    angle: float

    def apply(self, unit: np.ndarray) -> np.ndarray:
        """Map unit polygon points to fixed-point image coordinates for OpenCV."""
        a = math.radians(self.angle)
        rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        pts = (unit * (self.sx, self.sy)) @ rot.T + (self.cx, self.cy)
        return np.round(pts * (1 << _SHIFT)).astype(np.int32)


def _fill_mask(name: str, pose: _Pose, size: int) -> np.ndarray:
    """Rasterise a filled class shape into an anti-aliased uint8 alpha mask."""
    fills, holes = _UNIT_SHAPES[name]
    mask = np.zeros((size, size), np.uint8)
    for poly in fills:
        cv2.fillPoly(mask, [pose.apply(poly)], 255, cv2.LINE_AA, _SHIFT)
    for poly in holes:
        cv2.fillPoly(mask, [pose.apply(poly)], 0, cv2.LINE_AA, _SHIFT)
    return mask


def _outline_mask(name: str, pose: _Pose, size: int, thickness: int) -> np.ndarray:
    """Rasterise only the outline of a class shape into a uint8 alpha mask."""
    fills, holes = _UNIT_SHAPES[name]
    polys = [pose.apply(p) for p in fills + holes]
    mask = np.zeros((size, size), np.uint8)
    cv2.polylines(mask, polys, True, 255, thickness, cv2.LINE_AA, _SHIFT)
    return mask


def _mask_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Return the tight ``(x0, y0, x1, y1)`` box (exclusive end) of a mask."""
    ys, xs = np.nonzero(mask >= _BOX_THRESHOLD)
    if xs.size == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def _overlap(a: Sequence[int], b: Sequence[int]) -> float:
    """Return intersection area over the smaller box area of two boxes."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return iw * ih / smaller


def _random_pose(
    rng: np.random.Generator, profile: _Profile, size: int, name: str
) -> _Pose:
    """Draw a random size, aspect, rotation and position for one shape."""
    side = max(6.0, rng.uniform(*profile.size) * size)
    aspect = rng.uniform(0.85, 1.15)
    angle = rng.uniform(-profile.rotation, profile.rotation)
    if name == "bar" and rng.random() < 0.5:
        angle += 90.0
    margin = 0.5 * side * 1.2
    cx = rng.uniform(margin, size - margin)
    cy = rng.uniform(margin, size - margin)
    return _Pose(cx, cy, side * aspect, side / aspect, angle)


def _random_color(
    rng: np.random.Generator, bg: np.ndarray, contrast: tuple[float, float]
) -> np.ndarray:
    """Draw a colour whose RGB distance from ``bg`` lies in ``contrast``."""
    for _ in range(64):
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction) + 1e-12
        color = bg + rng.uniform(*contrast) * direction
        if np.all((color >= 0.0) & (color <= 255.0)):
            return color
    return np.where(bg < 128.0, 255.0, 0.0)


def _background(
    rng: np.random.Generator, profile: _Profile, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Return a textured float32 background image and its base colour."""
    base = rng.uniform(30.0, 225.0, size=3)
    grid = int(rng.integers(2, 8))
    coarse = (
        rng.uniform(-1.0, 1.0, size=(grid, grid, 3)).astype(np.float32)
        * profile.texture
    )
    texture = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    return (texture + base.astype(np.float32)).astype(np.float32), base


def _composite(img: np.ndarray, mask: np.ndarray, color: np.ndarray) -> None:
    """Alpha-blend ``color`` into ``img`` in place where ``mask`` is set."""
    alpha = (mask.astype(np.float32) / 255.0)[..., None]
    img *= 1.0 - alpha
    img += alpha * color.astype(np.float32)


def _place_objects(
    rng: np.random.Generator, profile: _Profile, n_classes: int, size: int
) -> list[tuple[int, np.ndarray, tuple[int, int, int, int]]]:
    """Choose labelled objects that fit the image and the overlap limit.

    Returns:
        A list of ``(class_id, alpha_mask, box)`` in drawing order.
    """
    placed: list[tuple[int, np.ndarray, tuple[int, int, int, int]]] = []
    for _ in range(int(rng.integers(profile.objects[0], profile.objects[1] + 1))):
        cls = int(rng.integers(n_classes))
        for _attempt in range(30):
            mask = _fill_mask(
                CLASS_NAMES[cls],
                _random_pose(rng, profile, size, CLASS_NAMES[cls]),
                size,
            )
            box = _mask_box(mask)
            if (
                box is None
                or box[0] == 0
                or box[1] == 0
                or box[2] == size
                or box[3] == size
            ):
                continue
            if all(
                _overlap(box, other) <= profile.max_overlap for _, _, other in placed
            ):
                placed.append((cls, mask, box))
                break
    return placed


def _half_plane(rng: np.random.Generator, pose: _Pose, size: int) -> np.ndarray:
    """Return a boolean mask of a random half-plane cutting near ``pose``."""
    phi = rng.uniform(0.0, 2.0 * math.pi)
    offset = rng.uniform(-0.15, 0.15) * max(pose.sx, pose.sy)
    ys, xs = np.mgrid[0:size, 0:size]
    return (xs - pose.cx) * math.cos(phi) + (ys - pose.cy) * math.sin(phi) < offset


def _distractor_mask(
    rng: np.random.Generator, profile: _Profile, n_classes: int, size: int
) -> np.ndarray:
    """Rasterise one unlabelled clutter item into a uint8 alpha mask."""
    kind = rng.choice(["outline", "partial", "other", "ellipse", "blob", "line"])
    name = CLASS_NAMES[int(rng.integers(len(CLASS_NAMES)))]
    if kind == "outline":
        return _outline_mask(
            name, _random_pose(rng, profile, size, name), size, int(rng.integers(1, 3))
        )
    if kind == "partial":
        pose = _random_pose(rng, profile, size, name)
        return np.where(
            _half_plane(rng, pose, size), _fill_mask(name, pose, size), 0
        ).astype(np.uint8)
    if kind == "other" and n_classes < len(CLASS_NAMES):
        name = CLASS_NAMES[int(rng.integers(n_classes, len(CLASS_NAMES)))]
        return _fill_mask(name, _random_pose(rng, profile, size, name), size)
    pose = _random_pose(rng, profile, size, "disc")
    mask = np.zeros((size, size), np.uint8)
    if kind == "line":
        ends = pose.apply(np.array([(-0.8, 0.0), (0.8, 0.0)]))
        thickness = int(rng.integers(1, max(2, size // 40) + 1))
        cv2.line(
            mask,
            tuple(map(int, ends[0])),
            tuple(map(int, ends[1])),
            255,
            thickness,
            cv2.LINE_AA,
            _SHIFT,
        )
        return mask
    if kind == "blob":
        n = int(rng.integers(5, 10))
        t = np.sort(rng.uniform(0.0, 2.0 * math.pi, n))
        r = rng.uniform(0.2, 0.5, n)
        unit = np.stack([r * np.cos(t), r * np.sin(t)], axis=1)
    else:  # elongated ellipse (also used for "other" when all classes are labelled)
        unit = _circle(0.5) * (1.0, rng.uniform(0.3, 0.55))
    cv2.fillPoly(mask, [pose.apply(unit)], 255, cv2.LINE_AA, _SHIFT)
    return mask


def _box_label(cls: int, mask: np.ndarray, box: tuple[int, int, int, int], size: int) -> str:
    """Detection label line ``cls xc yc w h`` (normalised) of one object."""
    x0, y0, x1, y1 = box
    xc, yc, w, h = (
        (x0 + x1) / 2 / size,
        (y0 + y1) / 2 / size,
        (x1 - x0) / size,
        (y1 - y0) / size,
    )
    return f"{cls} {xc:.6f} {yc:.6f} {w:.6f} {h:.6f}"


def _points(values: np.ndarray, size: int) -> str:
    """Pixel points ``(n, 2)`` as normalised, space-separated ``x y`` pairs clipped to [0, 1]."""
    return " ".join(f"{v:.6f}" for v in np.clip(values / size, 0.0, 1.0).reshape(-1))


def _outer_contour(mask: np.ndarray) -> np.ndarray:
    """The largest outer contour of a mask as ``(n, 2)`` pixel points (pixel centres)."""
    contours, _ = cv2.findContours(
        (mask >= _BOX_THRESHOLD).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
    )
    contour = max(contours, key=cv2.contourArea).reshape(-1, 2).astype(np.float64)
    return contour + 0.5


def _segment_label(cls: int, mask: np.ndarray, box: tuple[int, int, int, int], size: int) -> str:
    """Segmentation label line ``cls x1 y1 x2 y2 ...``: the object's outer polygon, normalised."""
    contour = _outer_contour(mask)
    if len(contour) < 3:  # a degenerate contour: fall back to the box corners
        x0, y0, x1, y1 = box
        contour = np.array([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], np.float64)
    return f"{cls} {_points(contour, size)}"


# Pose keypoints: the object's top-, right-, bottom- and left-most mask points, all visible. A horizontal flip swaps
# right and left, hence FLIP_IDX.
KPT_SHAPE = (4, 3)
FLIP_IDX = (0, 3, 2, 1)


def _pose_label(cls: int, mask: np.ndarray, box: tuple[int, int, int, int], size: int) -> str:
    """Pose label line ``cls xc yc w h`` followed by four keypoints ``x y 2`` (see :data:`KPT_SHAPE`)."""
    contour = _outer_contour(mask)
    extremes = [
        contour[np.argmin(contour[:, 1])],
        contour[np.argmax(contour[:, 0])],
        contour[np.argmax(contour[:, 1])],
        contour[np.argmin(contour[:, 0])],
    ]
    keypoints = " ".join(f"{_points(point, size)} 2" for point in extremes)
    return f"{_box_label(cls, mask, box, size)} {keypoints}"


def _obb_label(cls: int, mask: np.ndarray, box: tuple[int, int, int, int], size: int) -> str:
    """Oriented-box label line ``cls x1 y1 x2 y2 x3 y3 x4 y4``: the object's minimum-area rectangle, normalised."""
    corners = cv2.boxPoints(cv2.minAreaRect(_outer_contour(mask).astype(np.float32)))
    return f"{cls} {_points(corners.astype(np.float64), size)}"


_LABELS = {"detect": _box_label, "segment": _segment_label, "pose": _pose_label, "obb": _obb_label}


def _render_image(
    rng: np.random.Generator, profile: _Profile, n_classes: int, size: int, task: str = "detect"
) -> tuple[np.ndarray, list[str]]:
    """Render one image and its YOLO label lines.

    Returns:
        ``(image, lines)``: a ``size x size x 3`` uint8 image and one label line per object in the format of
        ``task`` (detect: ``"cls xc yc w h"``; segment: polygon; pose: box and keypoints; obb: four corners), all
        normalised. The random stream is consumed identically for every task, so all tasks draw the same images.
    """
    img, base = _background(rng, profile, size)
    for _ in range(
        int(rng.integers(profile.distractors[0], profile.distractors[1] + 1))
    ):
        _composite(
            img,
            _distractor_mask(rng, profile, n_classes, size),
            _random_color(rng, base, profile.contrast),
        )
    lines = []
    for cls, mask, box in _place_objects(rng, profile, n_classes, size):
        _composite(img, mask, _random_color(rng, base, profile.contrast))
        lines.append(_LABELS[task](cls, mask, box, size))
    return _finish(rng, profile, img), lines


def _finish(rng: np.random.Generator, profile: _Profile, img: np.ndarray) -> np.ndarray:
    """Blur (sometimes) and add noise to a float image, and return it as uint8."""
    if rng.random() < profile.blur_prob:
        img = cv2.GaussianBlur(img, (3, 3), 0)
    img += rng.normal(0.0, rng.uniform(*profile.noise), size=img.shape).astype(
        np.float32
    )
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _render_class_image(
    rng: np.random.Generator, profile: _Profile, n_classes: int, size: int, cls: int
) -> np.ndarray:
    """Render one classification image: the clutter of the profile and one shape of class ``cls``."""
    img, base = _background(rng, profile, size)
    for _ in range(int(rng.integers(profile.distractors[0], profile.distractors[1] + 1))):
        _composite(img, _distractor_mask(rng, profile, n_classes, size), _random_color(rng, base, profile.contrast))
    name = CLASS_NAMES[cls]
    mask = _fill_mask(name, _random_pose(rng, profile, size, name), size)
    _composite(img, mask, _random_color(rng, base, profile.contrast))
    return _finish(rng, profile, img)


def _write_text(path: Path, text: str) -> None:
    """Write UTF-8 text with ``\\n`` line endings on every platform."""
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)


def _write_png(path: Path, img: np.ndarray, what: str) -> None:
    """Encode ``img`` as PNG and write it to ``path``."""
    ok, png = cv2.imencode(".png", img)
    if not ok:
        raise OSError(f"OpenCV could not encode {what} as PNG")
    path.write_bytes(png.tobytes())


def _write_class_split(root: Path, split: str, count: int, args: dict) -> None:
    """Render and write one classification split: ``root/split/<class name>/*.png``, classes in turn."""
    profile = _PROFILES[args["difficulty"]]
    for cls in range(args["n_classes"]):
        (root / split / CLASS_NAMES[cls]).mkdir(parents=True, exist_ok=True)
    for i in range(count):
        rng = np.random.default_rng([args["seed"], SPLITS.index(split), i])
        cls = i % args["n_classes"]
        img = _render_class_image(rng, profile, args["n_classes"], args["imgsz"], cls)
        _write_png(root / split / CLASS_NAMES[cls] / f"{split}_{i:05d}.png", img, f"image {i} of split {split!r}")


def _write_split(root: Path, split: str, count: int, args: dict) -> None:
    """Render and write all images and label files of one split."""
    if args.get("task", "detect") == "classify":
        _write_class_split(root, split, count, args)
        return
    image_dir, label_dir = root / "images" / split, root / "labels" / split
    image_dir.mkdir(parents=True, exist_ok=True)
    label_dir.mkdir(parents=True, exist_ok=True)
    profile = _PROFILES[args["difficulty"]]
    for i in range(count):
        rng = np.random.default_rng([args["seed"], SPLITS.index(split), i])
        img, lines = _render_image(rng, profile, args["n_classes"], args["imgsz"], args.get("task", "detect"))
        stem = f"{split}_{i:05d}"
        _write_png(image_dir / f"{stem}.png", img, f"image {i} of split {split!r}")
        _write_text(label_dir / f"{stem}.txt", "".join(line + "\n" for line in lines))


def _write_yaml(root: Path, n_classes: int, task: str = "detect") -> Path:
    """Write ``data.yaml`` atomically and return its path (pose data also gets ``kpt_shape`` and ``flip_idx``)."""
    data = {
        "path": str(root),
        "train": "images/train",
        "val": "images/val",
        "names": {i: CLASS_NAMES[i] for i in range(n_classes)},
    }
    if task == "pose":
        data.update(kpt_shape=list(KPT_SHAPE), flip_idx=list(FLIP_IDX))
    path, tmp = root / YAML_NAME, root / f".{YAML_NAME}.tmp"
    _write_text(tmp, yaml.safe_dump(data, sort_keys=False))
    os.replace(tmp, path)
    return path


def _write_class_list(root: Path, n_classes: int) -> Path:
    """Write ``classes.txt`` (one class name per line; it marks a classification dataset finished) and return
    ``root``, the folder that ``data=`` takes."""
    path, tmp = root / CLASS_LIST_NAME, root / f".{CLASS_LIST_NAME}.tmp"
    _write_text(tmp, "".join(f"{CLASS_NAMES[i]}\n" for i in range(n_classes)))
    os.replace(tmp, path)
    return root


def _check_int(name: str, value: object, low: int, high: int | None = None) -> None:
    """Raise ``ValueError`` unless ``value`` is an int in ``[low, high]``."""
    valid = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    if not valid or value < low or (high is not None and value > high):
        allowed = (
            f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"
        )
        raise ValueError(f"{name} must be {allowed}, got {value!r}")


def _validated_args(n_train, n_val, imgsz, n_classes, seed, difficulty, task="detect") -> dict:
    """Validate the generation arguments and return them as a manifest dict (``task`` only when not detect)."""
    _check_int("n_train", n_train, 1)
    _check_int("n_val", n_val, 1)
    _check_int("imgsz", imgsz, 32, 1280)
    _check_int("n_classes", n_classes, 1, len(CLASS_NAMES))
    _check_int("seed", seed, 0)
    if difficulty not in DIFFICULTIES:
        raise ValueError(
            f"difficulty must be one of {DIFFICULTIES}, got {difficulty!r}"
        )
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if task == "classify" and n_train < n_classes:
        raise ValueError(f"a classify dataset needs n_train >= n_classes ({n_classes}), got {n_train}")
    extra = {} if task == "detect" else {"task": task}  # detect manifests stay as they were
    return {
        **extra,
        "format_version": FORMAT_VERSION,
        "n_train": int(n_train),
        "n_val": int(n_val),
        "imgsz": int(imgsz),
        "n_classes": int(n_classes),
        "seed": int(seed),
        "difficulty": difficulty,
    }


def _read_manifest(root: Path) -> dict | None:
    """Return the manifest stored in ``root``, or ``None`` if absent or unreadable."""
    try:
        manifest = json.loads((root / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def _has_files(folder: Path) -> bool:
    """Return whether ``folder`` exists and contains any file, at any depth."""
    return folder.is_dir() and any(p.is_file() for p in folder.rglob("*"))


def _cached_yaml(root: Path, args: dict) -> Path | None:
    """Return the YAML (for classify: the folder) of an identical finished dataset in ``root``, if any.

    Raises:
        FileExistsError: If ``root`` holds a dataset, a manifest or image/label
            files that were not produced with exactly ``args``.
    """
    manifest = _read_manifest(root)
    classify = args.get("task") == "classify"
    for marker in (YAML_NAME, CLASS_LIST_NAME):
        if (root / marker).exists():
            if manifest == args:
                return root if classify else root / YAML_NAME
            raise FileExistsError(
                f"{root} already holds a dataset made with other arguments; use another root"
            )
    foreign_files = any(_has_files(root / folder) for folder in ("images", "labels", *SPLITS))
    if ((root / MANIFEST_NAME).exists() and manifest != args) or (
        foreign_files and manifest is None
    ):
        raise FileExistsError(
            f"{root} already holds files not made with these arguments; use another root"
        )
    return None


def make_dataset(
    root: str | os.PathLike,
    n_train: int = 64,
    n_val: int = 16,
    imgsz: int = 160,
    n_classes: int = 4,
    seed: int = 0,
    difficulty: str = "easy",
    task: str = "detect",
) -> Path:
    """Generate (or reuse) a deterministic synthetic YOLO dataset for one task (detection by default).

    The tasks draw the same scenes from the same random streams and differ in their labels (see :func:`_render_image`):

    * ``detect``: ``images/``, ``labels/`` (``cls xc yc w h``) and ``data.yaml``;
    * ``segment``: the same layout, labels ``cls x1 y1 x2 y2 ...`` (each object's outer polygon);
    * ``pose``: labels ``cls xc yc w h`` then four keypoints ``x y 2`` (the object's top-, right-, bottom- and
      left-most points), and ``kpt_shape: [4, 3]``, ``flip_idx: [0, 3, 2, 1]`` in ``data.yaml``;
    * ``obb``: labels ``cls x1 y1 x2 y2 x3 y3 x4 y4`` (each object's minimum-area rotated rectangle);
    * ``classify``: ``train/<class>/*.png`` and ``val/<class>/*.png``, one shape per image (image ``i`` shows class
      ``i % n_classes``), and ``classes.txt``; the returned path is the folder itself, which is what ``data=`` takes.

    The same arguments always produce byte-identical images and labels. If
    ``root`` already holds a finished dataset made with the same arguments it
    is reused as is. Nothing in ``root`` is ever deleted.

    Args:
        root: Output folder; created if missing.
        n_train: Number of training images (>= 1).
        n_val: Number of validation images (>= 1).
        imgsz: Side of the square images in pixels (32 to 1280).
        n_classes: Number of labelled shape classes (1 to 8), taken in order
            from ``CLASS_NAMES``.
        seed: Non-negative seed of the random streams.
        difficulty: ``"easy"`` (large, high-contrast shapes, no clutter) or
            ``"hard"`` (small, low-contrast, overlapping shapes with clutter).
        task: One of :data:`TASKS`.

    Returns:
        Absolute path of the written (or reused) ``root/data.yaml``; for ``task="classify"``, of ``root``.

    Raises:
        ValueError: If an argument is out of range.
        FileExistsError: If ``root`` already holds a dataset or files made with
            other arguments, or files not made by this function.
    """
    args = _validated_args(n_train, n_val, imgsz, n_classes, seed, difficulty, task)
    root = Path(root).expanduser().resolve()
    cached = _cached_yaml(root, args)
    if cached is not None:
        return cached
    root.mkdir(parents=True, exist_ok=True)
    _write_text(root / MANIFEST_NAME, json.dumps(args, indent=2, sort_keys=True) + "\n")
    _write_split(root, "train", args["n_train"], args)
    _write_split(root, "val", args["n_val"], args)
    if task == "classify":
        return _write_class_list(root, args["n_classes"])  # written last: marks the dataset finished
    return _write_yaml(root, args["n_classes"], task)  # written last: marks the dataset finished


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; prints the path of the data YAML.

    Args:
        argv: Arguments without the program name; ``sys.argv[1:]`` if ``None``.

    Returns:
        Process exit status (0 on success; argument errors exit with 2).
    """
    parser = argparse.ArgumentParser(
        prog="python -m ultralytics_prune_plugin.data.synthetic",
        description="Generate a synthetic YOLO shapes dataset and print the path of its data YAML.",
    )
    parser.add_argument("--root", required=True, help="output folder")
    parser.add_argument(
        "--n-train", type=int, default=64, help="training images (default 64)"
    )
    parser.add_argument(
        "--n-val", type=int, default=16, help="validation images (default 16)"
    )
    parser.add_argument(
        "--imgsz", type=int, default=160, help="image side in pixels (default 160)"
    )
    parser.add_argument(
        "--n-classes", type=int, default=4, help="number of classes, 1-8 (default 4)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--difficulty", choices=DIFFICULTIES, default="easy", help="default easy"
    )
    parser.add_argument("--task", choices=TASKS, default="detect", help="label format (default detect)")
    ns = parser.parse_args(argv)
    try:
        path = make_dataset(
            ns.root,
            ns.n_train,
            ns.n_val,
            ns.imgsz,
            ns.n_classes,
            ns.seed,
            ns.difficulty,
            ns.task,
        )
    except (ValueError, FileExistsError) as e:
        parser.error(str(e))
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
