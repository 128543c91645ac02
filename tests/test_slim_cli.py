"""Network Slimming through the real CLI: `yolo sparse` / `yolo train sparse=True`, then `yolo prune method=slim`,
fine-tune, val and ONNX export."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from conftest import FAST, IMGSZ, run_python, run_yolo
from run_checks import assert_onnx_matches_pytorch, val_metric

MEDIAN_GAMMA = (
    "import sys, torch\n"
    "from ultralytics import YOLO\n"
    "from ultralytics_prune_plugin.pruning.policy import prunable_batchnorms\n"
    "m = YOLO(sys.argv[1] if len(sys.argv) > 1 else r'{path}').model\n"
    "g = torch.cat([bn.weight.detach().abs().float().flatten() for _, bn in prunable_batchnorms(m)])\n"
    "print(float(g.median()))\n"
)


def _median_gamma(path: Path, cwd: Path) -> float:
    return float(run_python(MEDIAN_GAMMA.format(path=path), cwd=cwd).stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def sparse_pair(trained, dataset, tmp_path_factory):
    """The trained model, trained 2 more epochs with `yolo sparse` and, identically seeded, with plain `yolo train`."""
    cwd = tmp_path_factory.mktemp("slim")
    common = [f"model={trained['best']}", f"data={dataset}", "epochs=2", f"imgsz={IMGSZ}", "batch=8", "workers=0",
              "seed=0", "optimizer=SGD", "lr0=0.01", "plots=True", *FAST]
    sparse = run_yolo("sparse", *common, "sr=0.05", "name=sparse", cwd=cwd)
    run_yolo("train", *common, "name=plain", cwd=cwd)
    runs = cwd / "runs" / "detect"
    return {"cwd": cwd, "sparse": runs / "sparse", "plain": runs / "plain", "stdout": sparse.stdout + sparse.stderr}


def test_sparse_training_lowers_median_gamma(sparse_pair):
    cwd = sparse_pair["cwd"]
    sparse = _median_gamma(sparse_pair["sparse"] / "weights" / "last.pt", cwd)
    plain = _median_gamma(sparse_pair["plain"] / "weights" / "last.pt", cwd)
    assert sparse < plain - 1e-3, (sparse, plain)


def test_sparse_run_reports_gamma_each_epoch(sparse_pair):
    rows = list(csv.DictReader((sparse_pair["sparse"] / "results.csv").open()))
    rows = [{k.strip(): v.strip() for k, v in r.items()} for r in rows]
    assert len(rows) == 2
    for key in ("sparsity/gamma_lt_1e-2", "sparsity/gamma_p50", "sparsity/sr"):
        assert key in rows[0], rows[0].keys()
    assert float(rows[0]["sparsity/sr"]) == pytest.approx(0.05)
    assert (sparse_pair["sparse"] / "gamma_histogram.png").stat().st_size > 5000
    plain_header = (sparse_pair["plain"] / "results.csv").read_text().splitlines()[0]
    assert "sparsity" not in plain_header


def test_checkpoint_records_sparse_training(sparse_pair):
    code = (
        "import torch\n"
        f"c = torch.load(r'{sparse_pair['sparse'] / 'weights' / 'best.pt'}', weights_only=False)\n"
        "print(c['train_args']['sparse'], c['train_args']['sr'])\n"
    )
    assert run_python(code, cwd=sparse_pair["cwd"]).stdout.split() == ["True", "0.05"]


def test_slim_prune_finetune_val_export(sparse_pair, dataset):
    cwd = sparse_pair["cwd"]
    best = sparse_pair["sparse"] / "weights" / "best.pt"
    proc = run_yolo("prune", f"model={best}", f"data={dataset}", "method=slim", "rate=0.5", "epochs=1", "max_map_drop=1",
                    f"imgsz={IMGSZ}", "batch=8", "workers=0", "plots=False", *FAST, "name=slim", cwd=cwd)
    run_dir = cwd / "runs" / "detect" / "slim"
    report = json.loads((run_dir / "prune_report.json").read_text())
    assert report["slim"]["sparse_trained"] is True and report["slim"]["sr"] == 0.05
    assert report["final"]["macs"] < report["baseline"]["macs"]
    assert 0.3 < report["slim"]["applied_rate"] <= 0.5 + 1e-9
    assert len(report["steps"]) == 1 and report["steps"][0]["recovered_map50_95"] is not None
    assert abs(report["onnx"]["onnx_map50_95"] - report["onnx"]["pytorch_map50_95"]) <= 0.01
    layers = list(csv.DictReader((run_dir / "slim_layers.csv").open()))
    assert layers and all(int(r["channels_after"]) <= int(r["channels_before"]) for r in layers)
    assert "summary" in proc.stdout + proc.stderr
    pruned = run_dir / "weights" / "pruned.pt"
    # `yolo val` gives the mAP the run reported for pruned.pt (validated there at the same batch of 8)
    val = run_yolo("val", f"model={pruned}", f"data={dataset}", f"imgsz={IMGSZ}", "batch=8", "workers=0", cwd=cwd)
    assert val_metric(val.stdout + val.stderr) == pytest.approx(report["final"]["map50_95"], rel=0.01, abs=5e-4)
    run_yolo("export", f"model={pruned}", "format=onnx", f"imgsz={IMGSZ}", cwd=cwd)
    assert_onnx_matches_pytorch(pruned, pruned.with_suffix(".onnx"), IMGSZ)


def test_slim_on_model_not_sparse_trained_warns(trained, tmp_path):
    proc = run_yolo("prune", f"model={trained['best']}", "method=slim", "rate=0.3", "epochs=0", f"imgsz={IMGSZ}",
                    "name=warn", cwd=tmp_path)
    assert "was not sparse-trained" in proc.stdout + proc.stderr


def test_slim_rate_too_high_is_clamped_and_reported(tmp_path):
    proc = run_yolo("prune", "model=yolov8n.yaml", "method=slim", "rate=0.95", "min_channels=8", "epochs=0",
                    "imgsz=64", cwd=tmp_path)
    run_dir = tmp_path / "runs" / "detect" / "prune"
    report = json.loads((run_dir / "prune_report.json").read_text())
    applied = report["slim"]["applied_rate"]
    assert applied < 0.95 and report["steps"][0]["step_ratio"] == applied
    assert f"the rate applied is {applied:.3f}" in proc.stdout + proc.stderr
    layers = list(csv.DictReader((run_dir / "slim_layers.csv").open()))
    assert min(int(r["channels_after"]) for r in layers) >= 8
