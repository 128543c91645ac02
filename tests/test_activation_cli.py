"""The plugin activates in the stock `yolo` command and in plain Python, fixes 8.1.47 on today's stack, checks its
keys with one-line errors, and switches off with one environment variable."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import ultralytics

from conftest import IMGSZ, run_python, run_yolo, ultralytics_series
from run_checks import assert_onnx_matches_pytorch, val_counts, val_metric, val_split_counts

DISABLE = {"ULTRALYTICS_PRUNE_PLUGIN_DISABLE": "1"}
# One patch per shape of Ultralytics' __init__.py: a tuple of names at the end (8.1, 8.2), lazy imports and a
# __main__ block (8.3, 8.4).
PATCH = Path(__file__).resolve().parents[1] / "patches" / (
    "ultralytics-8.1.x-8.2.x-activate-prune-plugin.patch"
    if ultralytics_series() < (8, 3)
    else "ultralytics-8.3.x-8.4.x-activate-prune-plugin.patch"
)


def test_training_runs_to_the_end_with_final_validation(trained):
    """Stock 8.1.47 crashes in final_eval (torch.load) and in mAP (np.trapz) here; with the plugin it finishes."""
    out = trained["stdout"]
    assert "Optimizer stripped from" in out and "Validating" in out
    assert trained["best"].exists() and (trained["dir"] / "results.csv").exists()
    lines = (trained["dir"] / "results.csv").read_text().strip().splitlines()
    assert len(lines) == 1 + 10
    assert "Traceback" not in out


def test_trained_model_learned_something(trained):
    """The final mAP must be above zero, or np.trapz (mAP integration) was never exercised."""
    last = (trained["dir"] / "results.csv").read_text().strip().splitlines()[-1].split(",")
    header = [h.strip() for h in (trained["dir"] / "results.csv").read_text().splitlines()[0].split(",")]
    map50 = float(last[header.index("metrics/mAP50(B)")])
    assert map50 > 0.05


def test_val_predict_export_on_best(trained, dataset, workdir):
    """`yolo val` of best.pt gives the mAP that the training's final validation of best.pt printed (same batch of
    16, rect), and the ONNX file `yolo export` writes computes what the checkpoint computes in PyTorch."""
    best = trained["best"]
    val = run_yolo("val", f"model={best}", f"data={dataset}", f"imgsz={IMGSZ}", "workers=0", cwd=workdir)
    final_eval = val_metric(trained["stdout"])  # the last "all" row of training: best.pt's final validation
    assert val_counts(val.stdout + val.stderr) == val_split_counts(dataset)  # every image and object of the split
    assert val_metric(val.stdout + val.stderr) == pytest.approx(final_eval, rel=0.01, abs=5e-4)
    assert final_eval > 0.05  # two zeros would agree on anything
    run_yolo("predict", f"model={best}", f"source={Path(dataset).parent / 'images' / 'val'}", f"imgsz={IMGSZ}", cwd=workdir)
    exp = run_yolo("export", f"model={best}", "format=onnx", f"imgsz={IMGSZ}", cwd=workdir)
    assert "export success" in exp.stdout + exp.stderr
    assert_onnx_matches_pytorch(best, best.with_suffix(".onnx"), IMGSZ)


# The checks are the plugin's own, the same on every series; the older series run one of each kind (a range, a type,
# a choice), to show that their CLI reaches them and prints one line.
@pytest.mark.parametrize(
    "arg, words",
    [
        pytest.param("rate=1.5", ["'rate=1.5'", "0 < rate < 1"], marks=pytest.mark.core),
        ("rate=0", ["'rate=0'", "0 < rate < 1"]),
        ("rate=abc", ["'rate=abc'", "0 < rate < 1"]),
        ("iterative_steps=0", ["'iterative_steps=0'", ">= 1"]),
        pytest.param("iterative_steps=2.5", ["'iterative_steps=2.5'", "integer"], marks=pytest.mark.core),
        ("max_map_drop=-0.1", ["'max_map_drop=-0.1'", ">= 0"]),
        pytest.param("method=magic", ["'method=magic'", "'depgraph'", "'slim'"], marks=pytest.mark.core),
        ("round_to=0", ["'round_to=0'", ">= 1"]),
        ("sr=-1", ["'sr=-1'", ">= 0"]),
    ],
)
def test_bad_plugin_value_is_one_line_error(arg, words, workdir):
    proc = run_yolo("prune", "model=yolov8n.yaml", "epochs=0", arg, cwd=workdir, check=False)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stdout + proc.stderr
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1, proc.stderr
    assert all(w in err[0] for w in words), err[0]


def test_bad_plugin_value_in_train_is_one_line_error(workdir, dataset):
    proc = run_yolo("train", "model=yolov8n.yaml", f"data={dataset}", "sparse=maybe", cwd=workdir, check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == ["ERROR ❌ 'sparse=maybe' is not valid: 'sparse' must be True or False."]


def test_unknown_key_gets_one_line_with_ultralytics_suggestions(workdir):
    proc = run_yolo("prune", "model=yolov8n.yaml", "ratee=0.5", cwd=workdir, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stdout + proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert "'ratee' is not a valid YOLO argument" in line and "Similar arguments are i.e. ['rate=0.5'" in line


def test_cfg_file_with_plugin_keys(workdir, tmp_path):
    """The seed's form `yolo prune model=... cfg=... key=...`: the file's keys apply, the command line's win."""
    good = tmp_path / "good.yaml"
    good.write_text("rate: 0.3\niterative_steps: 3\nepochs: 0\nimgsz: 64\nname: from_cfg\n")
    run_yolo("prune", "model=yolov8n.yaml", f"cfg={good}", "iterative_steps=1", cwd=tmp_path)
    report = (tmp_path / "runs" / "detect" / "from_cfg" / "prune_report.json").read_text()
    assert '"rate": 0.3' in report and '"iterative_steps": 1' in report and '"model": "yolov8n.yaml"' in report
    bad = tmp_path / "bad.yaml"
    bad.write_text("rate: 2\n")
    proc = run_yolo("prune", "model=yolov8n.yaml", f"cfg={bad}", cwd=tmp_path, check=False)
    assert proc.returncode != 0 and proc.stderr.strip().splitlines()[-1].startswith("ERROR ❌ 'rate=2")


@pytest.mark.core
def test_help_and_cfg_show_plugin_keys(workdir):
    helped = run_yolo("help", cwd=workdir)
    text = helped.stdout + helped.stderr
    assert "yolo prune" in text and "max_map_drop=0.2" in text and "sparsity rate" in text
    cfg = run_yolo("cfg", cwd=workdir)
    text = cfg.stdout + cfg.stderr
    assert "iterative_steps: 16 # (int)" in text and "lr0: 0.01" in text


@pytest.mark.core
def test_active_in_fresh_python_without_import(workdir):
    code = (
        "import sys; import ultralytics.cfg as c; "
        "print('prune' in c.MODES, 'ultralytics_prune_plugin' in sys.modules)"
    )
    assert run_python(code, cwd=workdir).stdout.split() == ["True", "True"]


def test_processes_without_ultralytics_pay_nothing(workdir):
    code = "import sys; print(sorted(m for m in sys.modules if m.startswith(('ultralytics', 'torch'))))"
    assert run_python(code, cwd=workdir).stdout.strip() == "[]"


def test_explicit_import_is_idempotent(workdir):
    code = (
        "import ultralytics_prune_plugin as p, ultralytics.cfg as c; p.activate(); p.activate(); "
        "import ultralytics.engine.model as m; print(p.is_active(), hasattr(m.Model, 'prune'), "
        "c.CLI_HELP_MSG.count('ultralytics-prune-plugin adds'))"
    )
    assert run_python(code, cwd=workdir).stdout.split() == ["True", "True", "1"]


@pytest.mark.core
def test_environment_variable_switches_it_off(workdir):
    code = "import ultralytics_prune_plugin as p, ultralytics.cfg as c; print(p.is_active(), 'prune' in c.MODES)"
    assert run_python(code, cwd=workdir, env=DISABLE).stdout.split() == ["False", "False"]
    proc = run_yolo("prune", "model=yolov8n.yaml", cwd=workdir, env=DISABLE, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "prune" in out and "is not a valid YOLO argument" in out


@pytest.mark.core
def test_untested_ultralytics_version_changes_nothing():
    from ultralytics_prune_plugin.adapters import adapter_for

    assert adapter_for(ultralytics.__version__) is not None
    assert all(adapter_for(v) is not None for v in ("8.1.0", "8.2.103", "8.3.253", "8.4.190"))
    assert adapter_for("8.5.0") is None and adapter_for("8.0.200") is None and adapter_for("9.0.0") is None


@pytest.mark.core
def test_fork_patch_applies_to_installed_ultralytics(tmp_path):
    """patches/ holds the route for forks: it must apply cleanly to the installed Ultralytics sources."""
    source = Path(ultralytics.__file__).parent
    copy = tmp_path / "ultralytics"
    copy.mkdir()
    shutil.copy(source / "__init__.py", copy / "__init__.py")
    proc = subprocess.run(["patch", "-p1", "-i", str(PATCH)], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    patched = (copy / "__init__.py").read_text()
    assert "import ultralytics_prune_plugin" in patched
    compile(patched, "__init__.py", "exec")
