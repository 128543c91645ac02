"""The offline demo runs end to end (its quick preset) and refuses to write over an earlier demo."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import subprocess_env


def test_quick_demo_end_to_end(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "ultralytics_prune_plugin.demo", "--preset", "quick", "--out", str(out)],
        cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=1800,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((out / "demo_summary.json").read_text())
    for method in ("depgraph", "slim"):
        assert summary[method]["final"]["macs"] < summary[method]["baseline"]["macs"]
        assert (out / method / "weights" / "pruned.onnx").exists()
    assert "Demo summary" in proc.stdout + proc.stderr and summary["verdict"]
    again = subprocess.run(
        [sys.executable, "-m", "ultralytics_prune_plugin.demo", "--preset", "quick", "--out", str(out)],
        cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=120,
    )
    assert again.returncode != 0 and "never writes over earlier results" in again.stderr
