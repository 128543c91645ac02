"""Bad input to the real `yolo prune` / `yolo sparse` commands: one table row per case.

Every row must fail fast with exactly one line on stderr that names the argument and what is allowed, exit non-zero,
print no traceback, and leave no run folder that looks like a success. A few rows (``SUBPROCESS_ROWS``, one per kind
of check: a checkpoint, a number, data folders, a resume folder, the sparse mode) run the installed `yolo` console
script in a fresh process; the others call the same entrypoint, Ultralytics' ``ultralytics.cfg.entrypoint`` as the
plugin wraps it, in this process with the same command line, which saves a process start (seconds) per row. Two inputs that look extreme are valid and
tested below the table: a rate so high that layers would vanish (clamped and reported), and an already pruned model
(pruned further; the report starts from its current size).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from conftest import FAST, run_python, run_yolo

IMGSZ = 64
BASE = {"model": "yolov8n.yaml", "epochs": 0, "imgsz": IMGSZ}  # each row overrides some of these

# (id, mode, overrides, words that the one stderr line must contain). '{name}' is replaced by a file of `bad_files`.
CASES = [
    ("model-missing", "prune", {"model": "{dir}/nothere.pt"}, ["'model=", "nothere.pt", "does not exist"]),
    ("model-yaml-missing", "prune", {"model": "nothere.yaml"}, ["'model=nothere.yaml'", "does not exist"]),
    ("model-text-as-pt", "prune", {"model": "{text_pt}"}, ["'model=", "not a PyTorch checkpoint"]),
    ("model-text-file", "prune", {"model": "{notes_txt}"}, ["'model=", "must be a .pt checkpoint or a model .yaml"]),
    ("model-truncated-pt", "prune", {"model": "{truncated_pt}"}, ["'model=", "truncated"]),
    ("model-state-dict-pt", "prune", {"model": "{state_dict_pt}"}, ["'model=", "bare state_dict"]),
    ("model-unsupported-layers", "prune", {"model": "rtdetr-l.yaml"}, ["'model=rtdetr-l.yaml'", "has a HGStem layer"]),
    ("segment-model-detection-data", "prune", {"model": "{segment_pt}", "data": "{data}"}, ["'data=", "not segment labels"]),
    ("classify-model-data-yaml", "prune", {"model": "yolov8n-cls.yaml", "data": "{data}"}, ["'data=", "needs an image folder"]),
    ("pose-model-no-kpt-shape", "prune", {"model": "yolov8n-pose.yaml", "data": "{data}"}, ["'data=", "no 'kpt_shape'"]),
    ("detect-model-classify-folder", "prune", {"data": "{dir}"}, ["'data=", "classification data"]),
    ("fast-dfl-not-bool", "prune", {"fast_dfl": "maybe"}, ["'fast_dfl=maybe'", "True or False"]),
    ("rate-zero", "prune", {"rate": "0"}, ["'rate=0'", "0 < rate < 1"]),
    ("rate-negative", "prune", {"rate": "-0.5"}, ["'rate=-0.5'", "0 < rate < 1"]),
    ("rate-one", "prune", {"rate": "1"}, ["'rate=1'", "0 < rate < 1"]),
    ("rate-above-one", "prune", {"rate": "1.5"}, ["'rate=1.5'", "0 < rate < 1"]),
    ("rate-not-a-number", "prune", {"rate": "abc"}, ["'rate=abc'", "0 < rate < 1"]),
    ("steps-zero", "prune", {"iterative_steps": "0"}, ["'iterative_steps=0'", "integer >= 1"]),
    ("steps-negative", "prune", {"iterative_steps": "-2"}, ["'iterative_steps=-2'", "integer >= 1"]),
    ("steps-fraction", "prune", {"iterative_steps": "1.5"}, ["'iterative_steps=1.5'", "integer >= 1"]),
    ("steps-not-a-number", "prune", {"iterative_steps": "abc"}, ["'iterative_steps=abc'", "integer >= 1"]),
    ("max-map-drop-negative", "prune", {"max_map_drop": "-0.1"}, ["'max_map_drop=-0.1'", ">= 0"]),
    ("sr-negative-prune", "prune", {"sr": "-1"}, ["'sr=-1'", ">= 0"]),
    ("sr-negative-sparse", "sparse", {"sr": "-1", "data": "{data}", "epochs": 1}, ["'sr=-1'", ">= 0"]),
    ("method-unknown", "prune", {"method": "magic"}, ["'method=magic'", "'depgraph'", "'slim'"]),
    ("round-to-zero", "prune", {"round_to": "0"}, ["'round_to=0'", ">= 1"]),
    ("round-to-not-a-number", "prune", {"round_to": "abc"}, ["'round_to=abc'", ">= 1", "'auto'"]),
    ("target-macs-above-one", "prune", {"target_macs": "2.3"}, ["'target_macs=2.3'", "0 < target_macs < 1", "target_gmacs"]),
    ("target-gmacs-zero", "prune", {"target_gmacs": "0"}, ["'target_gmacs=0'", "> 0"]),
    ("both-targets", "prune", {"target_macs": "0.5", "target_gmacs": "2"}, ["'target_macs=0.5'", "'target_gmacs=2.0'", "give one"]),
    ("importance-unknown", "prune", {"importance": "magic"}, ["'importance=magic'", "'l2'", "'taylor'", "'random'"]),
    ("taylor-without-data", "prune", {"importance": "taylor"}, ["'importance=taylor'", "'data"]),
    ("max-layer-rate-one", "prune", {"max_layer_rate": "1"}, ["'max_layer_rate=1'", "0 < max_layer_rate < 1"]),
    ("global-pruning-not-bool", "prune", {"global_pruning": "maybe"}, ["'global_pruning=maybe'", "True or False"]),
    ("allocation-unknown", "prune", {"allocation": "fastest"}, ["'allocation=fastest'", "'uniform'", "'latency'"]),
    ("layer-rates-not-a-dict", "prune", {"layer_rates": "0.5"}, ["'layer_rates=0.5'", "dict of layer index"]),
    ("layer-rates-rate-one", "prune", {"layer_rates": "{{2:1.0}}"}, ["'layer_rates=", "0 <= rate < 1"]),
    ("layer-rates-no-such-layer", "prune", {"layer_rates": "{{99:0.5}}"}, ["'layer_rates' names layer 99", "layers 0-22"]),
    ("ignore-layers-not-ints", "prune", {"ignore_layers": "[a]"}, ["'ignore_layers=[a]'", "list of layer indices"]),
    ("ignore-layers-no-such-layer", "prune", {"ignore_layers": "[40]"}, ["'ignore_layers' names layer 40"]),
    ("teacher-missing", "prune", {"teacher": "{dir}/nothere.pt", "data": "{data}", "epochs": 1}, ["'teacher=", "nothere.pt"]),
    ("distill-weight-negative", "prune", {"distill_weight": "-1"}, ["'distill_weight=-1'", ">= 0"]),
    ("epochs-without-data", "prune", {"epochs": 1}, ["'data' is missing", "epochs=1"]),
    ("data-file-missing", "prune", {"data": "{dir}/nothere.yaml", "epochs": 1}, ["'data=", "does not exist"]),
    ("data-broken-yaml", "prune", {"data": "{broken_yaml}", "epochs": 1}, ["'data=", "not valid YAML"]),
    ("data-no-train-key", "prune", {"data": "{no_train_yaml}", "epochs": 1}, ["'data=", "'train:' key missing"]),
    ("data-missing-folders", "prune", {"data": "{missing_yaml}", "epochs": 1}, ["'data=", "images not found"]),
    ("data-missing-train-folder", "prune", {"data": "{missing_train_yaml}", "epochs": 1}, ["'data=", "training images are missing"]),
    ("data-missing-folders-no-epochs", "prune", {"data": "{missing_yaml}"}, ["'data=", "images not found"]),
    ("sparse-without-data", "sparse", {"epochs": 1}, ["'data' is missing"]),
    ("sparse-missing-folders", "sparse", {"data": "{missing_yaml}", "epochs": 1}, ["'data=", "images not found"]),
    ("sparse-segment-model", "sparse", {"model": "yolov8n-seg.yaml", "data": "{data}", "epochs": 1}, ["'data=", "not segment labels"]),
    ("resume-not-a-folder", "prune", {"resume": "{dir}/nothere"}, ["'resume=", "is not a folder"]),
    ("resume-not-a-prune-run", "prune", {"resume": "{dir}"}, ["'resume=", "no prune_report.json"]),
]


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    """Files for the table: broken checkpoints, a segmentation checkpoint, broken and incomplete data YAMLs."""
    from ultralytics_prune_plugin.data import make_dataset

    root = tmp_path_factory.mktemp("bad_inputs")
    data = make_dataset(root / "shapes", n_train=8, n_val=4, imgsz=IMGSZ, n_classes=2)
    files = {"dir": root, "data": data}
    files["text_pt"] = root / "text.pt"
    files["text_pt"].write_text("not a checkpoint\n")
    files["notes_txt"] = root / "notes.txt"
    files["notes_txt"].write_text("not a model\n")
    files["state_dict_pt"], files["segment_pt"], files["truncated_pt"] = (
        root / "state_dict.pt", root / "segment.pt", root / "truncated.pt"
    )
    run_python(
        "import torch\n"
        "from ultralytics import YOLO\n"
        "from ultralytics_prune_plugin.engine.checkpoint import save_checkpoint\n"
        "det = YOLO('yolov8n.yaml').model\n"
        f"torch.save(det.state_dict(), {str(files['state_dict_pt'])!r})\n"
        f"save_checkpoint(det, {str(root / 'good.pt')!r}, {{'task': 'detect', 'imgsz': {IMGSZ}}})\n"
        f"save_checkpoint(YOLO('yolov8n-seg.yaml').model, {str(files['segment_pt'])!r}, {{'task': 'segment'}})\n",
        cwd=root,
    )
    good = (root / "good.pt").read_bytes()
    files["truncated_pt"].write_bytes(good[: len(good) // 2])
    shapes = Path(data).parent
    yamls = {
        "broken_yaml": f"path: {shapes}\ntrain: images/train\nval: [images/val\nnames: {{0: square\n",
        "no_train_yaml": f"path: {shapes}\nval: images/val\nnames: {{0: square, 1: disc}}\n",
        "missing_yaml": f"path: {root / 'nowhere'}\ntrain: images/train\nval: images/val\nnames: {{0: square, 1: disc}}\n",
        "missing_train_yaml": f"path: {shapes}\ntrain: images/nothere\nval: images/val\nnames: {{0: square, 1: disc}}\n",
    }
    for key, text in yamls.items():
        files[key] = root / f"{key}.yaml"
        files[key].write_text(text)
    return files


def _looks_like_success(cwd: Path) -> list:
    """Prune reports with a final result, or result checkpoints, anywhere under ``cwd``."""
    found = [p for p in cwd.rglob("prune_report.json") if "final" in json.loads(p.read_text())]
    return found + list(cwd.rglob("pruned.pt")) + list(cwd.rglob("best.pt"))


SUBPROCESS_ROWS = {"model-truncated-pt", "rate-not-a-number", "data-missing-folders", "resume-not-a-prune-run",
                   "sparse-missing-folders"}


def _yolo_in_process(argv: list, cwd: Path, capfd, monkeypatch):
    """Run ``yolo <argv>`` through the entrypoint the console script calls, in this process; (exit code, out, err).

    An exception other than SystemExit propagates and fails the test, as a traceback would in the console."""
    import ultralytics.cfg as cfg

    monkeypatch.chdir(cwd)
    monkeypatch.setattr(cfg, "ARGV", ["yolo", *argv])
    capfd.readouterr()
    with pytest.raises(SystemExit) as stop:
        cfg.entrypoint()
    out, err = capfd.readouterr()
    return stop.value.code, out, err


@pytest.mark.parametrize("row, mode, overrides, words", CASES, ids=[c[0] for c in CASES])
def test_bad_input_fails_with_one_line(row, mode, overrides, words, bad_files, tmp_path, capfd, monkeypatch):
    args = {**BASE, **{k: str(v).format(**bad_files) for k, v in overrides.items()}}
    argv = [mode, *(f"{k}={v}" for k, v in args.items()), *FAST, "workers=0"]
    if row in SUBPROCESS_ROWS:
        proc = run_yolo(*argv, cwd=tmp_path, check=False, timeout=300)
        code, out, err_text = proc.returncode, proc.stdout, proc.stderr
    else:
        code, out, err_text = _yolo_in_process(argv, tmp_path, capfd, monkeypatch)
    assert code not in (0, None), out + err_text
    assert "Traceback" not in out + err_text, out + err_text
    err = err_text.strip().splitlines()
    assert len(err) == 1, err_text
    assert err[0].startswith("ERROR ❌ "), err[0]
    assert all(w in err[0] for w in words), err[0]
    assert not _looks_like_success(tmp_path)


def _sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _report(run_dir: Path) -> dict:
    return json.loads((run_dir / "prune_report.json").read_text())


def _prunable_widths(checkpoint: Path) -> dict:
    """Output channels of every prunable convolution of a checkpoint's model, by name, with its C2f blocks unsplit
    (each half counted on its own, as pruning plans them)."""
    from ultralytics_prune_plugin.nn.c2f_v2 import unsplit_blocks
    from ultralytics_prune_plugin.pruning.policy import prunable_convs

    from run_checks import checkpoint_model

    model = checkpoint_model(checkpoint)
    unsplit_blocks(model)
    return {name: conv.out_channels for name, conv in prunable_convs(model)}


def test_rate_that_would_empty_layers_is_clamped_and_reported(tmp_path):
    """rate=0.99: DepGraph keeps round_to (8) channels where the plan leaves none, slim keeps min_channels; both say
    so."""
    dg = run_yolo("prune", "model=yolov8n.yaml", "rate=0.99", "iterative_steps=1", "epochs=0", f"imgsz={IMGSZ}",
                  "name=dg", cwd=tmp_path)
    rep = _report(tmp_path / "runs" / "detect" / "dg")
    assert "final" in rep
    assert "clamped" in dg.stdout and "Traceback" not in dg.stdout + dg.stderr
    # the widths reached: rate=0.99 plans under half of round_to's 8 channels for every layer of yolov8n (at most
    # 256 x 0.01 = 2.6), so every prunable convolution of pruned.pt keeps exactly 8 (all start with 16 or more)
    base = _prunable_widths(tmp_path / "runs" / "detect" / "dg" / "weights" / "baseline.pt")
    reached = _prunable_widths(tmp_path / "runs" / "detect" / "dg" / "weights" / "pruned.pt")
    assert reached.keys() == base.keys() and min(base.values()) >= 16
    assert {name: width for name, width in reached.items() if width != 8} == {}
    assert rep["steps"][0]["clamped_layers"] == len(base)  # the report counts the layers held at the minimum
    slim = run_yolo("prune", "model=yolov8n.yaml", "method=slim", "rate=0.99", "epochs=0", f"imgsz={IMGSZ}",
                    "name=slim", cwd=tmp_path)
    rep = _report(tmp_path / "runs" / "detect" / "slim")
    assert "final" in rep and rep["slim"]["clamped"] and rep["slim"]["applied_rate"] < 0.99
    assert "rate=0.99 would empty layers" in slim.stdout and "Traceback" not in slim.stdout + slim.stderr
    rows = (tmp_path / "runs" / "detect" / "slim" / "slim_layers.csv").read_text().splitlines()[1:]
    assert rows and all(int(r.split(",")[2]) >= min(8, int(r.split(",")[1])) for r in rows)
    # the widths reached: no prunable convolution of slim's pruned.pt below min_channels (8), yet it was pruned
    reached = _prunable_widths(tmp_path / "runs" / "detect" / "slim" / "weights" / "pruned.pt")
    assert reached.keys() == base.keys() and min(reached.values()) >= 8, reached
    assert sum(reached.values()) < 0.5 * sum(base.values())


def test_pruning_a_pruned_model_prunes_further(tmp_path):
    """The second run starts from the pruned size (its baseline) and removes 30% more of each group."""
    run_yolo("prune", "model=yolov8n.yaml", "rate=0.3", "iterative_steps=1", "epochs=0", f"imgsz={IMGSZ}",
             "name=first", cwd=tmp_path)
    first = _report(tmp_path / "runs" / "detect" / "first")
    pruned = tmp_path / "runs" / "detect" / "first" / "weights" / "pruned.pt"
    before = _sha(pruned)
    run_yolo("prune", f"model={pruned}", "rate=0.3", "iterative_steps=1", "epochs=0", f"imgsz={IMGSZ}",
             "name=second", cwd=tmp_path)
    second = _report(tmp_path / "runs" / "detect" / "second")
    assert second["baseline"]["params"] == first["final"]["params"]
    assert second["baseline"]["macs"] == first["final"]["macs"]
    assert second["baseline"]["channels_kept"] == 1.0
    assert second["final"]["params"] < second["baseline"]["params"]
    assert 0.6 < second["steps"][0]["channels_kept"] < 0.8
    assert _sha(pruned) == before  # the input model is never written
