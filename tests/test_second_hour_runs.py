"""What a user meets in a second hour of `yolo prune` (issue 20), through the real `yolo` command.

* A run interrupted in step 2 and resumed the README's way, ``resume=runs/detect/<name>`` (relative), and with
  ``resume=True``: every per-step path the resumed run writes (``step_k/``, ``val/step_k_*``, ``weights/step_k*.pt``,
  the training batches' ``.batches/``, the report's paths) lies in the run's own folder, and nothing anywhere else.
* The arguments every fine-tune records (``step_k/args.yaml``, the step's checkpoint) and prints (Ultralytics'
  ``engine/trainer:`` dump) are the ones it ran with, and the run's own keys carry the run's values (``rate=0.3``,
  ``iterative_steps=2``), not the plugin's defaults; no other argument dump appears.
* A ``cfg=`` file written by `yolo copy-cfg` holds Ultralytics' ``epochs: 100``: `yolo prune` does not take it as each
  step's fine-tune length (only ``epochs=`` does) and says so in one warning line.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
from pathlib import Path

import pytest
import yaml

from conftest import FAST, IMGSZ, run_yolo
from test_resume import _interrupt

ANSI = re.compile(r"\x1b\[[0-9;]*m")
ARGS = ("rate=0.3", "iterative_steps=2", "epochs=1", f"imgsz={IMGSZ}", "batch=8", "workers=0", "plots=False", *FAST)
DUMP = "engine/trainer: "


def _plain(proc) -> str:
    """stdout and stderr of a finished command, without colour codes."""
    return ANSI.sub("", proc.stdout + proc.stderr)


def _report(run_dir: Path) -> dict:
    return json.loads((run_dir / "prune_report.json").read_text())


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny dataset, the run's arguments (rate=0.3 in 2 steps, 1-epoch fine-tunes), and a folder to run in."""
    from ultralytics_prune_plugin.data import make_dataset

    root = tmp_path_factory.mktemp("second_hour")
    data = make_dataset(root / "shapes", n_train=32, n_val=8, imgsz=IMGSZ, n_classes=2)
    work = root / "work"
    work.mkdir()
    return {"work": work, "data": data, "args": ("prune", "model=yolov8n.yaml", f"data={data}", *ARGS)}


def _check_resumed_in_place(run_dir: Path, cwd: Path) -> None:
    """Both steps of a resumed run were written in ``run_dir``, and every path it records (relative ones from the
    command's folder ``cwd``) points there."""
    run_dir = run_dir.resolve()
    report = _report(run_dir)
    assert [s["step"] for s in report["steps"]] == [1, 2] and "final" in report and report["resumed"]
    assert (cwd / report["save_dir"]).resolve() == run_dir
    for row in report["steps"]:
        assert (cwd / row["weights"]).resolve() == run_dir / "weights" / f"step_{row['step']}.pt"
    for k in (1, 2):
        step = run_dir / f"step_{k}"
        assert len((step / "results.csv").read_text().strip().splitlines()) == 1 + 1, f"step_{k}"
        assert (step / "weights" / "best.pt").is_file(), f"step_{k}"
        if k == 2:  # written by the resumed run (a copied folder's step_1/args.yaml names the original folder)
            args = yaml.safe_load((step / "args.yaml").read_text())
            assert (cwd / args["save_dir"]).resolve() == step and (cwd / args["project"]).resolve() == run_dir
        for path in (f"weights/step_{k}.pt", f"weights/step_{k}_pruned.pt"):
            assert (run_dir / path).is_file(), path
        for name in (f"step_{k}_pruned", f"step_{k}_recovered"):
            assert (run_dir / "val" / name).is_dir(), name
    assert not (run_dir / ".batches").exists()  # the training batches' folder is removed when the run ends


def test_resume_with_a_relative_path_or_true_writes_every_step_in_the_run_folder(setup):
    work = setup["work"] / "resumed"  # this test's own folder: nothing else writes there
    work.mkdir()
    run = _interrupt({**setup, "work": work}, "intr", signal.SIGKILL)  # stopped in step 2's fine-tune, step 1 done
    assert run["rc"] == -signal.SIGKILL
    copy = run["dir"].with_name("intr_copy")
    shutil.copytree(run["dir"], copy)
    run_yolo("prune", "resume=runs/detect/intr", cwd=work)  # the README's form
    run_yolo(*setup["args"], "name=intr_copy", "resume=True", cwd=work)
    for run_dir in (run["dir"], copy):
        _check_resumed_in_place(run_dir, work)
    # nothing of either run was written anywhere else (before the fix: runs/detect/runs/detect/intr/step_2, .batches)
    assert sorted(p.name for p in (work / "runs" / "detect").iterdir()) == ["intr", "intr_copy"]
    outside = [p for p in work.rglob("*") if p.name.startswith("step_") or p.name == ".batches"]
    outside = [p for p in outside if not any(d.resolve() in p.resolve().parents for d in (run["dir"], copy))]
    assert outside == []


def test_fine_tunes_record_and_print_the_arguments_they_ran_with(setup):
    proc = run_yolo(*setup["args"], "name=args", cwd=setup["work"])
    run_dir = setup["work"] / "runs" / "detect" / "args"
    out = _plain(proc)
    # a prune run may print Ultralytics' argument dump for every fine-tune or only once; each one printed is a
    # fine-tune's (no other run's dump, e.g. the training batches' loader), with what that fine-tune recorded
    dumps = [line[len(DUMP):] for line in out.splitlines() if line.startswith(DUMP)]
    assert dumps, out[-3000:]
    expected = {"rate": 0.3, "iterative_steps": 2, "method": "depgraph", "epochs": 1, "optimizer": "SGD",
                "warmup_epochs": 0, "nbs": 8, "close_mosaic": 1}
    for dump in dumps:
        printed = dict(item.split("=", 1) for item in dump.split(", ") if "=" in item)
        assert printed["name"] in ("step_1", "step_2"), dump
        assert {key: printed[key] for key in expected} == {key: str(v) for key, v in expected.items()}, dump
    for k in (1, 2):
        recorded = yaml.safe_load((run_dir / f"step_{k}" / "args.yaml").read_text())
        assert {key: recorded[key] for key in expected} == expected, f"step_{k}/args.yaml"
        # what it ran with: one epoch, and no warm-up (all parameter groups at one learning rate)
        rows = (run_dir / f"step_{k}" / "results.csv").read_text().strip().splitlines()
        assert len(rows) == 1 + 1
        row = dict(zip((c.strip() for c in rows[0].split(",")), (float(v) for v in rows[1].split(","))))
        assert row["lr/pg0"] == row["lr/pg1"] == row["lr/pg2"], row
    optimizers = re.findall(r"^optimizer: (\w+)\(lr=([\d.]+),", out, re.M)  # printed when the optimizer is built
    assert optimizers and set(optimizers) == {("SGD", "0.01")}, optimizers
    # the fine-tuned steps' checkpoints record the same training keys, and the run's values
    from ultralytics_prune_plugin.adapters import internals

    for k in (1, 2):
        recorded = internals().load_weights(run_dir / "weights" / f"step_{k}.pt")[1]["train_args"]
        assert {key: recorded[key] for key in expected} == expected, f"weights/step_{k}.pt"


def test_epochs_of_a_copy_cfg_file_is_not_each_steps_fine_tune_length(setup, tmp_path):
    work = setup["work"]
    run_yolo("copy-cfg", cwd=tmp_path)
    (cfg,) = tmp_path.glob("*_copy.yaml")
    assert yaml.safe_load(cfg.read_text())["epochs"] == 100  # Ultralytics' own value, for training from scratch
    common = (f"cfg={cfg}", f"imgsz={IMGSZ}", "batch=8", "workers=0", "plots=False", *FAST)

    def warnings(proc):
        return [line for line in _plain(proc).splitlines() if "'epochs=100'" in line]

    # no dataset anywhere: as without 'epochs', the run prunes only (before: "'data' is missing: 'epochs=100' ...")
    proc = run_yolo("prune", "model=yolov8n.yaml", "iterative_steps=2", "name=cfg_prune_only", *common, cwd=work)
    (line,) = warnings(proc)
    assert line.startswith(f"WARNING ⚠️ 'epochs=100' in cfg={cfg} is not used"), line
    assert "plan: 2 step(s) × 0 epochs" in _plain(proc)
    assert _report(work / "runs" / "detect" / "cfg_prune_only")["args"]["epochs"] == 0
    # with data: the default fine-tune length (30 % of the input's 1 training epoch, at least 1 a step), not 2 × 100
    run_yolo("detect", "train", "model=yolov8n.yaml", f"data={setup['data']}", "epochs=1", f"imgsz={IMGSZ}", "batch=8",
             "workers=0", "plots=False", *FAST, "name=one_epoch", cwd=work)
    best = work / "runs" / "detect" / "one_epoch" / "weights" / "best.pt"
    proc = run_yolo("prune", f"model={best}", f"data={setup['data']}", "iterative_steps=2", "name=cfg_data", *common,
                    cwd=work)
    assert len(warnings(proc)) == 1 and "plan: 2 step(s) × 1 epochs = 2 fine-tune epochs" in _plain(proc)
    assert _report(work / "runs" / "detect" / "cfg_data")["run_overrides"]["given"].get("epochs") is None
    # 'epochs=' itself wins, without a warning
    proc = run_yolo("prune", "model=yolov8n.yaml", "iterative_steps=2", "epochs=0", "name=cfg_given", *common, cwd=work)
    assert warnings(proc) == [] and "plan: 2 step(s) × 0 epochs" in _plain(proc)
