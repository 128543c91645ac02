"""What a new user meets first, through the real `yolo` command: no model, a typo, the data in use, `epochs=0`, the
files' permissions, the export log, the optimizer of a sparse run, and the default fine-tune length.
"""

from __future__ import annotations

import json
import os
import re
import stat

import pytest

from conftest import FAST, IMGSZ, run_python, run_yolo

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _plain(proc) -> str:
    """stdout and stderr of a finished command, without colour codes."""
    return ANSI.sub("", proc.stdout + proc.stderr)


def _one_error_line(proc) -> str:
    """Assert the command failed cleanly with exactly one stderr line and return it."""
    assert proc.returncode == 2, _plain(proc)
    assert "Traceback" not in _plain(proc), _plain(proc)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ERROR ❌ "), proc.stderr
    return lines[0]


@pytest.mark.parametrize("mode", ["prune", "sparse"])
def test_missing_model_is_one_line_and_nothing_is_downloaded(mode, tmp_path):
    proc = run_yolo(mode, "rate=0.5", "epochs=1", "data=data.yaml", cwd=tmp_path, check=False, timeout=300)
    line = _one_error_line(proc)
    assert "'model' is missing" in line and "never downloaded" in line
    out = _plain(proc)
    assert "yolov8n.pt" not in out and "Downloading" not in out and "curl" not in out
    assert not any(tmp_path.iterdir())  # no download, no run folder


def test_unknown_keys_get_one_line_each_with_suggestions(tmp_path):
    # with a model that would load, and without one: the typos are reported first in both cases
    for model in (["model=yolov8n.yaml"], []):
        proc = run_yolo("prune", *model, "ratee=0.5", "iterative_step=2", "epochs=0", cwd=tmp_path, check=False,
                        timeout=300)
        assert proc.returncode == 2 and "Traceback" not in _plain(proc), _plain(proc)
        lines = proc.stderr.strip().splitlines()
        assert lines == [
            "ERROR ❌ 'ratee' is not a valid YOLO argument. Similar arguments are i.e. ['rate=0.5', 'patience=100'].",
            "ERROR ❌ 'iterative_step' is not a valid YOLO argument. Similar arguments are i.e. ['iterative_steps=16'].",
        ], proc.stderr
        assert "Arguments received" not in proc.stdout  # no help text dumped after the lines
    sparse = run_yolo("sparse", "model=yolov8n.yaml", "data=x.yaml", "sr_fnal=0.001", cwd=tmp_path, check=False,
                      timeout=300)
    assert "'sr_fnal' is not a valid YOLO argument" in _one_error_line(sparse) and "sr_final" in sparse.stderr


def test_ultralytics_help_lists_the_plugin_modes(tmp_path):
    proc = run_yolo("help", cwd=tmp_path)
    mode_line = next(line for line in _plain(proc).splitlines() if "MODE (required) is one of" in line)
    assert "'prune'" in mode_line and "'sparse'" in mode_line and "'train'" in mode_line


@pytest.fixture(scope="module")
def rate_run(trained, tmp_path_factory):
    """`yolo prune` of the trained checkpoint, no data= given, epochs=0, 4 steps to rate 0.5, default max_map_drop."""
    cwd = tmp_path_factory.mktemp("first_hour")
    proc = run_yolo("prune", f"model={trained['best']}", "rate=0.5", "iterative_steps=4", "epochs=0",
                    f"imgsz={IMGSZ}", "batch=16", "workers=0", "name=rate", cwd=cwd)
    run_dir = cwd / "runs" / "detect" / "rate"
    return {"dir": run_dir, "out": _plain(proc), "report": json.loads((run_dir / "prune_report.json").read_text())}


def test_epochs_0_prunes_to_the_requested_rate(rate_run):
    """mAP without fine-tuning collapses; without an explicit max_map_drop it must not stop the run early."""
    report, out = rate_run["report"], rate_run["out"]
    assert [s["step"] for s in report["steps"]] == [1, 2, 3, 4] and report["kept_step"] == 4
    assert report["final"]["rate_requested"] == 0.5
    assert report["final"]["rate_reached"] == pytest.approx(0.5, abs=0.05)
    assert "max_map_drop is not applied" in out
    assert "plan: 4 step(s) × 0 epochs = 0 fine-tune epochs, on " in out and f"at imgsz={IMGSZ}" in out
    # the summary: the requested rate next to the reached one, and mAP as a change, never a ratio
    assert re.search(r"channels removed\s+0\.000\s+0\.\d{3}\s+rate=0\.5 requested", out), out
    map_row = next(line for line in out.splitlines() if line.startswith("box mAP50-95 "))
    assert "%" in map_row and "x" not in map_row.split()[-1], map_row
    assert out.count("all steps done; keeping step 4") == 1


def test_data_from_the_checkpoint_is_named(rate_run, dataset):
    assert f"data: {dataset} (from the checkpoint's training arguments)" in rate_run["out"]
    assert rate_run["report"]["baseline"]["map50_95"] is not None


def test_written_files_get_plain_open_permissions(rate_run):
    umask = os.umask(0)
    os.umask(umask)  # the child inherited this process's umask
    expected = 0o666 & ~umask
    run_dir = rate_run["dir"]
    files = ["prune_report.json", "prune_steps.csv", "prune_curve.png", "weights/pruned.pt", "weights/baseline.pt",
             "weights/step_1.pt", "weights/step_4.pt", "weights/pruned.onnx", "weights/baseline.onnx"]
    modes = {name: stat.S_IMODE((run_dir / name).stat().st_mode) for name in files}
    assert modes == {name: expected for name in files}


def test_export_log_names_only_final_paths(rate_run):
    out, weights = rate_run["out"], rate_run["dir"] / "weights"
    assert ".export-" not in out and "staging" not in out
    assert f"model={weights / 'pruned.onnx'}" in out  # Ultralytics' hints point at the file that stays


def test_recorded_dataset_that_is_missing_gets_the_missing_data_error(tmp_path):
    ckpt = tmp_path / "elsewhere.pt"
    run_python(
        "from ultralytics import YOLO\n"
        "from ultralytics_prune_plugin.engine.checkpoint import save_checkpoint\n"
        f"save_checkpoint(YOLO('yolov8n.yaml').model, {str(ckpt)!r}, "
        f"{{'task': 'detect', 'imgsz': {IMGSZ}, 'data': {str(tmp_path / 'gone' / 'data.yaml')!r}}})\n",
        cwd=tmp_path,
    )
    proc = run_yolo("prune", f"model={ckpt}", "epochs=1", f"imgsz={IMGSZ}", cwd=tmp_path, check=False, timeout=300)
    line = _one_error_line(proc)
    assert "'data' is missing" in line and "checkpoint's training arguments name" in line and "gone" in line


def test_sparse_run_with_optimizer_auto_uses_sgd(dataset, tmp_path):
    proc = run_yolo("sparse", "model=yolov8n.yaml", f"data={dataset}", "epochs=1", f"imgsz={IMGSZ}", "batch=16",
                    "workers=0", "plots=False", "val=False", *FAST, "name=sgd", cwd=tmp_path)
    out = _plain(proc)
    assert "sparsity: 'optimizer=auto' → SGD(lr0=0.01" in out
    assert "optimizer: SGD(lr=0.01" in out  # what Ultralytics built
    assert "adaptive optimizer" not in out
    code = (
        "import torch\n"
        f"ckpt = torch.load({str(tmp_path / 'runs' / 'detect' / 'sgd' / 'weights' / 'last.pt')!r}, weights_only=False)\n"
        "print(ckpt['train_args']['optimizer'], ckpt['train_args']['sparse'])\n"
    )
    assert run_python(code, cwd=tmp_path).stdout.split()[-2:] == ["SGD", "True"]


def test_default_fine_tune_length_is_a_share_of_the_input_training(trained):
    """No 'epochs': all fine-tunes together get 30 % of the input's 10 training epochs; an explicit value is kept."""
    from ultralytics import YOLO

    from ultralytics_prune_plugin.engine.prune_run import PruneRun

    default = PruneRun(YOLO(str(trained["best"])), {"rate": 0.5, "iterative_steps": 2})
    assert default.args.epochs == 2 and "30%" in default.config.epochs_note  # 3 epochs over 2 steps, rounded
    slim = PruneRun(YOLO(str(trained["best"])), {"method": "slim"})
    assert slim.args.epochs == 3
    seed = PruneRun(YOLO(str(trained["best"])), {"iterative_steps": 16, "epochs": 30})
    assert seed.args.epochs == 30 and seed.config.epochs_note is None
