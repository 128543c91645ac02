"""`yolo prune target_macs=...`: prune by cost, for both methods, through the real command line.

No data is needed: with ``epochs=0`` the run prunes, measures MACs, exports and times, but neither fine-tunes nor
validates. 64 px keeps every run to a few seconds.
"""

from __future__ import annotations

import json

import pytest
from conftest import run_yolo

COMMON = ("model=yolov8n.yaml", "epochs=0", "imgsz=64", "exist_ok=True")


def _prune(tmp_path, name, *args):
    """Run `yolo prune` in ``tmp_path`` and return its report and log."""
    proc = run_yolo("prune", *COMMON, f"project={tmp_path}", f"name={name}", *args, cwd=tmp_path)
    report = json.loads((tmp_path / name / "prune_report.json").read_text())
    return report, proc.stdout + proc.stderr


def test_depgraph_stops_at_the_macs_target(tmp_path):
    report, log = _prune(tmp_path, "dep", "rate=0.7", "iterative_steps=4", "target_macs=0.6")
    base, steps, target = report["baseline"]["macs"], report["steps"], report["target_macs"]
    assert target["requested"] == pytest.approx(0.6)
    assert target["goal_macs"] == pytest.approx(0.6 * base)
    # The loop stopped at the first step whose MACs meet the target, before the 4 steps that 'rate' asks for.
    assert 1 <= len(steps) < 4
    assert all(step["macs"] > target["goal_macs"] for step in steps[:-1])
    assert steps[-1]["macs"] <= target["goal_macs"]
    assert report["stop_reason"] == f"target_macs reached at step {len(steps)}"
    assert target["met"] is True
    assert "target MACs (G)" in log and " met  (target_macs=0.6" in log
    # The report sets what was reached against the target, and the result is that step.
    assert target["reached_macs"] == steps[-1]["macs"] == report["final"]["macs"]
    assert report["final"]["step"] == len(steps)
    assert report["args"]["target_macs"] == pytest.approx(0.6)
    assert "target_macs reached" in log


def test_depgraph_target_out_of_reach_runs_all_steps(tmp_path):
    report, _ = _prune(tmp_path, "far", "rate=0.3", "iterative_steps=2", "target_macs=0.1")
    target = report["target_macs"]
    assert len(report["steps"]) == 2  # 'rate' bounds the run: it never prunes beyond it to chase the target
    assert target["reached_macs"] == report["final"]["macs"] > target["goal_macs"]
    assert target["met"] is False
    assert not report["stop_reason"].startswith("target_macs reached")


def test_slim_chooses_the_rate_that_meets_the_macs_target(tmp_path):
    report, log = _prune(tmp_path, "slim", "method=slim", "rate=0.7", "target_macs=0.6")
    base, target, slim = report["baseline"]["macs"], report["target_macs"], report["slim"]
    search = slim["target_macs_search"]
    assert target["goal_macs"] == pytest.approx(0.6 * base) == pytest.approx(search["goal_macs"])
    # One threshold: the rate is lowered from 0.7 to the smallest that meets the target, not applied in full.
    assert 0.0 < search["rate"] < 0.7
    assert slim["requested_rate"] == pytest.approx(search["rate"])
    assert len(report["steps"]) == 1
    reached = report["steps"][0]["macs"]
    assert target["reached_macs"] == reached == report["final"]["macs"]
    assert reached <= target["goal_macs"] and target["met"] is True
    assert reached >= 0.9 * target["goal_macs"]  # close to the target, not far below it
    assert report["stop_reason"] == "target_macs reached at step 1"
    assert "target_macs=0.6: slim rate" in log


def test_slim_target_out_of_reach_applies_the_full_rate(tmp_path):
    report, log = _prune(tmp_path, "slim_far", "method=slim", "rate=0.3", "target_macs=0.1")
    target, slim = report["target_macs"], report["slim"]
    assert slim["target_macs_search"]["rate"] == pytest.approx(0.3)  # never beyond 'rate'
    assert target["reached_macs"] == report["final"]["macs"] > target["goal_macs"]
    assert target["met"] is False
    assert not report["stop_reason"].startswith("target_macs reached")
    assert "cannot reach" in log
