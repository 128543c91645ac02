"""Tests of the synthetic shapes dataset generator."""

import hashlib
import json

import pytest
import yaml

from ultralytics_prune_plugin.data import make_dataset
from ultralytics_prune_plugin.data.synthetic import CLASS_NAMES, main

SMALL = {"n_train": 6, "n_val": 3, "imgsz": 64}


def _digests(root):
    """Map each image/label/manifest path (relative to root) to its SHA-256."""
    files = [p for p in root.rglob("*") if p.is_file() and p.name != "data.yaml"]
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in files
    }


@pytest.mark.parametrize("difficulty", ["easy", "hard"])
def test_same_arguments_give_identical_bytes(tmp_path, difficulty):
    a = make_dataset(tmp_path / "a", seed=3, difficulty=difficulty, **SMALL)
    b = make_dataset(tmp_path / "b", seed=3, difficulty=difficulty, **SMALL)
    da, db = _digests(a.parent), _digests(b.parent)
    assert len(da) == SMALL["n_train"] * 2 + SMALL["n_val"] * 2 + 1
    assert da == db
    ya, yb = yaml.safe_load(a.read_text()), yaml.safe_load(b.read_text())
    assert ya.pop("path") != yb.pop("path")
    assert ya == yb


def test_different_seed_changes_images(tmp_path):
    a = make_dataset(tmp_path / "a", seed=0, **SMALL)
    b = make_dataset(tmp_path / "b", seed=1, **SMALL)
    assert (
        _digests(a.parent)["images/train/train_00000.png"]
        != _digests(b.parent)["images/train/train_00000.png"]
    )


def test_val_split_does_not_depend_on_n_train(tmp_path):
    a = make_dataset(tmp_path / "a", n_train=2, n_val=3, imgsz=64)
    b = make_dataset(tmp_path / "b", n_train=5, n_val=3, imgsz=64)
    va = {k: v for k, v in _digests(a.parent).items() if "/val/" in k}
    vb = {k: v for k, v in _digests(b.parent).items() if "/val/" in k}
    assert va == vb


@pytest.mark.parametrize(
    "difficulty,n_classes,max_objects", [("easy", 3, 3), ("hard", 8, 6)]
)
def test_layout_yaml_and_labels_are_valid(tmp_path, difficulty, n_classes, max_objects):
    path = make_dataset(
        tmp_path / "ds",
        n_train=12,
        n_val=4,
        imgsz=96,
        n_classes=n_classes,
        difficulty=difficulty,
    )
    assert path == (tmp_path / "ds" / "data.yaml").resolve()
    data = yaml.safe_load(path.read_text())
    assert data["path"] == str(path.parent) and path.parent.is_absolute()
    assert data["train"] == "images/train" and data["val"] == "images/val"
    assert data["names"] == {i: CLASS_NAMES[i] for i in range(n_classes)}
    for split, count in (("train", 12), ("val", 4)):
        images = sorted((path.parent / "images" / split).glob("*.png"))
        labels = sorted((path.parent / "labels" / split).glob("*.txt"))
        assert len(images) == len(labels) == count
        assert [p.stem for p in images] == [p.stem for p in labels]
        for label in labels:
            rows = [line.split() for line in label.read_text().splitlines()]
            assert 1 <= len(rows) <= max_objects
            for row in rows:
                assert len(row) == 5
                cls, *box = int(row[0]), *map(float, row[1:])
                assert 0 <= cls < n_classes
                assert all(0.0 <= v <= 1.0 for v in box) and box[2] > 0 and box[3] > 0
                assert box[0] - box[2] / 2 >= 0 and box[0] + box[2] / 2 <= 1
                assert box[1] - box[3] / 2 >= 0 and box[1] + box[3] / 2 <= 1


@pytest.mark.parametrize(
    "kwargs,name",
    [
        ({"n_train": 0}, "n_train"),
        ({"n_val": 0}, "n_val"),
        ({"imgsz": 31}, "imgsz"),
        ({"imgsz": 1281}, "imgsz"),
        ({"imgsz": 64.0}, "imgsz"),
        ({"n_classes": 0}, "n_classes"),
        ({"n_classes": 9}, "n_classes"),
        ({"seed": -1}, "seed"),
        ({"difficulty": "medium"}, "difficulty"),
    ],
)
def test_invalid_arguments_raise_one_line_value_error(tmp_path, kwargs, name):
    with pytest.raises(ValueError) as info:
        make_dataset(tmp_path / "ds", **kwargs)
    message = str(info.value)
    assert message.startswith(name) and "\n" not in message
    assert not (tmp_path / "ds").exists()


def test_identical_arguments_reuse_dataset_without_rewriting(tmp_path):
    path = make_dataset(tmp_path / "ds", **SMALL)
    before = {p: p.stat().st_mtime_ns for p in path.parent.rglob("*")}
    assert make_dataset(tmp_path / "ds", **SMALL) == path
    assert {p: p.stat().st_mtime_ns for p in path.parent.rglob("*")} == before


def test_different_arguments_refuse_and_keep_files(tmp_path):
    path = make_dataset(tmp_path / "ds", **SMALL)
    before = _digests(path.parent)
    with pytest.raises(FileExistsError) as info:
        make_dataset(tmp_path / "ds", seed=1, **SMALL)
    assert str(path.parent) in str(info.value) and "\n" not in str(info.value)
    assert _digests(path.parent) == before
    assert json.loads((path.parent / "synthetic.json").read_text())["seed"] == 0


def test_refuses_foreign_dataset(tmp_path):
    root = tmp_path / "user"
    (root / "images" / "train").mkdir(parents=True)
    (root / "images" / "train" / "mine.jpg").write_bytes(b"user data")
    with pytest.raises(FileExistsError, match="user"):
        make_dataset(root, **SMALL)
    (root / "data.yaml").write_text("names: {0: cat}\n")
    with pytest.raises(FileExistsError):
        make_dataset(root, **SMALL)
    assert (root / "images" / "train" / "mine.jpg").read_bytes() == b"user data"
    assert sorted(p.name for p in root.rglob("*")) == [
        "data.yaml",
        "images",
        "mine.jpg",
        "train",
    ]


def test_ultralytics_accepts_yaml(tmp_path):
    from ultralytics.data.utils import check_det_dataset

    path = make_dataset(tmp_path / "ds", n_classes=5, **SMALL)
    data = check_det_dataset(str(path))
    assert data["nc"] == 5
    assert data["names"] == {i: CLASS_NAMES[i] for i in range(5)}
    assert data["train"] == str(path.parent / "images" / "train")
    assert data["val"] == str(path.parent / "images" / "val")


def test_cli_prints_yaml_path(tmp_path, capsys):
    root = tmp_path / "cli"
    assert (
        main(
            [
                "--root",
                str(root),
                "--n-train",
                "2",
                "--n-val",
                "1",
                "--imgsz",
                "48",
                "--difficulty",
                "hard",
            ]
        )
        == 0
    )
    assert capsys.readouterr().out.strip() == str(root.resolve() / "data.yaml")
    assert json.loads((root / "synthetic.json").read_text())["difficulty"] == "hard"


def test_cli_reports_bad_argument(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["--root", str(tmp_path / "cli"), "--imgsz", "8"])
    assert info.value.code == 2
    assert "imgsz must be an integer in [32, 1280]" in capsys.readouterr().err
