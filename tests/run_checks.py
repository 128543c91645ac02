"""Checks of what a run produced, shared by the CLI tests: the metrics `yolo val` prints and an ONNX file's output.

A test that only looks for the word "all" in `yolo val`'s output, or for an ONNX file on disk, passes whatever the
numbers are; these helpers read the numbers, so that a test can compare them with what the run itself reported.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import List, Tuple

_NUMBER = r"[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|nan)"
_ALL_ROW = re.compile(rf"\s*all((?:\s+{_NUMBER})+)\s*")


def val_all_rows(output: str) -> List[List[float]]:
    """Every "all" row that Ultralytics' validators printed in ``output``, as lists of numbers, in order.

    Detect, segment, pose and obb print ``all <images> <instances> <P R mAP50 mAP50-95 per kind of prediction>``;
    classify prints ``all <top-1> <top-5>``.
    """
    rows = []
    for line in re.split(r"[\r\n]+", output):
        match = _ALL_ROW.fullmatch(line)
        if match:
            rows.append([float(v) for v in match.group(1).split()])
    return rows


def val_metric(output: str, task: str = "detect") -> float:
    """The task's main metric of the last "all" row in ``output``: mAP50-95 (of masks, keypoints or rotated boxes for
    segment, pose and obb: the last column), or top-1 accuracy for classify (the first)."""
    rows = val_all_rows(output)
    assert rows, f"no validation row 'all' in the output:\n{output[-3000:]}"
    return rows[-1][0] if task == "classify" else rows[-1][-1]


def val_counts(output: str) -> Tuple[int, int]:
    """``(images, instances)`` of the last "all" row of a detect, segment, pose or obb validation."""
    rows = val_all_rows(output)
    assert rows, f"no validation row 'all' in the output:\n{output[-3000:]}"
    return int(rows[-1][0]), int(rows[-1][1])


def val_split_counts(data_yaml) -> Tuple[int, int]:
    """``(images, labelled objects)`` of the val split of a generated dataset (``images/val``, ``labels/val``)."""
    root = Path(data_yaml).parent
    images = [p for p in (root / "images" / "val").iterdir() if p.is_file()]
    labels = (root / "labels" / "val").glob("*.txt")
    objects = sum(1 for p in labels for line in p.read_text().splitlines() if line.strip())
    return len(images), objects


def onnx_and_pytorch_outputs(checkpoint, onnx_file, imgsz: int, seed: int = 0) -> Tuple["np.ndarray", "np.ndarray"]:
    """The first output of ``onnx_file`` in ONNX Runtime and of ``checkpoint``'s model in PyTorch (eval mode, float32),
    on the same seeded random batch of one image."""
    import numpy as np
    import onnxruntime as ort
    import torch
    from ultralytics import YOLO

    images = np.random.default_rng(seed).random((1, 3, imgsz, imgsz), dtype=np.float32)
    model = YOLO(str(checkpoint)).model.float().eval()
    with torch.no_grad():
        out = model(torch.from_numpy(images))
    while isinstance(out, (list, tuple)):  # eval mode returns (decoded output, raw outputs), nested for segment
        out = out[0]
    session = ort.InferenceSession(str(Path(onnx_file)), providers=["CPUExecutionProvider"])
    (name,) = [i.name for i in session.get_inputs()]
    return session.run(None, {name: images})[0], out.numpy()


def assert_onnx_matches_pytorch(checkpoint, onnx_file, imgsz: int, rtol: float = 1e-3, atol: float = 2e-3) -> None:
    """ONNX Runtime computes what PyTorch computes for ``checkpoint``: same output shape, same values within a
    tolerance far below what a wrong width, a missing layer or other weights would change."""
    import numpy as np

    ort_out, torch_out = onnx_and_pytorch_outputs(checkpoint, onnx_file, imgsz)
    assert ort_out.shape == torch_out.shape, (ort_out.shape, torch_out.shape)
    assert np.isfinite(torch_out).all(), torch_out
    if torch_out.ndim > 2:  # boxes in pixels and scores (a classifier's few probabilities may all be near 1 / nc)
        assert torch_out.std() > 1e-3, torch_out  # a constant output would prove nothing
    # float32 rounding grows with each output row's magnitude (YOLO11 on 8.3: -2.32 against -2.28 in a row reaching
    # 144; obb at 64 px: 0.0846 against 0.0868), so the absolute tolerance follows the row's scale.
    rows = (torch_out.reshape(-1, torch_out.shape[-1]), ort_out.reshape(-1, torch_out.shape[-1]))
    for i, (expected, actual) in enumerate(zip(*rows)) if torch_out.ndim > 2 else [(0, (torch_out, ort_out))]:
        row_atol = max(atol, 5e-4 * float(np.abs(expected).max()))
        np.testing.assert_allclose(actual, expected, rtol=rtol, atol=row_atol, err_msg=f"output row {i}")


def results_rows(path) -> List[dict]:
    """The rows of an Ultralytics ``results.csv`` as ``{column: float}`` (names and values are padded with spaces)."""
    import csv

    with open(path, newline="") as f:
        return [{k.strip(): float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def checkpoint_model(path):
    """The model a checkpoint holds (its EMA when it still has one), in float32."""
    import torch

    ckpt = torch.load(str(path), map_location="cpu", weights_only=False)
    model = ckpt.get("ema") if ckpt.get("ema") is not None else ckpt["model"]
    return model.float()


def assert_sparsity_rows_match(save_dir, epochs: int, sr: float) -> None:
    """A sparse training run's ``results.csv`` has one row per epoch, each with the ``sr`` used, and its last row's
    |γ| statistics are those of the prunable BatchNorms of the model saved at that epoch (``weights/last.pt``); its
    ``gamma_histogram.json`` has one histogram per epoch, each counting every prunable |γ| once, and agrees with the
    row's fraction below 1e-2.

    After the tests' few training steps nearly every |γ| is still close to its initial 1.0, so the statistics alone
    tell little; the histogram's count tells which BatchNorms were measured."""
    import json

    import numpy as np

    from ultralytics_prune_plugin.pruning.policy import prunable_batchnorms

    save_dir = Path(save_dir)
    rows = results_rows(save_dir / "results.csv")
    assert [int(row["epoch"]) for row in rows] == list(range(1, epochs + 1)), [row["epoch"] for row in rows]
    assert all(abs(row["sparsity/sr"] - sr) <= 1e-9 for row in rows), [row["sparsity/sr"] for row in rows]
    saved = checkpoint_model(save_dir / "weights" / "last.pt")
    gammas = np.concatenate([bn.weight.detach().abs().numpy().ravel() for _, bn in prunable_batchnorms(saved)])
    last = rows[-1]
    # last.pt stores the EMA in float16: its |γ| differ from the measured float32 ones by one part in a thousand
    np.testing.assert_allclose(last["sparsity/gamma_p50"], np.percentile(gammas, 50), rtol=2e-3)
    np.testing.assert_allclose(last["sparsity/gamma_p10"], np.percentile(gammas, 10), rtol=2e-3)
    assert abs(last["sparsity/gamma_lt_1e-2"] - float((gammas < 1e-2).mean())) <= 0.01, last
    assert 0 < last["sparsity/gamma_p10"] <= last["sparsity/gamma_p50"], last
    histograms = json.loads((save_dir / "gamma_histogram.json").read_text())
    assert sorted(histograms["epochs"], key=int) == [str(e) for e in range(1, epochs + 1)], list(histograms["epochs"])
    totals = {epoch: sum(counts) for epoch, counts in histograms["epochs"].items()}
    assert set(totals.values()) == {gammas.size}, (totals, gammas.size)  # every prunable |γ| once, no other
    below = int(np.searchsorted(histograms["bin_edges"], 1e-2 * (1 + 1e-9))) - 1  # the bins below 1e-2, an edge
    counts = histograms["epochs"][str(epochs)]
    fraction = sum(counts[:below]) / gammas.size
    assert abs(fraction - last["sparsity/gamma_lt_1e-2"]) <= 1.01 / gammas.size, (fraction, last)  # one channel


def ultralytics_has_safe_load() -> bool:
    """Whether the installed Ultralytics has opt-in restricted loading (``ULTRALYTICS_SAFE_LOAD``, 8.4 on)."""
    import ultralytics.utils

    return hasattr(ultralytics.utils, "SAFE_LOAD")


SAFE_LOAD_CODE = """
import sys, torch
import ultralytics.utils
from ultralytics import YOLO
assert ultralytics.utils.SAFE_LOAD, "ULTRALYTICS_SAFE_LOAD did not reach Ultralytics"
assert "ultralytics_prune_plugin" not in sys.modules, "the plugin was imported"
for path in sys.argv[2:]:
    model = YOLO(path).model.float().eval()
    with torch.no_grad():
        model(torch.zeros(1, 3, int(sys.argv[1]), int(sys.argv[1])))
    print(sum(p.numel() for p in model.parameters()))
"""


def safe_load_param_counts(*checkpoints, imgsz: int) -> List[int]:
    """Load each checkpoint the way a deployer who trusts no pickle would: Ultralytics' restricted loading
    (``ULTRALYTICS_SAFE_LOAD=1``: ``weights_only`` with Ultralytics' allow-list of its own classes), in one fresh
    process with the plugin switched off, then run it on one blank image; return each model's parameter count."""
    import subprocess
    import sys

    from conftest import subprocess_env

    env = subprocess_env({"ULTRALYTICS_SAFE_LOAD": "1", "ULTRALYTICS_PRUNE_PLUGIN_DISABLE": "1"})
    proc = subprocess.run(
        [sys.executable, "-c", SAFE_LOAD_CODE, str(imgsz), *map(str, checkpoints)],
        cwd=Path(checkpoints[0]).parent, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, f"restricted loading failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return [int(n) for n in proc.stdout.strip().splitlines()[-len(checkpoints):]]


def raw_head_tensors(preds) -> List["torch.Tensor"]:
    """The tensors of a detection head's raw (training-mode) output on any series: the per-level maps of 8.1-8.3, or
    8.4's ``{"boxes", "scores", ...}`` dict (``"feats"``, the head's inputs, left out; end-to-end heads flattened)."""
    import torch

    if isinstance(preds, torch.Tensor):
        return [preds]
    if isinstance(preds, dict):
        return [t for key, value in preds.items() if key != "feats" for t in raw_head_tensors(value)]
    return [t for value in preds for t in raw_head_tensors(value)]


def raw_head_level_channels(preds) -> List[int]:
    """Channels per feature level of a detection head's raw output (box distribution + classes): the maps' widths on
    8.1-8.3; on 8.4, whose dict holds every level flattened together, the box and class widths once per level."""
    if isinstance(preds, dict):
        branch = preds.get("one2many", preds)
        return [branch["boxes"].shape[1] + branch["scores"].shape[1]] * len(branch["feats"])
    return [o.shape[1] for o in preds]


def assert_run_checkpoints_load_safely(run_dir, params: int, imgsz: int) -> None:
    """Every kind of checkpoint a one-step prune run wrote (``pruned.pt``, ``step_1.pt``, the fine-tune's ``best.pt``
    and ``last.pt``) loads with restricted loading and without the plugin, with ``params`` parameters (8.4 on)."""
    if not ultralytics_has_safe_load():
        return
    run_dir = Path(run_dir)
    kinds = (run_dir / "weights" / "pruned.pt", run_dir / "weights" / "step_1.pt",
             *sorted((run_dir / "step_1" / "weights").glob("*.pt")))
    assert len(kinds) == 4, kinds
    assert safe_load_param_counts(*kinds, imgsz=imgsz) == [params] * 4


def steps_recorded(run_dir: Path) -> int:
    """How many steps a prune run's ``prune_report.json`` holds: 0 before the report exists. A step's checkpoint is
    written just before its row, so a test that interrupts a run after a step waits for this, not for the file."""
    try:
        return len(json.loads((Path(run_dir) / "prune_report.json").read_text())["steps"])
    except (FileNotFoundError, KeyError):  # written atomically: never half a file
        return 0
