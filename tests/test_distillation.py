"""Distillation in training runs and in `yolo prune`'s fine-tunes: ``distill``, ``teacher``, ``distill_weight``.

The loss itself is checked on synthetic head outputs of every layout, each read by the series adapter that meets it
(8.1-8.3 per-level maps, 8.4 dicts, end-to-end branches, YOLO26's reg_max=1 boxes, classifier logits), and on a real
model; how each adapter adds the term to its series' loss and loss items is checked on synthetic losses; the training runs are tiny (64 px, 16
images, 1 epoch) and check that ``kd_loss`` is optimised and reported, that the teacher never reaches the student's
parameters or checkpoints, and that resume, a fresh-process rebuild and `yolo prune` distill.
"""

from __future__ import annotations

import csv
import math
import os
import pickle
from copy import deepcopy
from pathlib import Path

import pytest
import torch

from conftest import FAST, randomize_batchnorms, run_python, run_yolo, ultralytics_series
from ultralytics_prune_plugin.adapters import ultralytics_8_1_8_2, ultralytics_8_3_8_4
from ultralytics_prune_plugin.distill.criterion import KD_NAME, DistillationCriterion
from ultralytics_prune_plugin.distill.losses import distillation_loss
from ultralytics_prune_plugin.distill.outputs import HeadOutputs, head_outputs
from ultralytics_prune_plugin.distill.teacher import load_teacher, probe_outputs

IMGSZ = 64
COMMON = dict(epochs=1, imgsz=IMGSZ, batch=8, workers=0, plots=False, deterministic=False, amp=False, verbose=False)
SERIES = ultralytics_series()
FAMILY = "yolo11n" if SERIES >= (8, 3) else "yolov8n"  # the newest family of the installed series
SUFFIX = {"detect": "", "segment": "-seg", "classify": "-cls"}

pytestmark = pytest.mark.usefixtures("single_thread")
# What each rank of Ultralytics' multi-GPU launcher runs: the trainer class rebuilt from its arguments.
REBUILD = """
from ultralytics.utils import DEFAULT_CFG_DICT
from {module} import {name}

cfg = DEFAULT_CFG_DICT.copy()
cfg.update(save_dir="")
{name}(cfg=cfg, overrides={args}).train()
"""


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("distill")


def _data(work: Path, task: str):
    from ultralytics_prune_plugin.data import make_dataset

    return make_dataset(work / f"data_{task}", n_train=16, n_val=8, imgsz=IMGSZ, n_classes=2, task=task)  # reused


@pytest.fixture(scope="module")
def data(work):
    return _data(work, "detect")


def make_teacher(cfg: str, task: str, path: Path) -> Path:
    """A 2-class model of ``cfg`` with distinct BatchNorm statistics, saved as a checkpoint: a teacher whose outputs
    differ from any student's."""
    from ultralytics.nn import tasks

    from ultralytics_prune_plugin.engine.checkpoint import save_checkpoint

    classes = {"detect": tasks.DetectionModel, "segment": tasks.SegmentationModel,
               "classify": tasks.ClassificationModel}
    net = randomize_batchnorms(classes[task](cfg, nc=2, verbose=False))
    return save_checkpoint(net, path, {"task": task, "imgsz": IMGSZ})


@pytest.fixture(scope="module")
def teacher(work):
    return make_teacher("yolov8n.yaml", "detect", work / "teacher.pt")


def _train(work: Path, cfg: str, task: str, data, name: str, **overrides):
    """Train ``cfg`` in-process with the plugin's trainer; return the YOLO object."""
    from ultralytics import YOLO

    yolo = YOLO(cfg, task=task)
    yolo.train(data=str(data), project=str(work / "runs"), name=name, exist_ok=True, **{**COMMON, **overrides})
    return yolo


def _rows(save_dir: Path) -> list:
    with open(Path(save_dir) / "results.csv", newline="") as f:
        return [{k.strip(): v.strip() for k, v in row.items()} for row in csv.DictReader(f)]


# The loss -------------------------------------------------------------------------------------------------------------
def _head_output(layout: str, seed: int, batch: int = 2, nc: int = 3):
    """Synthetic training-mode head outputs of one layout, random with ``seed``."""
    g = torch.Generator().manual_seed(seed)
    reg_max = 1 if layout == "reg_max_1" else 16
    levels = [torch.randn(batch, 4 * reg_max + nc, s, s, generator=g) for s in (4, 2)]
    if layout == "classify":
        return torch.randn(batch, nc, generator=g)
    if layout == "levels":  # 8.1-8.3 Detect
        return levels
    if layout == "segment_tuple":  # 8.1-8.3 Segment: (levels, mask coefficients, protos)
        return levels, torch.randn(batch, 32, 20, generator=g), torch.randn(batch, 32, 8, 8, generator=g)
    if layout == "end2end_levels":  # 8.2-8.3 YOLOv10
        return {"one2many": levels, "one2one": [x * 0.5 for x in levels]}
    flat = torch.cat([x.flatten(2) for x in levels], 2)
    branch = {"boxes": flat[:, : 4 * reg_max], "scores": flat[:, 4 * reg_max:], "feats": levels}
    if layout in ("dict", "reg_max_1"):  # 8.4
        return branch
    if layout == "end2end":  # 8.4 YOLO26
        return {"one2many": branch, "one2one": {k: v * 0.5 for k, v in branch.items() if k != "feats"}}
    raise ValueError(layout)


A12, A34 = ultralytics_8_1_8_2, ultralytics_8_3_8_4
# Each layout with the adapters of the series whose heads return it; a classifier's logits (every series) are read by
# head_outputs itself (adapter None).
LAYOUTS = [
    *[(adapter, layout) for adapter in (A12, A34) for layout in ("levels", "segment_tuple", "end2end_levels")],
    *[(A34, layout) for layout in ("dict", "end2end", "reg_max_1")],
    (None, "classify"),
]


def _outputs(adapter, preds, nc: int = 3) -> HeadOutputs:
    """``head_outputs`` as it reads ``preds`` on a series of ``adapter`` (the installed series reads only its own)."""
    if adapter is None:
        return head_outputs(preds, nc)
    return HeadOutputs(branches=adapter.head_branches(preds, nc))


@pytest.mark.parametrize("adapter, layout", LAYOUTS, ids=[f"{getattr(a, '__name__', 'any').split('.')[-1]}-{l}"
                                                          for a, l in LAYOUTS])
def test_kd_is_zero_for_identical_outputs_and_positive_otherwise(adapter, layout):
    same = distillation_loss(_outputs(adapter, _head_output(layout, 0)), _outputs(adapter, _head_output(layout, 0)))
    other = distillation_loss(_outputs(adapter, _head_output(layout, 0)), _outputs(adapter, _head_output(layout, 1)))
    assert same.dtype == torch.float32 and abs(float(same)) < 1e-6
    assert float(other) > 1e-3 and math.isfinite(float(other))
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the criterion runs under AMP's autocast: KD stays float32
        amp = distillation_loss(_outputs(adapter, _head_output(layout, 0)), _outputs(adapter, _head_output(layout, 1)))
    assert amp.dtype == torch.float32 and float(amp) == pytest.approx(float(other), rel=1e-5)


def test_layouts_give_the_same_loss():
    """8.1-8.3's per-level maps and 8.4's dict hold the same numbers: the loss is the same."""
    a, b = (_outputs(A12, _head_output("levels", s)) for s in (0, 1))
    c, d = (_outputs(A34, _head_output("dict", s)) for s in (0, 1))
    assert float(distillation_loss(a, b)) == pytest.approx(float(distillation_loss(c, d)), rel=1e-6)


def test_an_adapter_reads_only_its_series_layouts():
    """8.4's dict is no head output of 8.1/8.2; unknown layouts are refused, per-level maps need ``nc``."""
    with pytest.raises(TypeError, match="unknown head output layout"):
        A12.head_branches(_head_output("dict", 0), 3)
    for adapter in (A12, A34):
        with pytest.raises(TypeError, match="unknown head output layout"):
            adapter.head_branches(torch.zeros(2, 3, 4), 3)
        with pytest.raises(TypeError, match="number of classes"):
            adapter.head_branches(_head_output("levels", 0), None)


def test_kd_term_joins_each_series_loss_format():
    """8.1/8.2: a scalar loss, tensor items (0-d for classifiers); 8.3/8.4 also a loss vector and 8.4's dict items.
    The loss takes the term times the scale, the items the term itself; the trainer's names follow the items."""
    term = torch.tensor(0.5)
    for adapter in (A12, A34):
        loss, items = adapter.add_loss_term(torch.tensor(2.0), torch.tensor(0.7), KD_NAME, term, 1)
        assert float(loss) == 2.5 and items.tolist() == pytest.approx([0.7, 0.5])
        loss, items = adapter.add_loss_term(torch.tensor(2.0), torch.tensor([1.0, 2.0]), KD_NAME, term, 4)
        assert float(loss) == 4.0 and items.tolist() == [1.0, 2.0, 0.5]
        assert adapter.named_loss_items(["box", KD_NAME], items[1:]) == [("box", 2.0), (KD_NAME, 0.5)]
    loss, items = A34.add_loss_term(torch.tensor([1.0, 2.0, 3.0]), {"box": torch.tensor(1.0)}, KD_NAME, term, 2)
    assert loss.tolist() == [1.0, 2.0, 3.0, 1.0] and list(items) == ["box", KD_NAME] and float(items[KD_NAME]) == 0.5
    assert A34.named_loss_items([], items) == list(items.items())


@pytest.mark.parametrize("adapter, names, expected", [
    (A12, ["Loss"], ["Loss", KD_NAME]),  # 8.1/8.2 name the items up front
    (A34, ("box_loss", "cls_loss"), ("box_loss", "cls_loss", KD_NAME)),  # 8.3 too
    (A34, (), ()),  # 8.4 names them after the first batch's loss dict, which carries kd_loss itself
])
def test_the_trainer_learns_the_kd_name_as_its_series_names_items(adapter, names, expected):
    class Trainer:
        loss_names = names

    trainer = Trainer()
    for _ in range(2):  # once only
        adapter.add_loss_name(trainer, KD_NAME)
    assert trainer.loss_names == expected and type(trainer.loss_names) is type(names)


def test_teacher_is_frozen_and_gradients_reach_the_student_only(teacher):
    from ultralytics.nn.tasks import DetectionModel

    model = load_teacher(str(teacher))
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    stats = [bn.running_mean.clone() for bn in bns]
    assert model.training and not any(bn.training for bn in bns)  # training-mode outputs, frozen statistics
    assert not any(p.requires_grad for p in model.parameters())
    student = DetectionModel("yolov8n.yaml", nc=2, verbose=False).train()
    images = torch.rand(2, 3, IMGSZ, IMGSZ)
    with torch.no_grad():
        taught = head_outputs(model(images), 2)
    assert float(distillation_loss(head_outputs(model(images), 2), taught)) == 0.0  # the teacher agrees with itself
    loss = distillation_loss(head_outputs(student(images), 2), taught)
    assert float(loss.detach()) > 0
    loss.backward()
    assert all(p.grad is None for p in model.parameters())
    assert sum(float(p.grad.abs().sum()) for p in student.parameters() if p.grad is not None) > 0
    assert all(torch.equal(bn.running_mean, s) for bn, s in zip(bns, stats))  # the teacher's statistics never change


# Training runs --------------------------------------------------------------------------------------------------------
def test_training_run_optimises_and_reports_kd_loss(work, data, teacher):
    from ultralytics_prune_plugin.adapters import internals

    trainer = _train(work, "yolov8n.yaml", "detect", data, "live", teacher=str(teacher)).trainer
    row = _rows(trainer.save_dir)[0]
    assert float(row[f"train/{KD_NAME}"]) > 0 and f"val/{KD_NAME}" not in row
    assert float(row["val/box_loss"]) > 0  # the validator's plain loss still works
    wrapper, student = trainer.distillation, internals().unwrap_model(trainer.model)
    assert isinstance(wrapper, DistillationCriterion) and student.criterion is wrapper
    # the teacher is in none of the student's parameters, its EMA, copies or checkpoints
    teacher_ids = {id(p) for p in wrapper.teacher.parameters()}
    assert not teacher_ids & {id(p) for p in student.parameters()}
    assert not isinstance(getattr(trainer.ema.ema, "criterion", None), DistillationCriterion)
    assert type(deepcopy(wrapper)) is type(wrapper.criterion)
    assert type(pickle.loads(pickle.dumps(wrapper))) is type(wrapper.criterion)
    for name in ("last.pt", "best.pt"):
        assert b"ultralytics_prune_plugin.distill" not in (trainer.save_dir / "weights" / name).read_bytes()


def test_interrupted_run_resumes_distilling(work, data, teacher):
    """Stopped after epoch 1 and resumed: the arguments come back from last.pt, the resumed trainer distills again.
    A relative ``teacher`` is saved as an absolute path."""
    from ultralytics import YOLO

    from ultralytics_prune_plugin.adapters import internals

    class Interrupt(Exception):
        pass

    def stop(trainer):
        raise Interrupt

    first = YOLO("yolov8n.yaml")
    first.add_callback("on_model_save", stop)
    with pytest.raises(Interrupt):
        first.train(data=str(data), project=str(work / "runs"), name="resume", exist_ok=True,
                    **{**COMMON, "epochs": 2, "teacher": os.path.relpath(teacher)})
    last = first.trainer.save_dir / "weights" / "last.pt"
    args = internals().load_weights(last)[1]["train_args"]
    assert args["teacher"] == str(teacher.resolve()) and args["distill"] is True
    resumed = YOLO(str(last))
    resumed.train(resume=True)
    assert resumed.trainer.start_epoch == 1 and resumed.trainer.distillation is not None
    rows = _rows(resumed.trainer.save_dir)
    assert len(rows) == 2 and all(float(r[f"train/{KD_NAME}"]) > 0 for r in rows)


def test_fresh_process_rebuild_distills(tmp_path, data, teacher):
    """A trainer rebuilt in a fresh process from its class path and arguments alone, as Ultralytics' multi-GPU
    launcher does in every rank (8.1-8.3 write both into a script; 8.4 pickles the class and ``vars(args)``),
    distills from the ``teacher`` the arguments carry."""
    from ultralytics import YOLO

    trainer_class = YOLO("yolov8n.yaml").task_map["detect"]["trainer"]
    assert trainer_class.__module__ == "ultralytics_prune_plugin.engine.trainer"  # importable from the plugin
    overrides = dict(model="yolov8n.yaml", data=str(data), teacher=str(teacher), project=str(tmp_path / "runs"),
                     name="f", **COMMON)
    args = vars(trainer_class(overrides=overrides).args)
    assert args["teacher"] == str(teacher) and args["distill"] is True
    code = REBUILD.format(module=trainer_class.__module__, name=trainer_class.__name__, args=repr(args))
    proc = run_python(code, cwd=tmp_path)
    assert f"distillation: teacher {teacher}" in proc.stdout + proc.stderr
    assert float(_rows(Path(args["save_dir"]))[0][f"train/{KD_NAME}"]) > 0


@pytest.mark.parametrize("task", ["segment", "classify"])
def test_each_task_distills(work, task):
    cfg = f"{FAMILY}{SUFFIX[task]}.yaml"
    teacher = make_teacher(cfg, task, work / f"teacher_{task}.pt")
    trainer = _train(work, cfg, task, _data(work, task), f"task_{task}", teacher=str(teacher)).trainer
    kd = float(_rows(trainer.save_dir)[0][f"train/{KD_NAME}"])
    assert math.isfinite(kd) and kd > 0


@pytest.mark.skipif(SERIES < (8, 4), reason="YOLO26 is a family of Ultralytics 8.4")
def test_yolo26_end_to_end_head_distills(work, data):
    """Both branches of YOLO26's end-to-end head, boxes without DFL (reg_max=1)."""
    from ultralytics_prune_plugin.adapters import internals

    teacher = make_teacher("yolo26n.yaml", "detect", work / "teacher26.pt")
    trainer = _train(work, "yolo26n.yaml", "detect", data, "yolo26", teacher=str(teacher)).trainer
    kd = float(_rows(trainer.save_dir)[0][f"train/{KD_NAME}"])
    assert math.isfinite(kd) and kd > 0
    outputs = probe_outputs(internals().unwrap_model(trainer.model), 2)
    assert len(outputs.branches) == 2 and outputs.branches[0][0].shape[1] == 4


# yolo prune -----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("distill", [True, False])
def test_prune_fine_tunes_distill_by_default(work, data, distill):
    from ultralytics_prune_plugin.adapters import internals

    name = f"prune_distill_{distill}"
    proc = run_yolo("prune", "model=yolov8n.yaml", f"data={data}", "rate=0.3", "iterative_steps=1", "epochs=1",
                    f"imgsz={IMGSZ}", "batch=8", "workers=0", "plots=False", *FAST, f"name={name}",
                    *(() if distill else ("distill=False",)), cwd=work)
    run_dir = work / "runs" / "detect" / name
    rows = _rows(run_dir / "step_1")
    assert [int(float(row["epoch"])) for row in rows] == [1]  # epochs=1
    out = proc.stdout + proc.stderr
    if distill:  # the unpruned input, saved as the run's baseline, teaches the fine-tune
        baseline = str((run_dir / "weights" / "baseline.pt").resolve())
        assert f"distillation: teacher {baseline}" in out
        kd = float(rows[0][f"train/{KD_NAME}"])  # the pruned student differs from its teacher: a loss above zero
        assert math.isfinite(kd) and kd > 0, kd
        # the fine-tune's checkpoints carry the teacher: `yolo train resume` of an interrupted fine-tune distills too
        args = internals().load_weights(run_dir / "step_1" / "weights" / "last.pt")[1]["train_args"]
        assert args["teacher"] == baseline and args["distill"] is True
    else:
        assert not any(KD_NAME in column for column in rows[0]) and "distillation:" not in out
    # fine-tune defaults for a pruned model: one optimizer step per batch, no warm-up, no mosaic; a given key wins
    args = internals().load_weights(run_dir / "step_1" / "weights" / "last.pt")[1]["train_args"]
    assert args["nbs"] == 8 and args["warmup_epochs"] == 0 and args["close_mosaic"] == 1
    assert args["optimizer"] == "SGD" and args["lr0"] == 0.01
    assert "fine-tunes: close_mosaic=1, warmup_epochs=0, optimizer=SGD, nbs=8" in out


def test_fine_tune_keys_given_win(work, data):
    run_yolo("prune", "model=yolov8n.yaml", f"data={data}", "rate=0.3", "iterative_steps=1", "epochs=1", "nbs=64",
             "warmup_epochs=1", "optimizer=AdamW", "lr0=0.002", f"imgsz={IMGSZ}", "batch=8", "workers=0",
             "plots=False", *FAST, "name=given", "distill=False", cwd=work)
    from ultralytics_prune_plugin.adapters import internals

    last = work / "runs" / "detect" / "given" / "step_1" / "weights" / "last.pt"
    args = internals().load_weights(last)[1]["train_args"]
    assert args["nbs"] == 64 and args["warmup_epochs"] == 1 and args["close_mosaic"] == 1
    assert args["optimizer"] == "AdamW" and args["lr0"] == 0.002


def test_bad_teacher_is_one_line(work, data, teacher, tmp_path):
    """A missing teacher, and one with other classes than the model (the 80-class yaml), stop `yolo prune` at once."""
    for value, words in ((tmp_path / "missing.pt", "does not exist"), (teacher, "with 2 classes")):
        proc = run_yolo("prune", "model=yolov8n.yaml", f"data={data}", "epochs=1", f"imgsz={IMGSZ}",
                        f"teacher={value}", cwd=tmp_path, check=False)
        err = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and "Traceback" not in proc.stdout + proc.stderr, proc.stderr
        assert len(err) == 1 and f"'teacher={value}'" in err[0] and words in err[0], proc.stderr
    assert not (tmp_path / "runs").exists()  # refused before anything was written
