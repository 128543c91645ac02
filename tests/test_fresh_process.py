"""The plugin's trainer rebuilt in a fresh process from its arguments alone, as Ultralytics' multi-GPU launcher does.

For DDP, Ultralytics writes a script with ``ultralytics.utils.dist.generate_ddp_file(trainer)``: it holds
``vars(trainer.args)`` and the trainer's import path, and each rank rebuilds the trainer from them. Here the script is
generated from the very trainer that `prune`'s fine-tune (and sparse training) builds, captured by wrapping
``PruneAwareDetectionTrainer.train``, and then run as one plain CPU process (no ``RANK``/``WORLD_SIZE``: one process
trains in-process). The rebuilt run must keep the pruned network / keep sparse training on.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run_python, subprocess_env

def _ddp_file_names_the_trainer() -> bool:
    """Whether the installed Ultralytics writes the trainer's import path and arguments into its DDP file as text
    (8.1-8.3); 8.4 pickles the trainer object instead, and ``test_ddp.py`` runs that launcher for real."""
    import inspect

    from ultralytics.utils.dist import generate_ddp_file

    return "cloudpickle" not in inspect.getsource(generate_ddp_file)


pytestmark = [
    pytest.mark.core,  # the older series' only multi-GPU check
    pytest.mark.skipif(not _ddp_file_names_the_trainer(), reason="8.4's DDP file pickles the trainer: test_ddp.py"),
]
IMGSZ = 64
COMMON = dict(imgsz=IMGSZ, batch=8, workers=0, deterministic=False, plots=False, epochs=1)
IMPORT_LINE = "from ultralytics_prune_plugin.engine.trainer import PruneAwareDetectionTrainer"

CAPTURE = """
import json, sys
from pathlib import Path
from ultralytics import YOLO
from ultralytics.utils.dist import generate_ddp_file
from ultralytics_prune_plugin.engine.trainer import PruneAwareDetectionTrainer

captured = []
original_train = PruneAwareDetectionTrainer.train

def train(self):
    captured.append({{"file": generate_ddp_file(self), "save_dir": str(self.save_dir), "model": str(self.args.model)}})
    return original_train(self)

PruneAwareDetectionTrainer.train = train
{call}
Path({out!r}).write_text(json.dumps(captured))
"""


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from ultralytics_prune_plugin.data import make_dataset

    return make_dataset(tmp_path_factory.mktemp("fresh") / "shapes", n_train=16, n_val=8, imgsz=IMGSZ, n_classes=2)


def _capture(call: str, cwd: Path) -> dict:
    """Run ``call`` in a fresh interpreter, capturing the DDP script of the one trainer it builds."""
    out = cwd / "captured.json"
    run_python(CAPTURE.format(call=call, out=str(out)), cwd=cwd)
    captured = json.loads(out.read_text())
    assert len(captured) == 1, captured
    return captured[0]


def _run_ddp_file(captured: dict, cwd: Path) -> subprocess.CompletedProcess:
    """Run the generated script as a single CPU process, after removing the first run's folder as the launcher does."""
    script = Path(captured["file"])
    try:
        assert IMPORT_LINE in script.read_text()  # the fresh process rebuilds the plugin's trainer, not Ultralytics'
        shutil.rmtree(captured["save_dir"])  # generate_ddp_command removes save_dir before launching
        env = {k: v for k, v in subprocess_env().items() if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE")}
        proc = subprocess.run([sys.executable, str(script)], cwd=cwd, env=env,
                              capture_output=True, text=True, timeout=900)
    finally:
        script.unlink(missing_ok=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def _params(checkpoint: Path, cwd: Path) -> int:
    code = (
        "from ultralytics_prune_plugin.engine.checkpoint import load_model\n"
        f"print(sum(p.numel() for p in load_model({str(checkpoint)!r}).parameters()))\n"
    )
    return int(run_python(code, cwd=cwd).stdout.strip().splitlines()[-1])


def test_prune_fine_tune_rebuilt_in_fresh_process(data, tmp_path):
    call = (
        f"YOLO('yolov8n.yaml').prune(data={str(data)!r}, rate=0.3, iterative_steps=1, max_map_drop=1.0, "
        f"project={str(tmp_path / 'runs')!r}, name='p', **{COMMON!r})"
    )
    captured = _capture(call, tmp_path)
    start = Path(captured["model"])
    assert start.name == "step_1_pruned.pt" and start.is_file()  # the fine-tune starts from a pruned checkpoint file
    pruned_params = _params(start, tmp_path)
    assert pruned_params < 3_000_000  # yolov8n has 3.16 M

    proc = _run_ddp_file(captured, tmp_path)
    out = proc.stdout + proc.stderr
    assert f"Keeping the pruned network as it is ({pruned_params:,} parameters)" in out
    weights = Path(captured["save_dir"]) / "weights"
    for name in ("last.pt", "best.pt"):
        assert _params(weights / name, tmp_path) == pruned_params
    assert len((Path(captured["save_dir"]) / "results.csv").read_text().strip().splitlines()) == 1 + 1


def test_sparse_training_rebuilt_in_fresh_process(data, tmp_path):
    call = (
        f"YOLO('yolov8n.yaml').sparse(data={str(data)!r}, sr=0.02, project={str(tmp_path / 'runs')!r}, "
        f"name='s', **{COMMON!r})"
    )
    captured = _capture(call, tmp_path)
    script = Path(captured["file"]).read_text()
    assert "'sparse': True" in script and "'sr': 0.02" in script

    _run_ddp_file(captured, tmp_path)
    with open(Path(captured["save_dir"]) / "results.csv") as f:
        rows = [{k.strip(): v.strip() for k, v in row.items()} for row in csv.DictReader(f)]
    assert len(rows) == 1
    sparsity = [k for k in rows[0] if k.startswith("sparsity/")]
    assert "sparsity/sr" in sparsity and len(sparsity) >= 2, list(rows[0])
    assert float(rows[0]["sparsity/sr"]) == pytest.approx(0.02)
