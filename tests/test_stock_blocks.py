"""Pruned models hold only stock Ultralytics blocks, so their checkpoints load, and predict, without this plugin.

Covers :mod:`ultralytics_prune_plugin.nn.c2f_v2` (unsplitting chunk-split blocks into ``C2f_v2`` and restoring them),
DepGraph's ``prune_once`` and Network Slimming's ``slim_prune`` handing back stock blocks with equal halves, and a
checkpoint loaded in a fresh interpreter where importing the plugin fails.

Runs under Ultralytics 8.1 (``C2f`` only) and 8.4 (also ``C3k2`` of YOLO11/YOLO26; those cases are skipped where
``C3k2`` does not exist). Nothing goes through the ``yolo`` command, and models are built from yaml with randomised
BatchNorm statistics and affine parameters, so a swapped or shifted half changes the outputs.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch
import torch.nn as nn
import ultralytics.nn.modules.block as blocks
from ultralytics.nn.modules.block import C2f
from ultralytics.nn.tasks import DetectionModel

from conftest import randomize_batchnorms, subprocess_env
from ultralytics_prune_plugin.engine.checkpoint import save_checkpoint
from ultralytics_prune_plugin.nn.c2f_v2 import (
    C2f_v2,
    copy_conv_output_rows,
    replace_c2f_with_c2f_v2,
    restore_stock_blocks,
    skipped_c2f_blocks,
    unsplit_blocks,
)
from ultralytics_prune_plugin.nn.structure import is_restructured
from ultralytics_prune_plugin.pruning import depgraph
from ultralytics_prune_plugin.pruning.counting import count_macs_params

C3k2 = getattr(blocks, "C3k2", None)  # Ultralytics >= 8.3
needs_c3k2 = pytest.mark.skipif(C3k2 is None, reason="this Ultralytics has no C3k2 (YOLO11/YOLO26 need >= 8.3)")
NC = 2
PLUGIN = "ultralytics_prune_plugin"


pytestmark = pytest.mark.usefixtures("single_thread")


def build(cfg) -> DetectionModel:
    """A detector with ``NC`` classes built from a yaml name or dict, BatchNorms randomised, in eval mode."""
    torch.manual_seed(0)
    return randomize_batchnorms(DetectionModel(cfg, nc=NC, verbose=False)).eval()


def outputs(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The eval-mode decoded predictions of ``model`` on ``x``."""
    model.eval()
    with torch.no_grad():
        return model(x)[0]


def plugin_classes(model: nn.Module) -> list:
    """Names of the classes of ``model``'s modules that come from this plugin."""
    return sorted({type(m).__qualname__ for m in model.modules() if type(m).__module__.startswith(PLUGIN)})


def stock_halves_are_equal(model: nn.Module) -> bool:
    """True when every chunk-split block's ``cv1`` has exactly ``2 * c`` outputs (two equal halves of ``c``)."""
    return all(m.cv1.conv.out_channels == 2 * m.c for m in model.modules() if isinstance(m, C2f))


# Unsplitting and restoring ------------------------------------------------------------------------------------------
UNSPLIT_CASES = [
    pytest.param("yolov8n.yaml", 8, {"Bottleneck"}, id="yolov8n-C2f"),
    pytest.param("yolo11n.yaml", 8, {"Bottleneck", "C3k"}, id="yolo11n-C3k2", marks=needs_c3k2),
    pytest.param("yolo26n.yaml", 8, {"Bottleneck", "C3k", "Sequential"}, id="yolo26n-C3k2-attn", marks=needs_c3k2),
]


@pytest.mark.parametrize("yaml, n_blocks, inner", UNSPLIT_CASES)
def test_unsplit_and_restore_are_exact(yaml, n_blocks, inner):
    model = build(yaml)
    x = torch.randn(1, 3, 96, 128)
    reference = outputs(model, x)
    classes = [type(m) for m in model.modules()]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    stock = {name: type(m) for name, m in model.named_modules() if isinstance(m, C2f)}

    assert unsplit_blocks(model) == n_blocks and unsplit_blocks(model) == 0  # idempotent
    unsplit = {name: m for name, m in model.named_modules() if isinstance(m, C2f_v2)}
    assert {name: m.stock_class for name, m in unsplit.items()} == stock
    assert {type(b).__name__ for m in unsplit.values() for b in m.m} == inner
    assert (outputs(model, x) - reference).abs().max().item() <= 1e-6
    if yaml.startswith("yolo26"):
        assert any(type(m).__name__ == "C2PSA" for m in model.modules())  # not a C2f: left as it is

    assert restore_stock_blocks(model) == n_blocks
    assert [type(m) for m in model.modules()] == classes
    restored = model.state_dict()
    assert restored.keys() == state.keys() and all(torch.equal(restored[k], v) for k, v in state.items())
    assert torch.equal(outputs(model, x), reference)
    block = model.model[2]
    stock_type = f"ultralytics.nn.modules.block.{type(block).__name__}"
    assert (block.i, block.f, block.type, block.c) == (2, -1, stock_type, 16)


def test_subclasses_overriding_forward_are_left_alone_and_listed():
    class OwnForward(C2f):
        def forward(self, x):
            return super().forward(x)

    model = nn.Sequential(C2f(8, 8, 1), nn.Sequential(OwnForward(8, 8, 1)))
    assert replace_c2f_with_c2f_v2(model) == 1  # the earlier name still works
    assert isinstance(model[0], C2f_v2) and type(model[1][0]) is OwnForward
    assert skipped_c2f_blocks(model) == [("1.0", "OwnForward")]


def test_unequal_halves_refuse_to_restore():
    model = build("yolov8n.yaml")
    unsplit_blocks(model)
    block = model.model[4]
    block.cv1 = copy_conv_output_rows(block.cv1, 0, block.cv1.conv.out_channels - 1)  # not a valid net: never run
    with pytest.raises(ValueError, match=r"layer 4.*C2f.*32 and 31 channels"):
        restore_stock_blocks(model)
    assert sum(isinstance(m, C2f_v2) for m in model.modules()) == 8  # nothing restored


# DepGraph: prune, restore, save, load without the plugin ------------------------------------------------------------
DEPGRAPH_CASES = [
    pytest.param("yolov8n.yaml", id="yolov8n"),
    pytest.param("yolo11n.yaml", id="yolo11n", marks=needs_c3k2),  # C2PSA kept whole (architecture policy)
    pytest.param("yolo26n.yaml", id="yolo26n", marks=needs_c3k2),  # and the attention C3k2 of layer 22
]


def pruned_by_depgraph(yaml: str, round_to, monkeypatch):
    """Prune ``yaml`` once at 0.5; return it with the unsplit pruned model and its outputs just before restoring."""
    model = build(yaml)
    seen = {}

    def capture_then_restore(m):
        seen["unsplit"] = copy.deepcopy(m)
        return restore_stock_blocks(m)

    monkeypatch.setattr(depgraph, "restore_stock_blocks", capture_then_restore)
    report = depgraph.prune_once(model, 64, 0.5, round_to=round_to)
    return model, seen["unsplit"], report


@pytest.mark.parametrize("round_to", [None, 8])
@pytest.mark.parametrize("yaml", DEPGRAPH_CASES)
def test_depgraph_keeps_equal_halves_and_hands_back_stock_blocks(yaml, round_to, monkeypatch):
    model, unsplit, report = pruned_by_depgraph(yaml, round_to, monkeypatch)

    halves = [(m.cv0.conv.out_channels, m.cv1.conv.out_channels) for m in unsplit.modules() if isinstance(m, C2f_v2)]
    assert len(halves) == 8 and all(a == b for a, b in halves), halves
    assert report["macs_after"] < 0.6 * report["macs_before"]
    assert plugin_classes(model) == [] and stock_halves_are_equal(model)
    assert is_restructured(model)  # recognised as pruned by its mark, not by its classes
    x = torch.randn(2, 3, 96, 64)
    assert (outputs(model, x) - outputs(unsplit, x)).abs().max().item() <= 1e-5


def test_ideal_widths_survive_the_round_trip():
    model = build("yolov8n.yaml")
    for _ in range(4):
        depgraph.prune_once(model, 64, depgraph.step_ratio(0.5, 4))
        assert plugin_classes(model) == []
    ideal = getattr(model, depgraph.IDEAL_WIDTHS_ATTRIBUTE)
    assert ideal["model.2.cv0.conv"] == ideal["model.2.cv1.conv"] == pytest.approx(8.0)
    assert model.model[2].cv1.conv.out_channels == 16  # two halves of 8


@pytest.mark.parametrize("yaml", DEPGRAPH_CASES)
def test_checkpoint_loads_and_predicts_without_the_plugin(yaml, tmp_path, monkeypatch):
    import cv2
    from ultralytics import YOLO

    model, _, _ = pruned_by_depgraph(yaml, 8, monkeypatch)
    path = save_checkpoint(model, tmp_path / "pruned.pt", {"imgsz": 64}, {"stage": "test"})
    with zipfile.ZipFile(path) as archive:
        pickle_bytes = archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl")))
    assert PLUGIN.encode() not in pickle_bytes and b"C2f_v2" not in pickle_bytes

    image = tmp_path / "image.jpg"
    cv2.imwrite(str(image), np.random.default_rng(0).integers(0, 256, (96, 128, 3), dtype=np.uint8))
    predict = dict(imgsz=96, conf=0.001, max_det=20, save=False, verbose=False)
    expected = YOLO(str(path)).predict(str(image), **predict)[0].boxes.data.tolist()
    assert expected, "choose another image: nothing detected, so nothing is compared"

    code = (
        "import json, sys\n"
        f"sys.modules[{PLUGIN!r}] = None  # any import of the plugin now fails\n"
        "from ultralytics import YOLO\n"
        f"result = YOLO({str(path)!r}).predict({str(image)!r}, **{predict!r})[0]\n"
        f"assert not [m for m, v in sys.modules.items() if m.startswith({PLUGIN!r}) and v], 'plugin imported'\n"
        "print(json.dumps(result.boxes.data.tolist()))\n"
    )
    plugin_root = os.path.dirname(os.path.dirname(os.path.abspath(sys.modules[PLUGIN].__file__)))
    env = subprocess_env({"ULTRALYTICS_PRUNE_PLUGIN_DISABLE": "1", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"})
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and os.path.abspath(p) != plugin_root
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    boxes = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(boxes) == len(expected)
    np.testing.assert_allclose(np.array(boxes), np.array(expected), atol=1e-3)


# Network Slimming: equal halves -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def slim():
    """``slim_prune``."""
    from ultralytics_prune_plugin.pruning.slim import slim_prune

    return slim_prune


@pytest.fixture(scope="module")
def sparse_like_yolov8n():
    """yolov8n with log-normal |γ| (about a third below 1e-2), standing in for a sparse-trained detector."""
    from ultralytics_prune_plugin.pruning.policy import prunable_batchnorms

    generator = torch.Generator().manual_seed(0)
    model = DetectionModel("yolov8n.yaml", verbose=False)
    for _, bn in prunable_batchnorms(model):
        bn.weight.data = torch.exp(torch.randn(bn.num_features, generator=generator) * 2.0 - 3.5)
    return model


@pytest.mark.parametrize("round_to", [None, 8])
def test_slim_keeps_equal_halves_at_small_macs_cost(slim, sparse_like_yolov8n, round_to):
    free = copy.deepcopy(sparse_like_yolov8n)
    unconstrained = slim(free, 0.5, imgsz=640, round_to=round_to, verbose=False, equal_halves=False)
    uneven = [m for m in free.modules() if isinstance(m, C2f_v2) and m.cv0.bn.num_features != m.cv1.bn.num_features]
    assert uneven, "the constraint would have nothing to do on this model"

    model = copy.deepcopy(sparse_like_yolov8n)
    result = slim(model, 0.5, imgsz=640, round_to=round_to, verbose=False)
    assert plugin_classes(model) == [] and stock_halves_are_equal(model) and is_restructured(model)
    rows = {row.name: row for row in result.layers}
    for name, m in model.named_modules():
        if isinstance(m, C2f):
            assert rows[f"{name}.cv0"].after == rows[f"{name}.cv1"].after == m.c
    overhead = result.macs_after / unconstrained.macs_after - 1
    print(f"\nslim rate 0.5, round_to={round_to}: equal halves cost {overhead:+.2%} MACs at 640 px "
          f"({unconstrained.macs_after / 1e9:.3f} -> {result.macs_after / 1e9:.3f} G), applied rate "
          f"{unconstrained.applied_rate:.3f} -> {result.applied_rate:.3f}")
    assert 0.0 < overhead <= 0.05
    before, after = sum(r.before for r in result.layers), sum(r.after for r in result.layers)
    assert result.applied_rate == pytest.approx(1 - after / before) and result.applied_rate < unconstrained.applied_rate
    assert (result.macs_after, result.params_after) == count_macs_params(model, 640)
    x = torch.rand(1, 3, 64, 64)
    torch.testing.assert_close(outputs(model, x), outputs(unsplit_copy(model), x))


def unsplit_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with its blocks unsplit again (the form the pruners work on)."""
    copied = copy.deepcopy(model)
    unsplit_blocks(copied)
    return copied
