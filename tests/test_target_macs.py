"""`yolo prune target_macs=...`: prune by cost, for both methods, through the real command line.

No data is needed: with ``epochs=0`` the run prunes, measures MACs, exports and times, but neither fine-tunes nor
validates. 64 px keeps every run to a few seconds.
"""

from __future__ import annotations

import csv
import json

import pytest
from conftest import run_yolo

COMMON = ("model=yolov8n.yaml", "epochs=0", "imgsz=64", "exist_ok=True")


def _prune(tmp_path, name, *args):
    """Run `yolo prune` in ``tmp_path`` and return its report and log."""
    proc = run_yolo("prune", *COMMON, f"project={tmp_path}", f"name={name}", *args, cwd=tmp_path)
    report = json.loads((tmp_path / name / "prune_report.json").read_text())
    return report, proc.stdout + proc.stderr


def test_depgraph_derives_each_step_from_the_target(tmp_path):
    report, log = _prune(tmp_path, "dep", "iterative_steps=2", "target_macs=0.6")
    base, steps, target = report["baseline"]["macs"], report["steps"], report["target_macs"]
    assert target["key"] == "target_macs" and target["requested"] == pytest.approx(0.6)
    assert target["goal_macs"] == pytest.approx(0.6 * base)
    # No rate to guess: step k of 2 aims at base * 0.6 ** (k / 2), and its ratio is the smallest that gets there.
    assert len(steps) == 2
    for k, step in enumerate(steps, 1):
        assert step["step_goal_macs"] == pytest.approx(base * 0.6 ** (k / 2))
        assert 0.85 * step["step_goal_macs"] <= step["macs"] <= step["step_goal_macs"]
        assert 0.0 < step["step_ratio"] < 0.95 and step["ratio_trials"] > 1
    assert report["stop_reason"] == "target_macs reached at step 2"
    assert target["met"] is True and target["reached_macs"] == steps[-1]["macs"] == report["final"]["macs"]
    assert report["final"]["rate_requested"] is None  # 'rate' played no part
    assert (f"target_macs=0.6: a goal of {target['goal_macs'] / 1e9:.3f} GMACs; the kept model has "
            f"{target['reached_macs'] / 1e9:.3f}: met") in log and "to reach" in log
    # each step's latency, measured beside its MACs (against the input, interleaved, in onnxruntime at imgsz)
    assert report["step_latency"]["runtime"] == "onnxruntime" and report["step_latency"]["imgsz"] == 64
    assert report["step_latency"]["statistic"] == "min_ms"
    rows = list(csv.DictReader((tmp_path / "dep" / "prune_steps.csv").open()))
    assert len(rows) == 2 and (tmp_path / "dep" / "prune_curve.png").stat().st_size > 5000
    for step, row in zip(steps, rows):
        for key in ("latency_ms", "speedup", "latency_median_ms"):
            assert float(row[key]) == pytest.approx(step[key], rel=1e-5) and step[key] > 0, (key, row)
        assert step["speedup"] == pytest.approx(step["input_latency_ms"] / step["latency_ms"])
        if step["macs"] <= 0.6 * base:  # a notable MACs cut is measurably faster, even at 64 px on a busy machine
            assert step["speedup"] > 1.0, step
        assert f"{step['speedup']:.2f}× faster measured in onnxruntime" in log


def test_absolute_target_has_its_own_key(tmp_path):
    base = _prune(tmp_path, "probe", "iterative_steps=1", "rate=0.1")[0]["baseline"]["macs"]
    gmacs = round(0.5 * base / 1e9, 4)
    report, log = _prune(tmp_path, "absolute_target", "iterative_steps=1", f"target_gmacs={gmacs}")
    target = report["target_macs"]
    assert target["key"] == "target_gmacs" and target["goal_macs"] == pytest.approx(gmacs * 1e9)
    assert target["met"] is True and target["reached_macs"] >= 0.85 * gmacs * 1e9
    assert f"target_gmacs={gmacs:g}" in log


def test_depgraph_target_out_of_reach_is_said(tmp_path):
    report, log = _prune(tmp_path, "far", "iterative_steps=1", "target_macs=0.01")
    target = report["target_macs"]
    assert report["steps"][0]["step_ratio"] == pytest.approx(0.95)  # the most a step prunes
    assert target["reached_macs"] == report["final"]["macs"] > target["goal_macs"]
    assert target["met"] is False
    assert "cannot reach" in log


def test_slim_chooses_the_rate_that_meets_the_macs_target(tmp_path):
    report, log = _prune(tmp_path, "slim", "method=slim", "target_macs=0.6")
    base, target, slim = report["baseline"]["macs"], report["target_macs"], report["slim"]
    search = slim["target_macs_search"]
    assert target["goal_macs"] == pytest.approx(0.6 * base) == pytest.approx(search["goal_macs"])
    # One threshold: the smallest rate that meets the target.
    assert 0.0 < search["rate"] < 0.95
    assert slim["requested_rate"] == pytest.approx(search["rate"])
    assert len(report["steps"]) == 1
    reached = report["steps"][0]["macs"]
    assert target["reached_macs"] == reached == report["final"]["macs"]
    assert reached <= target["goal_macs"] and target["met"] is True
    assert reached >= 0.9 * target["goal_macs"]  # close to the target, not far below it
    assert report["stop_reason"] == "target_macs reached at step 1"
    assert "target_macs=0.6: slim rate" in log


def test_slim_target_out_of_reach_is_said(tmp_path):
    report, log = _prune(tmp_path, "slim_far", "method=slim", "target_macs=0.01")
    target, slim = report["target_macs"], report["slim"]
    assert slim["target_macs_search"]["rate"] == pytest.approx(0.95)
    assert target["reached_macs"] == report["final"]["macs"] > target["goal_macs"]
    assert target["met"] is False
    assert not report["stop_reason"].startswith("target_macs reached")
    assert "cannot reach" in log
