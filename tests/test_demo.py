"""The offline demo runs end to end (its quick preset) and refuses to write over an earlier demo."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import subprocess_env, ultralytics_series
from run_checks import assert_onnx_matches_pytorch
from ultralytics_prune_plugin.demo import PRESETS


def test_quick_demo_end_to_end(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "ultralytics_prune_plugin.demo", "--preset", "quick", "--out", str(out)],
        cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=1800,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((out / "demo_summary.json").read_text())
    yolo11 = ultralytics_series() >= (8, 3)
    assert ("yolo11n_depgraph" in summary) == yolo11  # YOLO11n beside YOLOv8n where the series ships it
    for method in ("depgraph", "slim", *(("yolo11n_depgraph",) if yolo11 else ())):
        assert summary[method]["final"]["macs"] < summary[method]["baseline"]["macs"]
        weights = out / summary["runs"][method] / "weights"  # the ONNX file computes what pruned.pt computes
        assert_onnx_matches_pytorch(weights / "pruned.pt", weights / "pruned.onnx", PRESETS["quick"]["imgsz"])
    log = proc.stdout + proc.stderr
    assert "Demo summary" in log and summary["verdict"]
    # one kind of path in the summary: relative to the demo folder
    paths = [summary["data"], *summary["runs"].values()]
    assert not any(Path(p).is_absolute() for p in paths) and all((out / p).exists() for p in paths), paths
    # each method is compared with its own input: slim's is the sparse-trained model, not the baseline
    assert "sparse-trained (slim input)" in log and "baseline (DepGraph input)" in log
    # no contradicting or raw messages, no update check in an offline run
    assert "model not sparse-trained?" not in log and "{'fraction_below'" not in log
    assert "New https://pypi.org/project/ultralytics" not in log
    again = subprocess.run(
        [sys.executable, "-m", "ultralytics_prune_plugin.demo", "--preset", "quick", "--out", str(out)],
        cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=120,
    )
    assert again.returncode != 0 and "never writes over earlier results" in again.stderr


def test_summary_compares_each_method_with_its_own_input():
    """Slim's input (sparse-trained, 0.8816) is its baseline row, so 0.8816 → 0.8700 shows as a loss, not a gain."""
    from ultralytics_prune_plugin.demo import format_summary

    def result(base_map, final_map):
        row = {"macs": 1.6e8, "params": 3_011_628, "map50": 0.99, "map50_95": base_map}
        return {"baseline": row, "final": {**row, "macs": 0.8e8, "map50_95": final_map, "step": 1}, "speedup": 1.5}

    summary = {"rate": 0.5, "preset": "default", "depgraph": result(0.8432, 0.7750), "slim": result(0.8816, 0.8700),
               "verdict": "v", "timings_s": {"total_s": 60.0}}
    lines = format_summary(summary).splitlines()
    slim_input = next(i for i, line in enumerate(lines) if line.startswith("sparse-trained (slim input)"))
    assert "0.8816" in lines[slim_input] and "Network Slimming" in lines[slim_input + 1]
    assert "−0.012 (−1.3 %)" in lines[slim_input + 1]
    depgraph = next(line for line in lines if "DepGraph" in line and "→" in line)
    assert "−0.068 (−8.1 %)" in depgraph
