"""The Pascal VOC tile converter (the real-data benchmark's dataset builder), on a tiny generated VOC folder.

The benchmark's photographs are downloaded only by ``make bench``; this test writes its own images and annotations,
so the converter is checked without the download: tile layout, box clipping and the visibility rule, labels that
Ultralytics reads back as the same boxes, split separation, the cache and its refusals.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from ultralytics_prune_plugin.data.voc_tiles import make_tiled_dataset, read_voc, tile_origins


def _write_voc(folder, stem, size, boxes):
    """Write ``stem.png`` (width x height, boxes drawn white on black) and ``stem.xml`` (VOC, 1-based inclusive)."""
    width, height = size
    img = np.zeros((height, width, 3), np.uint8)
    objects = []
    for name, (x1, y1, x2, y2) in boxes:  # 0-based, exclusive ends
        img[y1:y2, x1:x2] = 255
        objects.append(
            f"<object><name>{name}</name><bndbox><xmin>{x1 + 1}</xmin><ymin>{y1 + 1}</ymin>"
            f"<xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
        )
    cv2.imwrite(str(folder / f"{stem}.png"), img)
    (folder / f"{stem}.xml").write_text(
        f"<annotation><size><width>{width}</width><height>{height}</height><depth>3</depth></size>"
        + "".join(objects) + "</annotation>"
    )
    return folder / f"{stem}.png"


def _labels(path):
    return sorted(tuple(round(float(v), 5) for v in line.split()) for line in path.read_text().splitlines())


def _rows(*rows):
    return sorted(tuple(round(v, 5) for v in row) for row in rows)


def test_tile_origins_cover_the_side_with_equal_tiles():
    assert tile_origins(100, 100) == [0]
    assert tile_origins(60, 100) == [0]
    assert tile_origins(250, 100) == [0, 100, 150]  # the last tile moves back to end at the edge
    assert tile_origins(300, 100) == [0, 100, 200]
    assert tile_origins(250, 100, overlap=20) == [0, 80, 150]


def test_read_voc_returns_zero_based_exclusive_corners(tmp_path):
    image = _write_voc(tmp_path, "a", (50, 40), [("tree", (10, 5, 20, 25))])
    (width, height), boxes = read_voc(image.with_suffix(".xml"))
    assert (width, height) == (50, 40)
    assert [(b.name, b.x1, b.y1, b.x2, b.y2) for b in boxes] == [("tree", 10, 5, 20, 25)]


def test_tiles_labels_and_splits(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    train = _write_voc(
        src, "big", (128, 96),
        [
            ("tree", (4, 4, 20, 20)),      # inside tile (0, 0)
            ("tree", (56, 8, 72, 24)),     # straddles the column cut at 64: half in each tile, kept in both
            ("tree", (60, 40, 76, 56)),    # 4 of 16 columns left of the cut: dropped there, kept right of it
            ("bush", (100, 70, 120, 90)),  # bottom-right, in the tile moved back to end at the edge
        ],
    )
    val = _write_voc(src, "small", (40, 30), [("tree", (10, 10, 30, 20))])  # smaller than a tile: padded
    data = make_tiled_dataset(tmp_path / "out", train=[train], val=[val], tile=64)
    root = data.parent
    manifest = json.loads((root / "voc_tiles.json").read_text())
    assert manifest["names"] == ["bush", "tree"]
    assert manifest["counts"]["train"]["tiles"] == 4 and manifest["counts"]["val"]["tiles"] == 1
    labels = {p.stem: _labels(p) for p in (root / "labels" / "train").glob("*.txt")}
    assert sorted(labels) == ["big_00_00", "big_00_01", "big_01_00", "big_01_01"]
    # Tile (0, 0) covers x 0-64, y 0-64: the first box whole, the straddling one clipped to x 56-64.
    assert labels["big_00_00"] == _rows((1, 12 / 64, 12 / 64, 16 / 64, 16 / 64), (1, 60 / 64, 16 / 64, 8 / 64, 16 / 64))
    # Tile (0, 1) covers x 64-128: the straddling box's right half and the 75 %-visible one.
    assert labels["big_00_01"] == _rows((1, 4 / 64, 16 / 64, 8 / 64, 16 / 64), (1, 6 / 64, 48 / 64, 12 / 64, 16 / 64))
    assert labels["big_01_00"] == []  # the 25 %-visible box is dropped from the left column's tiles
    # Row 1 starts at y 32 (96 - 64): the bush is at y 70-90 → 38-58 in the tile, x 100-120 → 36-56.
    assert labels["big_01_01"] == _rows((0, 46 / 64, 48 / 64, 20 / 64, 20 / 64), (1, 6 / 64, 16 / 64, 12 / 64, 16 / 64))
    # The tile image holds the source pixels at the labelled place.
    tile = cv2.imread(str(root / "images" / "train" / "big_01_01.png"))
    assert tile.shape == (64, 64, 3) and tile[48, 46].tolist() == [255, 255, 255] and tile[2, 30].sum() == 0
    # The small val image is padded with grey to one tile, its box unchanged.
    val_tile = cv2.imread(str(root / "images" / "val" / "small_00_00.png"))
    assert val_tile.shape == (64, 64, 3) and val_tile[50, 50].tolist() == [114, 114, 114]
    assert _labels(root / "labels" / "val" / "small_00_00.txt") == _rows((1, 20 / 64, 15 / 64, 20 / 64, 10 / 64))

    # Ultralytics reads the dataset back: the same boxes, in pixels.
    from ultralytics.data.utils import check_det_dataset

    info = check_det_dataset(str(data))
    assert info["nc"] == 2 and info["names"] == {0: "bush", 1: "tree"}

    # The same call reuses the dataset; other settings in the same root are refused, nothing is deleted.
    stamp = (root / "images" / "train" / "big_00_00.png").stat().st_mtime_ns
    assert make_tiled_dataset(tmp_path / "out", train=[train], val=[val], tile=64) == data
    assert (root / "images" / "train" / "big_00_00.png").stat().st_mtime_ns == stamp
    with pytest.raises(FileExistsError, match="other settings"):
        make_tiled_dataset(tmp_path / "out", train=[train], val=[val], tile=32)


def test_refusals(tmp_path):
    image = _write_voc(tmp_path, "a", (64, 64), [("tree", (1, 1, 9, 9))])
    with pytest.raises(ValueError, match="both train and val"):
        make_tiled_dataset(tmp_path / "o1", train=[image], val=[image], tile=32)
    with pytest.raises(ValueError, match="tile=8"):
        make_tiled_dataset(tmp_path / "o2", train=[image], val=[image], tile=8)
    other = _write_voc(tmp_path, "b", (64, 64), [("rock", (1, 1, 9, 9))])
    with pytest.raises(ValueError, match="not in names"):
        make_tiled_dataset(tmp_path / "o3", train=[image], val=[other], tile=32, names=["tree"])
    (tmp_path / "c.png").write_bytes((tmp_path / "a.png").read_bytes())
    with pytest.raises(FileNotFoundError, match="no Pascal VOC annotation"):
        make_tiled_dataset(tmp_path / "o4", train=[image], val=[tmp_path / "c.png"], tile=32)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "mine.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not empty"):
        make_tiled_dataset(tmp_path / "full", train=[image], val=[other], tile=32)
    assert (tmp_path / "full" / "mine.txt").read_text() == "keep me"


def test_rename_merges_classes(tmp_path):
    a = _write_voc(tmp_path, "a", (64, 64), [("Tree", (1, 1, 9, 9)), ("Dead", (20, 20, 30, 30))])
    b = _write_voc(tmp_path, "b", (64, 64), [("Alive", (1, 1, 9, 9))])
    data = make_tiled_dataset(tmp_path / "out", train=[a], val=[b], tile=64, rename={"Dead": "Tree", "Alive": "Tree"})
    assert json.loads((data.parent / "voc_tiles.json").read_text())["names"] == ["Tree"]
    assert [label[0] for label in _labels(data.parent / "labels" / "train" / "a_00_00.txt")] == [0, 0]
    assert [label[0] for label in _labels(data.parent / "labels" / "val" / "b_00_00.txt")] == [0]
