"""Core DepGraph pruning on a real yolov8n: C2f_v2 equivalence, MACs reduction, iterative widths, persistence.

``prune_once`` hands back stock ``C2f`` blocks; widths are compared on the unsplit form (:func:`unsplit_widths`), where
each half of a block has its own convolution name.

Nothing is mocked. Models are built from ``yolov8n.yaml`` (no download) and run on small images; only the MACs count
of the one-shot test uses 640 px, as the reports do.
"""

from __future__ import annotations

import copy
import io

import pytest
import torch
import torch.nn as nn
from ultralytics.cfg import get_cfg
from ultralytics.nn.modules.block import C2f
from ultralytics.nn.tasks import DetectionModel

from conftest import randomize_batchnorms
from run_checks import raw_head_level_channels, raw_head_tensors
from ultralytics_prune_plugin.nn.c2f_v2 import C2f_v2, replace_c2f_with_c2f_v2, unsplit_blocks
from ultralytics_prune_plugin.pruning.counting import count_macs_params
from ultralytics_prune_plugin.pruning.depgraph import (
    build_group_pruner,
    channel_counts,
    prepare_for_pruning,
    prune_once,
    step_ratio,
    trace_inputs,
)
from ultralytics_prune_plugin.pruning.policy import heads, ignored_layers, prunable_batchnorms, prunable_convs

NC = 2
SMALL = 64


pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def yolov8n_template():
    """A freshly built yolov8n (nc=2) with randomised BatchNorm statistics and affine parameters."""
    torch.manual_seed(0)
    model = DetectionModel("yolov8n.yaml", nc=NC, verbose=False)
    randomize_batchnorms(model)
    return model


@pytest.fixture
def yolov8n(yolov8n_template):
    """A private copy of the template for one test."""
    return copy.deepcopy(yolov8n_template)


def detection_batch(imgsz: int) -> dict:
    """A two-image training batch with one box per image, as the Ultralytics loss expects it."""
    return {
        "img": torch.rand(2, 3, imgsz, imgsz),
        "batch_idx": torch.tensor([0.0, 1.0]),
        "cls": torch.tensor([[0.0], [1.0]]),
        "bboxes": torch.tensor([[0.5, 0.5, 0.4, 0.3], [0.3, 0.6, 0.2, 0.2]]),
    }


def unsplit_widths(model: nn.Module) -> dict:
    """Output widths of every convolution of ``model`` after unsplitting its blocks (in place; it was stock)."""
    assert not any(isinstance(m, C2f_v2) for m in model.modules()), "prune_once must hand back stock blocks"
    unsplit_blocks(model)
    return channel_counts(model)


def eval_outputs(model: nn.Module, x: torch.Tensor):
    """Return the eval-mode outputs ``(y, [p3, p4, p5])`` without gradients."""
    model.eval()
    with torch.no_grad():
        return model(x)


def head_output_channels(model: nn.Module) -> dict:
    """Output widths of every convolution inside the Detect head."""
    head = heads(model)[0]
    return {name: m.out_channels for name, m in head.named_modules() if isinstance(m, nn.Conv2d)}


def test_c2f_v2_matches_c2f_exactly(yolov8n):
    x = torch.randn(2, 3, 96, 128)
    reference = eval_outputs(yolov8n, x)
    n_c2f = sum(type(m) is C2f for m in yolov8n.modules())

    assert replace_c2f_with_c2f_v2(yolov8n) == n_c2f == 8
    assert replace_c2f_with_c2f_v2(yolov8n) == 0  # idempotent
    swapped = eval_outputs(yolov8n, x)

    assert torch.allclose(swapped[0], reference[0], atol=1e-5, rtol=0)
    assert len(raw_head_tensors(swapped[1])) == len(raw_head_tensors(reference[1]))
    for new, old in zip(raw_head_tensors(swapped[1]), raw_head_tensors(reference[1])):
        assert torch.allclose(new, old, atol=1e-5, rtol=0)
    block = yolov8n.model[2]
    assert isinstance(block, C2f_v2)
    assert (block.i, block.f, block.type) == (2, -1, "ultralytics.nn.modules.block.C2f")
    assert block.np == sum(p.numel() for p in block.parameters())
    assert (block.cv0.bn.eps, block.cv0.bn.momentum) == (1e-3, 0.03)
    assert type(block.cv1.act) is nn.SiLU


def test_c2f_v2_halves_are_the_chunk_halves(yolov8n):
    c2f = yolov8n.model[2]
    block = C2f_v2.from_c2f(c2f)
    x = torch.randn(1, c2f.cv1.conv.in_channels, 16, 16)
    c2f.eval(), block.eval()
    with torch.no_grad():
        first, second = c2f.cv1(x).chunk(2, 1)
        assert torch.equal(block.cv0(x), first)
        assert torch.equal(block.cv1(x), second)
    assert block.cv2 is c2f.cv2 and block.m is c2f.m


def test_one_shot_half_rate_cuts_macs_at_640(yolov8n):
    yolov8n.half()  # a loaded checkpoint: half precision, frozen parameters
    for p in yolov8n.parameters():
        p.requires_grad_(False)
    yolov8n.train()

    report = prune_once(yolov8n, 640, 0.5)

    assert report["macs_before"] / report["macs_after"] >= 1.6
    assert report["params_after"] < report["params_before"]
    assert (report["macs_after"], report["params_after"]) == count_macs_params(yolov8n, 640)
    assert yolov8n.training and all(m.training for m in yolov8n.modules())  # tracer's eval() undone
    assert next(yolov8n.parameters()).dtype == torch.float32


def test_iterative_steps_keep_half_of_every_prunable_conv(yolov8n):
    prepare_for_pruning(yolov8n)
    widths = dict((name, conv.out_channels) for name, conv in prunable_convs(yolov8n))
    head_widths = head_output_channels(yolov8n)

    for _ in range(2):
        prune_once(yolov8n, SMALL, step_ratio(0.5, 2))

    kept = unsplit_widths(yolov8n)
    for name, width in widths.items():
        assert abs(kept[name] - width / 2) <= 1, name
    assert head_output_channels(yolov8n) == head_widths
    y, feats = eval_outputs(yolov8n, torch.randn(1, 3, 96, 96))
    assert y.shape == (1, 4 + NC, 12 * 12 + 6 * 6 + 3 * 3)
    assert raw_head_level_channels(feats) == [64 + NC] * 3


def test_many_small_steps_do_not_compound_rounding(yolov8n):
    prepare_for_pruning(yolov8n)
    widths = dict((name, conv.out_channels) for name, conv in prunable_convs(yolov8n))
    for _ in range(8):  # Torch-Pruning's floor per fresh pruner would take 16 channels down to 6 here
        prune_once(yolov8n, SMALL, step_ratio(0.5, 8))
    kept = unsplit_widths(yolov8n)
    assert all(kept[name] == width // 2 for name, width in widths.items())


def test_round_to_rounds_to_nearest_multiple(yolov8n):
    prepare_for_pruning(yolov8n)
    widths = dict((name, conv.out_channels) for name, conv in prunable_convs(yolov8n))
    prune_once(yolov8n, SMALL, 0.3, round_to=8)
    kept = unsplit_widths(yolov8n)
    for name, width in widths.items():
        assert kept[name] % 8 == 0 and abs(kept[name] - 0.7 * width) <= 4, (name, width, kept[name])


def test_pruned_model_trains_evaluates_and_persists(yolov8n):
    yolov8n.args = get_cfg()  # what the trainer attaches; the loss reads box/cls/dfl gains from it
    batch = detection_batch(SMALL)
    yolov8n.train()
    yolov8n(batch)  # caches model.criterion, as training does
    assert hasattr(yolov8n, "criterion")

    prune_once(yolov8n, SMALL, 0.5)

    assert "criterion" not in vars(yolov8n)
    yolov8n.train()
    loss, _ = yolov8n(batch)
    loss.sum().backward()  # 8.4's loss holds one value per component
    assert all(p.grad is not None for p in yolov8n.model[2].parameters())
    x = torch.randn(1, 3, 96, 96)
    expected = eval_outputs(yolov8n, x)[0]

    buffer = io.BytesIO()
    torch.save({"model": yolov8n}, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)["model"]
    copied = copy.deepcopy(yolov8n)
    for clone in (loaded, copied):
        assert type(clone.model[2]) is C2f  # back to the stock block
        assert channel_counts(clone) == channel_counts(yolov8n)
        assert torch.allclose(eval_outputs(clone, x)[0], expected, atol=1e-5, rtol=0)
    prune_once(loaded, SMALL, 0.2)  # a reloaded checkpoint can be pruned again


def test_prunable_batchnorms_are_exactly_those_in_prunable_groups(yolov8n):
    prepare_for_pruning(yolov8n)
    pruner = build_group_pruner(yolov8n, trace_inputs(yolov8n), 0.5)
    roots = {id(conv) for _, conv in prunable_convs(yolov8n)}
    in_groups = {
        id(dep.target.module)
        for group in pruner.DG.get_all_groups(ignored_layers=pruner.ignored_layers, root_module_types=[nn.Conv2d])
        if id(group[0].dep.target.module) in roots  # head-inner roots are listed too, with ratio 0
        for dep, _ in group
        if isinstance(dep.target.module, nn.BatchNorm2d) and not dep.target.module in heads(yolov8n)[0].modules()
    }
    names = [name for name, _ in prunable_batchnorms(yolov8n)]
    assert {id(bn) for _, bn in prunable_batchnorms(yolov8n)} == in_groups
    assert "model.2.m.0.cv2.bn" in names  # residual-coupled BN: pruned jointly with model.2.cv1.bn
    assert not any(name.startswith("model.22.") for name in names)
    head = yolov8n.model[-1]
    outputs = [*(branch[-1] for branch in head.cv2), *(branch[-1] for branch in head.cv3), head.dfl.conv]
    assert ignored_layers(yolov8n) == outputs  # only each output branch's last conv is protected


def test_step_ratio_compounds_to_rate():
    assert step_ratio(0.5, 1) == pytest.approx(0.5)
    assert (1 - step_ratio(0.5, 16)) ** 16 == pytest.approx(0.5)
    with pytest.raises(ValueError):
        step_ratio(1.0, 2)
