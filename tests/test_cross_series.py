"""Checkpoints trained with another Ultralytics series (a detector and an OBB model) prune on the installed one.

``make test`` points ``CROSS_SERIES_YOLO`` at the `yolo` command of another series' environment (8.2 beside the
latest 8.4). That command trains a detector briefly, as a user's older run would have; the installed series then
prunes it with both methods through its own `yolo prune`. Skipped when the variable is not set.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import FAST, run_yolo, subprocess_env
from run_checks import assert_onnx_matches_pytorch

OTHER_YOLO = os.environ.get("CROSS_SERIES_YOLO")
IMGSZ = 64
pytestmark = pytest.mark.skipif(not OTHER_YOLO, reason="CROSS_SERIES_YOLO names no other series' yolo command")


@pytest.fixture(scope="module", params=[("detect", "yolov8n.yaml"), ("obb", "yolov8n-obb.yaml")], ids=["detect", "obb"])
def foreign(request, tmp_path_factory):
    """A checkpoint written by the other series' `yolo <task> train` (a detector, an OBB model), and its dataset."""
    from ultralytics_prune_plugin.data import make_dataset

    task, yaml = request.param
    root = tmp_path_factory.mktemp(f"cross-{task}")
    data = make_dataset(root / "shapes", n_train=16, n_val=8, imgsz=IMGSZ, n_classes=2, task=task)
    # Its own settings (the series rewrite each other's); an absolute project, since a fresh settings file of an old
    # series points runs_dir at the git checkout that holds its environment.
    env = subprocess_env({"YOLO_CONFIG_DIR": str(root / "other-config")})
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(
        [OTHER_YOLO, task, "train", f"model={yaml}", f"data={data}", f"project={root / 'runs' / task}", "epochs=1", f"imgsz={IMGSZ}", "batch=8",
         "workers=0", "plots=False", *FAST, "name=other"],
        cwd=root, env=env, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    best = root / "runs" / task / "other" / "weights" / "best.pt"
    version = subprocess.run(
        [str(Path(OTHER_YOLO).parent / "python"), "-c", "import ultralytics; print(ultralytics.__version__)"],
        env=env, capture_output=True, text=True,
    ).stdout.strip()
    return {"best": best, "data": data, "root": root, "version": version, "task": task}


@pytest.mark.parametrize("method", ["depgraph", "slim"])
def test_checkpoint_from_another_series_prunes(foreign, method):
    import ultralytics

    assert foreign["version"] and foreign["version"] != ultralytics.__version__
    run_yolo("prune", f"model={foreign['best']}", f"data={foreign['data']}", f"method={method}", "rate=0.5",
             "epochs=0", f"imgsz={IMGSZ}", "batch=8", "workers=0", f"name={method}", cwd=foreign["root"])
    run_dir = foreign["root"] / "runs" / foreign["task"] / method
    report = json.loads((run_dir / "prune_report.json").read_text())
    assert report["final"]["macs"] < 0.8 * report["baseline"]["macs"]
    assert_onnx_matches_pytorch(run_dir / "weights" / "pruned.pt", run_dir / "weights" / "pruned.onnx", IMGSZ)
