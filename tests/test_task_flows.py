"""Segment, pose, obb and classify through the real `yolo` CLI, on whichever Ultralytics series is installed.

YOLOv8 models on 8.1/8.2, YOLO11 models from 8.3 on. Each task's model is trained for one epoch on generated data of
its task, then: DepGraph prune with a one-epoch fine-tune (the report and summary name the task's own metric, the
ONNX Runtime check agrees with PyTorch, the fine-tune kept the structure), slim prune without fine-tune, sparse
training, and `yolo val` / `yolo export` of the pruned model. A killed fine-tune of a pruned segmentation model
resumes (`yolo train resume`) with its pruned structure. From 8.4 on, a YOLO26 pose model (the generated data's
4 x 3 keypoints) prunes with a one-epoch fine-tune and validates with `yolo val`.
"""

from __future__ import annotations

import json

import pytest

from conftest import FAST, YOLO, kill_between_epoch_saves, run_python, run_yolo, ultralytics_series
from run_checks import (
    assert_onnx_matches_pytorch,
    assert_run_checkpoints_load_safely,
    assert_sparsity_rows_match,
    safe_load_param_counts,
    ultralytics_has_safe_load,
    val_all_rows,
    val_counts,
    val_metric,
    val_split_counts,
)

IMGSZ = 64
COMMON = (f"imgsz={IMGSZ}", "batch=8", "workers=0", "plots=False", *FAST)
# task -> (model suffix, main metric name in the report)
TASKS = {
    "segment": ("-seg", "mask mAP50-95"),
    "pose": ("-pose", "pose mAP50-95"),
    "obb": ("-obb", "OBB mAP50-95"),
    "classify": ("-cls", "top-1 accuracy"),
}


def _family() -> str:
    return "yolo11n" if ultralytics_series() >= (8, 3) else "yolov8n"


@pytest.fixture(scope="module", params=list(TASKS))
def task_model(request, tmp_path_factory):
    """One task: its generated data and a model trained for one epoch by `yolo <task> train`."""
    from ultralytics_prune_plugin.data import make_dataset

    task = request.param
    root = tmp_path_factory.mktemp(task)
    data = make_dataset(root / "data", n_train=16, n_val=8, imgsz=IMGSZ, n_classes=2, task=task)
    model = f"{_family()}{TASKS[task][0]}.yaml"
    run_yolo(task, "train", f"model={model}", f"data={data}", "epochs=1", *COMMON, "name=base", cwd=root)
    best = root / "runs" / task / "base" / "weights" / "best.pt"
    assert best.is_file()
    return {"task": task, "root": root, "data": data, "best": best}


def _params(checkpoint) -> int:
    return _param_counts(checkpoint)[0]


def _param_counts(*checkpoints) -> list:
    """Parameter count of each checkpoint's model, all loaded in one fresh process through Ultralytics."""
    code = (
        "from ultralytics import YOLO\n"
        f"for c in {[str(c) for c in checkpoints]!r}:\n"
        "    print(sum(p.numel() for p in YOLO(c).model.parameters()))\n"
    )
    return [int(n) for n in run_python(code, cwd=checkpoints[0].parent).stdout.strip().splitlines()[-len(checkpoints):]]


def test_depgraph_prune_finetune_val_export(task_model):
    task, root, data = task_model["task"], task_model["root"], task_model["data"]
    proc = run_yolo("prune", f"model={task_model['best']}", f"data={data}", "rate=0.5", "iterative_steps=1",
                    "epochs=1", *COMMON, "name=dg", cwd=root)
    run_dir = root / "runs" / task / "dg"  # runs/<task>/, as Ultralytics files the task's runs
    report = json.loads((run_dir / "prune_report.json").read_text())
    assert report["metrics"]["map50_95"] == TASKS[task][1]
    assert TASKS[task][1] in proc.stdout + proc.stderr  # the summary names the task's metric
    assert report["final"]["macs"] < 0.8 * report["baseline"]["macs"]
    assert report["onnx"]["onnx_agrees"] is True
    pruned = run_dir / "weights" / "pruned.pt"
    assert _params(run_dir / "step_1" / "weights" / "best.pt") == _params(pruned) == report["final"]["params"]
    assert_run_checkpoints_load_safely(run_dir, report["final"]["params"], IMGSZ)  # without pickle code or the plugin
    # `yolo val` gives the task's metric that the run reported for pruned.pt (validated there at the same batch), on
    # every image and object of the val split (the one-epoch models score near zero)
    val = run_yolo("val", f"model={pruned}", f"data={data}", f"imgsz={IMGSZ}", "batch=8", "workers=0", cwd=root)
    assert val_metric(val.stdout + val.stderr, task) == pytest.approx(report["final"]["map50_95"], rel=0.01, abs=5e-4)
    if task != "classify":  # classify prints top-1 and top-5 only
        assert val_counts(val.stdout + val.stderr) == val_split_counts(data)
    run_yolo("export", f"model={pruned}", "format=onnx", f"imgsz={IMGSZ}", cwd=root)
    assert_onnx_matches_pytorch(pruned, pruned.with_suffix(".onnx"), IMGSZ)


def test_slim_prune_and_sparse_training(task_model):
    task, root, data = task_model["task"], task_model["root"], task_model["data"]
    run_yolo("sparse", f"model={task_model['best']}", f"data={data}", "epochs=1", *COMMON, "name=sparse", cwd=root)
    assert_sparsity_rows_match(root / "runs" / task / "sparse", epochs=1, sr=0.01)  # the default sr
    if ultralytics_has_safe_load():  # the sparse-trained checkpoint loads with restricted loading, without the plugin
        counts = safe_load_param_counts(task_model["best"], root / "runs" / task / "sparse" / "weights" / "last.pt",
                                        imgsz=IMGSZ)
        assert counts[1] == counts[0], counts
    run_yolo("prune", f"model={task_model['best']}", f"data={data}", "method=slim", "rate=0.5", "epochs=0",
             *COMMON, "name=slim", cwd=root)
    report = json.loads((root / "runs" / task / "slim" / "prune_report.json").read_text())
    assert report["final"]["macs"] < report["baseline"]["macs"]


@pytest.mark.parametrize("task_model", ["segment"], indirect=True)
def test_interrupted_fine_tune_of_a_pruned_task_model_resumes_pruned(task_model):
    """`yolo train resume` of a killed fine-tune of a pruned segmentation model rebuilds the pruned network (not the
    yaml's unpruned one) and trains on to the last epoch."""
    task, root, data = task_model["task"], task_model["root"], task_model["data"]
    run_yolo("prune", f"model={task_model['best']}", "rate=0.5", "iterative_steps=1", "epochs=0", f"imgsz={IMGSZ}",
             "name=for_resume", cwd=root)
    pruned = root / "runs" / task / "for_resume" / "weights" / "pruned.pt"
    run_dir = root / "runs" / task / "ft"
    epochs = 6  # each epoch takes a few tenths of a second: room to kill the run between two saves
    args = [YOLO, task, "train", f"model={pruned}", f"data={data}", f"epochs={epochs}", *COMMON, "name=ft"]
    last, log = run_dir / "weights" / "last.pt", root / "ft.log"
    kill_between_epoch_saves(args, root, last, log)
    done = len((run_dir / "results.csv").read_text().strip().splitlines()) - 1
    assert 1 <= done < epochs
    run_yolo("train", "resume", f"model={last}", cwd=root)
    last_row = (run_dir / "results.csv").read_text().strip().splitlines()[-1]
    assert int(float(last_row.split(",")[0])) == epochs  # the resumed run went on to the last epoch
    assert "seg_loss" in (run_dir / "results.csv").read_text().splitlines()[0]  # still a segmentation run
    counts = _param_counts(pruned, run_dir / "weights" / "last.pt", run_dir / "weights" / "best.pt")
    assert counts[1:] == counts[:1] * 2, counts


@pytest.mark.skipif(ultralytics_series() < (8, 4), reason="YOLO26 ships from Ultralytics 8.4 on")
def test_yolo26_pose_prune_finetune_val(tmp_path):
    """A YOLO26 pose model trained one epoch on generated data (4 x 3 keypoints, not the yaml's 17 x 3) prunes with
    a one-epoch fine-tune through `yolo prune`, and the pruned checkpoint validates with `yolo val`."""
    from ultralytics_prune_plugin.data import make_dataset

    data = make_dataset(tmp_path / "data", n_train=16, n_val=8, imgsz=IMGSZ, n_classes=2, task="pose")
    run_yolo("pose", "train", "model=yolo26n-pose.yaml", f"data={data}", "epochs=1", *COMMON, "name=base",
             cwd=tmp_path)
    best = tmp_path / "runs" / "pose" / "base" / "weights" / "best.pt"
    run_yolo("prune", f"model={best}", f"data={data}", "rate=0.5", "iterative_steps=1", "epochs=1", *COMMON,
             "name=p26", cwd=tmp_path)
    run_dir = tmp_path / "runs" / "pose" / "p26"
    report = json.loads((run_dir / "prune_report.json").read_text())
    assert report["metrics"]["map50_95"] == TASKS["pose"][1]
    assert report["final"]["macs"] < 0.8 * report["baseline"]["macs"]
    assert report["onnx"]["onnx_agrees"] is True
    pruned = run_dir / "weights" / "pruned.pt"
    assert _param_counts(run_dir / "step_1" / "weights" / "best.pt", pruned) == [report["final"]["params"]] * 2
    proc = run_yolo("val", f"model={pruned}", f"data={data}", f"imgsz={IMGSZ}", "batch=8", "workers=0", cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert "Pose(P" in out and len(val_all_rows(out)[-1]) == 2 + 2 * 4  # images, instances, Box(4) and Pose(4)
    assert val_metric(out, "pose") == pytest.approx(report["final"]["map50_95"], rel=0.01, abs=5e-4)
    assert val_counts(out) == val_split_counts(data)
