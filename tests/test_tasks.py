"""Every task (segment, pose, obb, classify) is pruned, fine-tuned and sparse-trained like detect.

Runs under each Ultralytics series: YOLOv8 task models everywhere, YOLO11 from 8.3 on, YOLO26 from 8.4 on (a model
the installed series does not ship is skipped). Models are built from yaml; data is generated
(:func:`~ultralytics_prune_plugin.data.make_dataset` with ``task=``). Covers the policy (which layers each head
protects), both pruners (head outputs unchanged, forward in eval and training mode, stock classes only), the
trainers (a pruned model keeps its structure through a 1-epoch fine-tune; sparse columns), the generated data
(Ultralytics' own dataset checks accept it), the task data checks' one-line errors, and ``validate_onnx`` on a
classification model.
"""

from __future__ import annotations

import csv
import pickle

import pytest
import torch
import torch.nn as nn
from ultralytics import YOLO
from ultralytics.nn.tasks import yaml_model_load

from conftest import ultralytics_series
from ultralytics_prune_plugin.config import PluginArgumentError
from ultralytics_prune_plugin.data import make_dataset
from ultralytics_prune_plugin.engine.checkpoint import save_checkpoint
from ultralytics_prune_plugin.engine.inputs import check_task_data
from ultralytics_prune_plugin.engine.trainer import prune_aware_trainers
from ultralytics_prune_plugin.pruning import depgraph, policy, slim
from ultralytics_prune_plugin.tasks import metric_keys, read_metrics

IMGSZ = 64
NC = 2
KPT_SHAPE = (4, 3)
TASK_OF = {"seg": "segment", "pose": "pose", "obb": "obb", "cls": "classify"}
SERIES = ultralytics_series()


def _shipped(name: str) -> bool:
    """Whether the installed Ultralytics ships the model yaml ``name``."""
    try:
        yaml_model_load(name)
    except FileNotFoundError:
        return False
    return True


def _models():
    """The task model yamls to test on this series: YOLOv8 on every series, YOLO11 and YOLO26 where shipped."""
    names = [f"yolov8n-{t}.yaml" for t in TASK_OF]
    if SERIES >= (8, 3):
        names += [f"yolo11n-{t}.yaml" for t in TASK_OF] + [f"yolo26n-{t}.yaml" for t in ("seg", "pose", "obb")]
    return [pytest.param(n, marks=pytest.mark.skipif(not _shipped(n), reason=f"{n} not shipped")) for n in names]


MODELS = _models()
# The fine-tune models: one family per series (YOLOv8 on 8.1/8.2, YOLO11 after), one per task.
FAMILY = "yolov8n" if SERIES < (8, 3) else "yolo11n"


# In process and cheap: every series checks the task heads of every family it ships (core).
pytestmark = [pytest.mark.usefixtures("single_thread"), pytest.mark.core]


def build(name: str, kpt_shape=None) -> nn.Module:
    """The network of a task model yaml (Ultralytics' model class of its task) with ``NC`` classes; a pose network
    predicts ``kpt_shape`` keypoints when given (else the yaml's 17 x 3)."""
    import ultralytics.nn.tasks as tasks

    short = name.split("-")[-1].split(".")[0]
    kind = {"seg": "SegmentationModel", "pose": "PoseModel", "obb": "OBBModel", "cls": "ClassificationModel"}[short]
    extra = {"data_kpt_shape": kpt_shape} if short == "pose" and kpt_shape else {}
    torch.manual_seed(0)
    return getattr(tasks, kind)(name, nc=NC, verbose=False, **extra)


def shapes(output):
    """The nested shapes of a model output (the neck features a YOLO26 head passes through are left out)."""
    if isinstance(output, torch.Tensor):
        return tuple(output.shape)
    if isinstance(output, dict):
        return {k: shapes(v) for k, v in output.items() if k != "feats"}
    if isinstance(output, (list, tuple)):
        return [shapes(v) for v in output]
    return type(output).__name__


def output_shapes(model: nn.Module):
    """Output shapes in eval mode and in training mode (which runs training-only branches) on a batch of 2."""
    x = torch.rand(2, 3, IMGSZ, IMGSZ)
    model.eval()
    with torch.no_grad():
        evaluated = shapes(model(x))
    model.train()
    with torch.no_grad():
        trained = shapes(model(x))
    model.eval()
    return evaluated, trained


def expected_outputs(head: nn.Module):
    """``{branch prefix: output width}`` of every output branch a head must keep, from Ultralytics' attributes."""
    name = type(head).__name__
    if name == "Classify":
        return {"linear": NC}
    reg_max = getattr(head, "reg_max", 16)
    out = {}
    ends = ("", "one2one_") if hasattr(head, "one2one_cv2") else ("",)
    for prefix in ends:
        for i in range(head.nl):
            out[f"{prefix}cv2.{i}."] = 4 * reg_max
            out[f"{prefix}cv3.{i}."] = NC
            if hasattr(head, "nm"):  # segment: mask coefficients
                out[f"{prefix}cv4.{i}."] = head.nm
            if hasattr(head, "ne"):  # obb: angle
                out[f"{prefix}cv4.{i}."] = head.ne
            if hasattr(head, "kpt_shape"):  # pose: keypoints (YOLO26: their own branch after cv4)
                kpts = f"{prefix}cv4_kpts.{i}" if hasattr(head, "cv4_kpts") else f"{prefix}cv4.{i}."
                out[kpts] = head.nk
    if hasattr(head, "proto"):
        out["proto.cv3."] = head.nm  # the mask prototypes
    if reg_max > 1:
        out["dfl."] = 1
    return out


@pytest.mark.parametrize("name", MODELS)
def test_policy_protects_each_output_branch(name):
    """Every head output branch has its last layer protected, with the output width; nothing else outside the head
    but attention projections is protected; a classifier's inner convolution prunes with the backbone."""
    model = build(name)
    (head,) = policy.heads(model)
    head_name = next(n for n, m in model.named_modules() if m is head)
    protected = {n: m for n, m in model.named_modules() if any(m is p for p in policy.ignored_layers(model))}
    widths = policy.protected_widths(model)
    for prefix, width in expected_outputs(head).items():
        hits = [n for n in protected if n.startswith(f"{head_name}.{prefix}")]
        assert len(hits) == 1, (prefix, hits)
        assert widths[hits[0]] == width, (prefix, widths[hits[0]], width)
    projections = {id(policy._projection(m)) for m in policy.opaque_modules(model)}
    outside = [n for n, m in protected.items() if not n.startswith(head_name + ".") and id(m) not in projections]
    assert outside == []
    if type(head).__name__ == "Classify":
        assert [n for n in protected if n.startswith(head_name + ".")] == [f"{head_name}.linear"]
        assert f"{head_name}.conv.conv" in dict(policy.prunable_convs(model))
    else:
        assert not [n for n, _ in policy.prunable_convs(model) if n.startswith(head_name + ".")]
    policy.check_supported(model)


def _prune(model, method: str) -> None:
    """Prune ``model`` at rate 0.5 in place with DepGraph or slim."""
    if method == "depgraph":
        depgraph.prune_once(model, IMGSZ, 0.5)
    else:
        slim.slim_prune(model, 0.5, imgsz=IMGSZ, verbose=False)


@pytest.mark.parametrize("method", ["depgraph", "slim"])
@pytest.mark.parametrize("name", MODELS)
def test_prune_keeps_head_outputs(name, method):
    """At rate 0.5 both pruners keep every head output's shape in eval and training mode, shrink the model, and
    leave only stock classes (the pickle never names the plugin)."""
    model = build(name)
    before = output_shapes(model)
    widths = policy.protected_widths(model)
    params = sum(p.numel() for p in model.parameters())
    _prune(model, method)
    assert output_shapes(model) == before
    assert policy.protected_widths(model) == widths
    assert sum(p.numel() for p in model.parameters()) < 0.8 * params
    assert b"ultralytics_prune_plugin" not in pickle.dumps(model)


@pytest.fixture(scope="module")
def task_data(tmp_path_factory):
    """Tiny generated datasets, one per task: ``{task: data path}``."""
    root = tmp_path_factory.mktemp("task_data")
    return {
        task: make_dataset(root / task, n_train=4, n_val=2, imgsz=IMGSZ, n_classes=NC, task=task)
        for task in ("detect", "segment", "pose", "obb", "classify")
    }


def test_generated_data_passes_ultralytics_checks(task_data, tmp_path):
    """Ultralytics' own dataset checks accept every task's data; labels have the task's format; reproducible."""
    from ultralytics.data.utils import check_cls_dataset, check_det_dataset

    for task, path in task_data.items():
        if task == "classify":
            checked = check_cls_dataset(str(path))
            assert checked["nc"] == NC and len(list((path / "train").rglob("*.png"))) == 4
            continue
        checked = check_det_dataset(str(path))
        assert checked["nc"] == NC
        files = sorted((path.parent / "labels" / "train").glob("*.txt"))
        lines = [line.split() for f in files for line in f.read_text().splitlines()]
        assert lines
        columns = {len(line) for line in lines}
        visibility = {i for i in range(8, 18, 3)} if task == "pose" else set()  # keypoint flags, not coordinates
        values = [float(v) for line in lines for i, v in enumerate(line[1:], 2) if i not in visibility]
        assert all(0.0 <= v <= 1.0 for v in values)
        if task == "detect":
            assert columns == {5}
        elif task == "obb":
            assert columns == {9}
        elif task == "pose":
            assert checked["kpt_shape"] == [4, 3] and checked["flip_idx"] == [0, 3, 2, 1]
            assert columns == {17} and {line[i - 1] for line in lines for i in visibility} == {"2"}
        else:
            assert all(c >= 7 and c % 2 == 1 for c in columns)
    again = make_dataset(tmp_path / "obb", n_train=4, n_val=2, imgsz=IMGSZ, n_classes=NC, task="obb")
    same = task_data["obb"].parent
    for label in (same / "labels" / "train").glob("*.txt"):
        assert (again.parent / "labels" / "train" / label.name).read_bytes() == label.read_bytes()
    assert "task" not in (task_data["detect"].parent / "synthetic.json").read_text()


def test_task_data_checks(task_data):
    """Each task accepts its own data; data of another task is refused with one line that says why."""
    pose = build(f"{FAMILY}-pose.yaml", KPT_SHAPE)
    for task, path in task_data.items():
        if task != "detect":
            check_task_data(task, path, model=pose if task == "pose" else None)
    wrong = {
        ("pose", "detect"): "kpt_shape",
        ("classify", "detect"): "image folder",
        ("segment", "classify"): "data YAML",
        ("obb", "detect"): "not obb labels",
        ("segment", "detect"): "not segment labels",
        ("obb", "segment"): "not obb labels",
    }
    for (task, data_task), words in wrong.items():
        with pytest.raises(PluginArgumentError) as e:
            check_task_data(task, task_data[data_task])
        assert words in str(e.value) and "\n" not in str(e.value), str(e.value)
    with pytest.raises(PluginArgumentError, match=r"kpt_shape \[4, 3\] but the model predicts \[17, 3\]"):
        check_task_data("pose", task_data["pose"], model=type(pose)(f"{FAMILY}-pose.yaml", verbose=False))


@pytest.fixture(scope="module")
def fine_tuned(task_data, tmp_path_factory):
    """Per task: a model pruned by DepGraph at 0.5, saved, then fine-tuned 1 epoch by ``YOLO(pruned.pt).train``
    (the segment run with ``sparse=True``). ``{task: (pruned params, trainer, results folder)}``."""
    work = tmp_path_factory.mktemp("fine_tune")
    runs = {}
    for short, task in TASK_OF.items():
        net = build(f"{FAMILY}-{short}.yaml", KPT_SHAPE)  # the generated pose data's keypoints
        depgraph.prune_once(net, IMGSZ, 0.5)
        params = sum(p.numel() for p in net.parameters())
        weights = save_checkpoint(net, work / f"{task}.pt", {"task": task, "imgsz": IMGSZ})
        yolo = YOLO(str(weights), task=task)
        yolo.train(
            data=str(task_data[task]), epochs=1, imgsz=IMGSZ, batch=4, workers=0, plots=False, deterministic=False,
            project=str(work), name=task, exist_ok=True, sparse=task == "segment", sr=0.01, amp=False, verbose=False,
        )
        runs[task] = (params, yolo.trainer, yolo.trainer.save_dir)
    return runs


def test_trainers_keep_pruned_structure(fine_tuned):
    """Each task's plugin trainer trains the pruned network as it is: same parameter count in training and in the
    saved checkpoint."""
    from ultralytics_prune_plugin.adapters import internals

    for task, (params, trainer, save_dir) in fine_tuned.items():
        assert type(trainer) is prune_aware_trainers()[task]
        assert sum(p.numel() for p in trainer.model.parameters()) == params, task
        saved, _ = internals().load_weights(save_dir / "weights" / "last.pt")
        assert sum(p.numel() for p in saved.parameters()) == params, task


def test_sparse_training_adds_columns_for_segment(fine_tuned):
    """Sparse training of a segmentation model writes its sparsity columns next to the mask metrics."""
    _, _, save_dir = fine_tuned["segment"]
    with open(save_dir / "results.csv", newline="") as f:
        row = {k.strip(): v for k, v in next(csv.DictReader(f)).items()}
    assert {"sparsity/gamma_lt_1e-2", "sparsity/sr", *metric_keys("segment")} <= set(row)
    assert float(row["sparsity/sr"]) == pytest.approx(0.01)


def test_validate_onnx_classify(fine_tuned, task_data, tmp_path):
    """A fine-tuned pruned classifier exports to ONNX and validates in ONNX Runtime with its accuracy metrics."""
    from ultralytics_prune_plugin.deploy.onnx import export_onnx, validate_onnx

    _, trainer, save_dir = fine_tuned["classify"]
    onnx_file = export_onnx(save_dir / "weights" / "last.pt", IMGSZ, out=tmp_path / "cls.onnx")
    result = validate_onnx(
        onnx_file, task_data["classify"], IMGSZ, task="classify", project=str(tmp_path), name="val", plots=False
    )
    assert result["provider"] == "CPUExecutionProvider"
    assert result["metric_names"] == ("top-5 accuracy", "top-1 accuracy")
    assert 0.0 <= result["map50_95"] <= result["map50"] <= 1.0
    assert read_metrics("classify", trainer.metrics) == {
        "map50": pytest.approx(trainer.metrics["metrics/accuracy_top5"]),
        "map50_95": pytest.approx(trainer.metrics["metrics/accuracy_top1"]),
    }


@pytest.mark.skipif(not _shipped("yolo26n-pose.yaml"), reason="yolo26n-pose.yaml not shipped")
@pytest.mark.parametrize("method", ["depgraph", "slim"])
def test_pose26_other_keypoint_shape(method, task_data, tmp_path):
    """A YOLO26 pose model predicting the generated data's 4 x 3 keypoints (not the yaml's 17 x 3) prunes with both
    pruners (Torch-Pruning's shape inference used to fail on Pose26's keypoint decode): the one-to-one branches
    shrink their inputs with the neck like the one-to-many ones, every output keeps its shape in eval and training
    mode, and the pruned model predicts and fine-tunes one epoch with its structure."""
    model = build("yolo26n-pose.yaml", KPT_SHAPE)
    before = output_shapes(model)
    params = sum(p.numel() for p in model.parameters())
    _prune(model, method)
    assert output_shapes(model) == before
    (head,) = policy.heads(model)
    for branch in ("cv2", "cv3", "cv4"):
        widths = [next(m for m in getattr(head, prefix + branch)[i].modules() if isinstance(m, nn.Conv2d)).in_channels
                  for prefix in ("", "one2one_") for i in range(head.nl)]
        assert widths[: head.nl] == widths[head.nl :], (branch, widths)
    pruned = sum(p.numel() for p in model.parameters())
    assert pruned < 0.8 * params
    weights = save_checkpoint(model, tmp_path / "pruned.pt", {"task": "pose", "imgsz": IMGSZ})
    yolo = YOLO(str(weights), task="pose")
    (result, *_) = yolo.predict(torch.rand(1, 3, IMGSZ, IMGSZ), imgsz=IMGSZ, verbose=False)
    assert tuple(result.keypoints.data.shape[1:]) == KPT_SHAPE
    yolo.train(
        data=str(task_data["pose"]), epochs=1, imgsz=IMGSZ, batch=4, workers=0, plots=False, deterministic=False,
        project=str(tmp_path), name="tune", exist_ok=True, amp=False, verbose=False, val=False,
    )
    assert sum(p.numel() for p in yolo.trainer.model.parameters()) == pruned
