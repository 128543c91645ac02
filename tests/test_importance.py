"""DepGraph's importance and allocation options, in-process on real Ultralytics models and real Torch-Pruning.

``importance=`` (l2, l1, lamp, taylor, bn, random), ``global_pruning`` with its per-layer cap, ``isomorphic``,
``layer_rates``, ``ignore_layers`` and ``prune_head``: each must change which channels or how many go, and every
pruned model must keep its head outputs and convert back to stock blocks.
"""

from __future__ import annotations

from copy import deepcopy

import pytest
import torch
from torch import nn

from ultralytics_prune_plugin.pruning.depgraph import PruneOptions, prepare_for_pruning, prune_once
from ultralytics_prune_plugin.pruning.policy import heads, prunable_convs, protected_widths

SMALL = 64


@pytest.fixture(scope="module")
def yolov8n():
    """An untrained yolov8n with random BatchNorm scales (so that |γ| ranks differ from weight norms)."""
    from ultralytics import YOLO

    torch.manual_seed(0)
    model = YOLO("yolov8n.yaml").model
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data.uniform_(0.01, 0.1)
    return model


def _pruned(model, ratio=0.3, **options):
    """A pruned copy, and which output channels of the first conv survived (matched by weights)."""
    original = deepcopy(model)
    pruned = deepcopy(model)
    prune_once(pruned, SMALL, ratio, round_to=None, options=PruneOptions(**options))
    before = original.model[0].conv.weight.flatten(1)
    after = pruned.model[0].conv.weight.flatten(1)
    kept = sorted(int((before - row).abs().sum(1).argmin()) for row in after)
    return pruned, kept


def _widths(model, prune_head=False):
    return {name: conv.out_channels for name, conv in prunable_convs(model, prune_head)}


def _check_intact(original, pruned):
    """Head outputs unchanged, stock blocks back, a forward pass works."""
    assert protected_widths(pruned) == protected_widths(original)
    assert "C2f_v2" not in {type(m).__name__ for m in pruned.modules()}
    out = pruned.eval()(torch.rand(1, 3, SMALL, SMALL))
    ref = original.eval()(torch.rand(1, 3, SMALL, SMALL))
    assert out[0].shape == ref[0].shape


@pytest.mark.parametrize("importance", ["l2", "l1", "lamp", "bn", "random"])
def test_each_importance_prunes_and_keeps_the_head(yolov8n, importance):
    pruned, kept = _pruned(yolov8n, importance=importance)
    _check_intact(yolov8n, pruned)
    assert len(kept) == round(16 * 0.7) or len(kept) == int(16 * 0.7) + 1


def test_importances_choose_different_channels(yolov8n):
    chosen = {name: _pruned(yolov8n, ratio=0.5, importance=name)[1] for name in ("l2", "bn", "random")}
    # bn ranks by the BatchNorm scale alone: layer 0 keeps its 8 largest |γ|
    gamma = yolov8n.model[0].bn.weight.detach().abs()
    assert chosen["bn"] == sorted(gamma.argsort(descending=True)[:8].tolist())
    assert chosen["l2"] != chosen["bn"] and chosen["random"] != chosen["l2"]


def test_taylor_uses_loss_gradients(tmp_path):
    """Taylor importance: gradients of the real training loss on generated data fill every prunable conv."""
    from ultralytics import YOLO

    from ultralytics_prune_plugin.data import make_dataset
    from ultralytics_prune_plugin.engine.training_batches import TrainingBatches

    data = make_dataset(tmp_path / "data", n_train=8, n_val=4, imgsz=SMALL, n_classes=2)
    model = YOLO("yolov8n.yaml").model
    prepare_for_pruning(model)
    batches = TrainingBatches("detect", {"model": "yolov8n.yaml", "data": str(data), "imgsz": SMALL, "batch": 4,
                                         "device": "cpu", "workers": 0}, batches=2)
    try:
        bn_before = {n: b.running_mean.clone() for n, b in model.named_modules() if isinstance(b, nn.BatchNorm2d)}
        batches.fill_gradients(model)
        convs = prunable_convs(model)
        assert all(conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0 for _, conv in convs)
        running = {n: b.running_mean for n, b in model.named_modules() if isinstance(b, nn.BatchNorm2d)}
        assert all(torch.equal(bn_before[n], running[n]) for n in bn_before)  # statistics untouched
        original = deepcopy(model)
        prune_once(model, SMALL, 0.3, options=PruneOptions(importance="taylor", gradients=batches.fill_gradients))
        _check_intact(original, model)
        assert all(p.grad is None for p in model.parameters())  # no stale gradients left behind
    finally:
        batches.close()


def test_global_pruning_allocates_unevenly_within_the_cap(yolov8n):
    model = deepcopy(yolov8n)
    model.model[0].bn.weight.data[8:] *= 1e-3  # half of layer 0 is nearly dead: globally the least important
    ranked, kept0 = _pruned(model, ratio=0.2, importance="bn", global_pruning=True, max_step_ratio=0.7)
    _check_intact(model, ranked)
    assert set(kept0) <= set(range(8)) and len(kept0) >= 6  # layer 0 loses its dead half (and no more than 2 more)...
    before, after = _widths(model), _widths(ranked)
    others = [after[n] / before[n] for n in before if n != "model.0.conv"]
    assert sum(others) / len(others) > 0.8  # ...while the other layers lose less than the 20 % overall
    assert min(after[n] / before[n] for n in before) >= 0.3 - 1e-6  # no layer beyond the cap
    removed = 1 - sum(after.values()) / sum(before.values())
    assert 0.15 < removed < 0.3
    capped, _ = _pruned(model, ratio=0.2, importance="bn", global_pruning=True, max_step_ratio=0.25)
    assert capped.model[0].conv.out_channels == 12  # the cap holds layer 0 at 75 %
    macs = [prune_once(deepcopy(yolov8n), SMALL, r, options=PruneOptions(global_pruning=True))["macs_after"]
            for r in (0.2, 0.4, 0.6)]
    assert macs[0] > macs[1] > macs[2]  # monotonic, so a MACs target can be searched


def test_isomorphic_ranks_within_structures(yolov8n):
    plain, _ = _pruned(yolov8n, ratio=0.4, global_pruning=True)
    iso, _ = _pruned(yolov8n, ratio=0.4, global_pruning=True, isomorphic=True)
    _check_intact(yolov8n, iso)
    assert _widths(iso) != _widths(plain)


def test_layer_rates_and_ignored_layers(yolov8n):
    pruned, kept = _pruned(yolov8n, ratio=0.5, ignore_layers=(0, 1), layer_ratios={2: 0.25})
    _check_intact(yolov8n, pruned)
    assert kept == list(range(16))  # layer 0 ignored
    assert pruned.model[1].conv.out_channels == yolov8n.model[1].conv.out_channels
    assert pruned.model[2].cv2.conv.out_channels == round(yolov8n.model[2].cv2.conv.out_channels * 0.75)
    assert pruned.model[4].cv2.conv.out_channels == round(yolov8n.model[4].cv2.conv.out_channels * 0.5)


def test_prune_head_prunes_the_inner_head_convs(yolov8n):
    def inner(model):
        head = heads(model)[0]
        return {n: m.out_channels for n, m in head.cv2.named_modules() if isinstance(m, nn.Conv2d)}

    kept_head, _ = _pruned(yolov8n, ratio=0.5)
    pruned_head, _ = _pruned(yolov8n, ratio=0.5, prune_head=True)
    _check_intact(yolov8n, pruned_head)
    assert inner(kept_head) == inner(yolov8n)
    shrunk = [n for n, w in inner(pruned_head).items() if w < inner(yolov8n)[n]]
    assert shrunk and all(not n.endswith("2") for n in shrunk)  # the output conv (cv2[i][2]) keeps its width


def test_batchnorm_recalibration_changes_statistics_only(tmp_path):
    """After pruning, BatchNorm statistics are re-estimated on training batches: the running statistics change,
    no weight does, and the model's training flags are as before."""
    from ultralytics import YOLO

    from ultralytics_prune_plugin.data import make_dataset
    from ultralytics_prune_plugin.engine.training_batches import TrainingBatches

    data = make_dataset(tmp_path / "data", n_train=8, n_val=4, imgsz=SMALL, n_classes=2)
    model = YOLO("yolov8n.yaml").model
    prune_once(model, SMALL, 0.3)
    model.eval()
    weights = {k: v.clone() for k, v in model.state_dict().items() if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))}
    means = {n: m.running_mean.clone() for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)}
    batches = TrainingBatches("detect", {"model": "yolov8n.yaml", "data": str(data), "imgsz": SMALL, "batch": 4,
                                         "device": "cpu", "workers": 0})
    try:
        batches.recalibrate_batchnorm(model, batches=2)
    finally:
        batches.close()
    assert not model.training and not any(m.training for m in model.modules())
    after = model.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in weights.items())
    changed = [n for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d) and not torch.equal(means[n], m.running_mean)]
    assert len(changed) == len(means)
    assert all(m.momentum == 0.03 for m in model.modules() if isinstance(m, nn.BatchNorm2d))  # Ultralytics' own


def test_batchnorm_recalibration_is_deterministic(tmp_path):
    """The same model recalibrated twice gets the same statistics (augmentation is seeded), and the caller's random
    generators are left where they were."""
    import random

    from ultralytics import YOLO

    from ultralytics_prune_plugin.data import make_dataset
    from ultralytics_prune_plugin.engine.training_batches import TrainingBatches

    data = make_dataset(tmp_path / "data", n_train=8, n_val=4, imgsz=SMALL, n_classes=2)
    model = YOLO("yolov8n.yaml").model
    batches = TrainingBatches("detect", {"model": "yolov8n.yaml", "data": str(data), "imgsz": SMALL, "batch": 4,
                                         "device": "cpu", "workers": 0, "seed": 0})
    try:
        random.seed(123)
        expected = random.random()
        random.seed(123)
        first, second = deepcopy(model), deepcopy(model)
        batches.recalibrate_batchnorm(first, batches=2)
        assert random.random() == expected
        batches.recalibrate_batchnorm(second, batches=2)
    finally:
        batches.close()
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))
