"""Each prune step's measured latency (engine/step_latency.py), in process: the step's model exported and timed
interleaved with the run's input, the model left as it was, and a failure that records None with one warning.

The runs that record it (test_target_macs.py, test_latency_target.py, test_resume.py) check the report, the CSV and
the plot; this module checks the timer itself on two unpruned models of known cost: yolov8s as the input and yolov8n as
the "step" (about a third of its MACs), at 64 px on one thread.
"""

from __future__ import annotations

import io
import logging

import pytest
import torch

pytestmark = pytest.mark.usefixtures("single_thread")

IMGSZ = 64


def _model(cfg: str):
    from ultralytics.nn.tasks import DetectionModel

    return DetectionModel(cfg, verbose=False)


def _warnings(run):
    """``run()``'s result and the warning lines Ultralytics' logger got meanwhile."""
    from ultralytics.utils import LOGGER

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setLevel(logging.WARNING)
    LOGGER.addHandler(handler)
    try:
        result = run()
    finally:
        LOGGER.removeHandler(handler)
    return result, [line for line in stream.getvalue().splitlines() if line.strip()]


def test_step_is_timed_against_the_input_and_left_unchanged():
    from ultralytics_prune_plugin.engine.step_latency import RUNS, STATISTIC, STEP_KEYS, StepTimer

    loads = []
    big = _model("yolov8s.yaml")
    timer = StepTimer(lambda: loads.append(1) or big, "onnxruntime", IMGSZ, threads=1)
    small = _model("yolov8n.yaml").train()
    before = {k: v.clone() for k, v in small.state_dict().items()}
    try:
        rows, warnings = _warnings(lambda: [timer.time_step(small, k) for k in (1, 2)])
        folder = timer.folder
        assert folder is not None and folder.is_dir() and [p.name for p in folder.iterdir()] == ["input.onnx"]
    finally:
        timer.close()
    assert not folder.exists()  # the temporary ONNX files are gone
    assert not warnings, warnings
    assert loads == [1]  # the input is exported once per run, not per step
    for row in rows:
        assert set(row) == set(STEP_KEYS) and all(isinstance(v, float) and v > 0 for v in row.values()), row
        assert row["speedup"] == pytest.approx(row["input_latency_ms"] / row["latency_ms"])
        assert row["latency_ms"] <= row["latency_median_ms"] and row["input_latency_ms"] <= row["input_latency_median_ms"]
        assert row["speedup"] > 1.3, row  # a third of the MACs; measured about 2× on this machine
    # the training model is untouched: still in training mode, same weights, nothing fused
    assert small.training and all(torch.equal(before[k], v) for k, v in small.state_dict().items())
    assert timer.settings()["statistic"] == STATISTIC == "min_ms" and timer.settings()["runs"] == RUNS


def test_timing_failure_records_none_with_one_warning():
    from ultralytics_prune_plugin.engine.step_latency import STEP_KEYS, StepTimer

    timer = StepTimer(lambda: _model("yolov8n.yaml"), "no-such-runtime", IMGSZ, threads=1)
    small = _model("yolov8n.yaml")
    rows, warnings = _warnings(lambda: [timer.time_step(small, k) for k in (1, 2)])
    assert rows == [dict.fromkeys(STEP_KEYS)] * 2
    assert len(warnings) == 1 and "step 1: cannot time" in warnings[0] and "no-such-runtime" in warnings[0], warnings
    assert timer.folder is None
