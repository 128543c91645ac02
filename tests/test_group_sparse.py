"""Group sparse learning (`yolo sparse method=group`): Torch-Pruning's group penalty inside real Ultralytics training.

The penalty must reach exactly the groups DepGraph prunes (never a head output), training must save stock blocks
(checkpoints load without the plugin's classes), and an interrupted run must resume.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ultralytics_prune_plugin.nn.c2f_v2 import unsplit_blocks
from ultralytics_prune_plugin.pruning.group_sparsity import GROUP_ALPHA, build_group_regularizer
from ultralytics_prune_plugin.pruning.policy import heads, output_layers, prunable_convs

IMGSZ = 64


def test_group_penalty_reaches_prunable_groups_only():
    from ultralytics import YOLO

    model = YOLO("yolov8n.yaml").model
    unsplit_blocks(model)
    for p in model.parameters():
        p.requires_grad_(True)
    regularizer = build_group_regularizer(model, reg=1e-2)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    regularizer.regularize(model, alpha=GROUP_ALPHA)
    convs = prunable_convs(model)
    assert len(regularizer._groups) > 0
    assert all(conv.weight.grad.abs().sum() > 0 for _, conv in convs)  # every prunable conv is penalised
    outputs = [layer for head in heads(model) for layer in output_layers(head)]
    assert all(layer.weight.grad.abs().sum() == 0 for layer in outputs)  # head outputs never are
    # the penalty is w * reg * gamma with gamma between 1 and alpha: proportional to each weight
    conv = convs[0][1]
    ratio = conv.weight.grad / (conv.weight.detach() * 1e-2)
    finite = ratio[conv.weight.detach().abs() > 1e-6]
    assert finite.min() >= 1 - 1e-4 and finite.max() <= GROUP_ALPHA + 1e-4


class _Stop(Exception):
    """Raised by a callback to interrupt training after the first epoch's checkpoint."""


def test_group_sparse_training_saves_stock_blocks_and_resumes(tmp_path):
    from ultralytics import YOLO

    from ultralytics_prune_plugin.data import make_dataset

    data = make_dataset(tmp_path / "data", n_train=16, n_val=8, imgsz=IMGSZ, n_classes=2)
    yolo = YOLO("yolov8n.yaml")

    def stop(trainer):
        raise _Stop

    yolo.add_callback("on_fit_epoch_end", stop)
    with pytest.raises(_Stop):
        yolo.train(data=str(data), epochs=2, imgsz=IMGSZ, batch=8, workers=0, plots=False, sparse=True,
                   method="group", sr=1e-3, project=str(tmp_path / "runs"), name="gs", exist_ok=True, val=False)
    last = tmp_path / "runs" / "gs" / "weights" / "last.pt"
    checkpoint = torch.load(last, map_location="cpu", weights_only=False)
    kinds = {type(m).__name__ for m in checkpoint["ema"].modules()}
    assert "C2f" in kinds and "C2f_v2" not in kinds  # stock blocks, although training ran on unsplit ones
    assert checkpoint["train_args"]["method"] == "group" and checkpoint["epoch"] == 0

    resumed = YOLO(str(last))
    resumed.train(resume=True)
    rows = (tmp_path / "runs" / "gs" / "results.csv").read_text().strip().splitlines()
    assert len(rows) - 1 == 2  # the resumed run went on to the last epoch
    final = torch.load(tmp_path / "runs" / "gs" / "weights" / "last.pt", map_location="cpu", weights_only=False)
    model = final["model"] if final.get("model") is not None else final["ema"]
    assert "C2f_v2" not in {type(m).__name__ for m in model.modules()}
    assert isinstance(model, nn.Module)
