"""Tests of Network Slimming: sparse training (real Ultralytics training runs) and slim pruning of yolov8n.

The training runs are tiny (8 synthetic 64 px images, 2 epochs) but real: ``YOLO('yolov8n.yaml').train(...)`` with the
plugin's trainer. They are shared between tests through module-scoped fixtures.
"""

from __future__ import annotations

import copy
import csv
import json
import logging
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn
from ultralytics import YOLO
from ultralytics.nn.tasks import DetectionModel
from ultralytics.utils import LOGGER

from run_checks import raw_head_level_channels, raw_head_tensors
from ultralytics_prune_plugin.data.synthetic import make_dataset
from ultralytics_prune_plugin.nn.c2f_v2 import C2f_v2
from ultralytics_prune_plugin.pruning.policy import prunable_batchnorms
from ultralytics_prune_plugin.pruning.slim import _Group, gamma_sparsity_report, select_channels, slim_prune
from ultralytics_prune_plugin.pruning.sparsity import (
    HISTOGRAM_JSON,
    HISTOGRAM_PNG,
    gamma_statistics,
    prunable_gammas,
    register_l1_penalty,
    sr_at_epoch,
    choose_sparse_optimizer,
    warn_adaptive_optimizer,
)

SR = 0.05
BATCH = 2
COMMON = dict(
    epochs=2,
    imgsz=64,
    batch=BATCH,
    workers=0,
    plots=False,
    amp=False,
    seed=0,
    deterministic=False,  # torch's deterministic mode makes CPU convolutions ~20x slower
    optimizer="SGD",
    lr0=0.01,
    warmup_epochs=0,  # no warmup: constant accumulation and learning rate from the first batch
    val=False,
    verbose=False,
    exist_ok=True,
)
SPARSITY_COLUMNS = ("sparsity/gamma_lt_1e-2", "sparsity/gamma_p10", "sparsity/gamma_p50", "sparsity/sr")


@pytest.fixture(autouse=True)
def fast_cpu_kernels():
    """Run each test with torch's deterministic mode off (a ``deterministic=True`` training leaves it on globally)."""
    enabled = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(False)
    yield
    torch.use_deterministic_algorithms(enabled)


# Instrumentation ------------------------------------------------------------------------------------------------------
class PenaltyProbe:
    """Measures, inside every optimizer step of a real training, what the sparsity hook adds to γ.grad.

    A step pre-hook registered before the plugin's (at ``on_pretrain_routine_end``, which runs before the plugin
    attaches) snapshots the gradients; one registered after it (at ``on_train_start``) compares. Optimizer steps are
    counted independently through the EMA update counter, which ``optimizer_step`` advances once per step.
    """

    def __init__(self):
        """Start with nothing measured."""
        self.calls = 0
        self.batches = 0
        self.max_error = 0.0
        self.srs = []
        self.updates_start = self.updates_end = None
        self._before = None

    def attach(self, model: YOLO) -> "PenaltyProbe":
        """Register the probe's callbacks on ``model`` (passed on to its trainer)."""
        model.add_callback("on_pretrain_routine_end", self._register_snapshot)
        model.add_callback("on_train_start", self._register_check)
        model.add_callback("on_train_batch_end", self._count_batch)
        model.add_callback("on_train_end", self._record_end)
        return self

    @property
    def steps(self) -> int:
        """Optimizer steps taken, from the EMA update counter."""
        return self.updates_end - self.updates_start

    def _register_snapshot(self, trainer):
        gammas = prunable_gammas(trainer.model)

        def snapshot(optimizer, args, kwargs):
            self._before = [(g.grad.clone(), torch.sign(g.detach())) for g in gammas]

        trainer.optimizer.register_step_pre_hook(snapshot)

    def _register_check(self, trainer):
        gammas = prunable_gammas(trainer.model)
        self.updates_start = trainer.ema.updates

        def check(optimizer, args, kwargs):
            sr = sr_at_epoch(trainer.args.sr, trainer.args.sr_final, trainer.epoch, trainer.epochs)
            for g, (grad, sign) in zip(gammas, self._before):
                error = (g.grad - grad - sr * sign).abs().max().item()
                self.max_error = max(self.max_error, error)
            self.calls += 1
            self.srs.append(sr)

        trainer.optimizer.register_step_pre_hook(check)

    def _count_batch(self, trainer):
        self.batches += 1

    def _record_end(self, trainer):
        self.updates_end = trainer.ema.updates


class Interrupt(Exception):
    """Raised by a callback to stop a training run after its first saved epoch."""


def _read_csv(path):
    """Return results.csv as a list of {column: float} rows (Ultralytics pads names and values with spaces)."""
    with open(path, newline="") as f:
        return [{k.strip(): float(v) for k, v in row.items()} for row in csv.DictReader(f)]


# Training fixtures ----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def data_yaml(tmp_path_factory):
    """A tiny synthetic detection dataset (8 train, 2 val images at 64 px, 2 classes)."""
    return str(make_dataset(tmp_path_factory.mktemp("shapes"), n_train=8, n_val=2, imgsz=64, n_classes=2, seed=0))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The project folder of this module's training runs."""
    return tmp_path_factory.mktemp("runs")


def _train(data_yaml, runs, name, probe=None, **overrides):
    """Train yolov8n from yaml with the shared settings; return the YOLO object and the run folder."""
    model = YOLO("yolov8n.yaml")
    if probe is not None:
        probe.attach(model)
    model.train(data=data_yaml, project=str(runs), name=name, **{**COMMON, **overrides})
    return model, runs / name


@pytest.fixture(scope="module")
def baseline_run(data_yaml, runs):
    """Two epochs without the penalty."""
    return _train(data_yaml, runs, "baseline", nbs=BATCH)


@pytest.fixture(scope="module")
def sparse_run(data_yaml, runs):
    """The same seeded run with ``sparse=True``, accumulate 1, probed."""
    probe = PenaltyProbe()
    model, save_dir = _train(data_yaml, runs, "sparse", probe=probe, nbs=BATCH, sparse=True, sr=SR)
    return model, save_dir, probe


@pytest.fixture(scope="module")
def accumulated_resumed_run(data_yaml, runs):
    """A sparse run with accumulate 4 and a decaying rate, interrupted after epoch 1 and resumed; both halves probed."""
    first = PenaltyProbe()
    model = YOLO("yolov8n.yaml")
    first.attach(model)

    def stop_after_first_save(trainer):
        first.updates_end = trainer.ema.updates  # on_train_end never runs in the interrupted half
        raise Interrupt

    model.add_callback("on_model_save", stop_after_first_save)
    overrides = dict(nbs=4 * BATCH, sparse=True, sr=SR, sr_final=SR / 5)
    with pytest.raises(Interrupt):
        model.train(data=data_yaml, project=str(runs), name="accumulate4", **{**COMMON, **overrides})
    save_dir = runs / "accumulate4"
    second = PenaltyProbe()
    resumed = YOLO(str(save_dir / "weights" / "last.pt"))
    second.attach(resumed)
    resumed.train(resume=True)
    return save_dir, first, second


# Sparse training ------------------------------------------------------------------------------------------------------
def test_sr_schedule_is_linear_from_sr_to_sr_final():
    assert sr_at_epoch(0.01, None, 7, 10) == 0.01
    assert sr_at_epoch(0.01, 0.001, 0, 10) == pytest.approx(0.01)
    assert sr_at_epoch(0.01, 0.001, 9, 10) == pytest.approx(0.001)
    assert sr_at_epoch(0.01, 0.001, 3, 4) == pytest.approx(0.001)
    assert sr_at_epoch(0.01, 0.001, 1, 4) == pytest.approx(0.01 - 0.009 / 3)
    assert sr_at_epoch(0.01, 0.001, 0, 1) == 0.01


def test_sparse_training_lowers_median_gamma(baseline_run, sparse_run):
    base_model, _ = baseline_run
    sparse_model, _, _ = sparse_run
    base, sparse = gamma_statistics(base_model.model), gamma_statistics(sparse_model.model)
    print(f"\nmedian prunable |γ|: without sparse {base['p50']:.5f}, with sparse (sr={SR}) {sparse['p50']:.5f}")
    assert sparse["p50"] < base["p50"] - 2e-3


def test_penalty_is_sr_sign_once_per_optimizer_step(sparse_run, accumulated_resumed_run):
    _, _, acc1 = sparse_run
    _, first, second = accumulated_resumed_run
    # accumulate 1: one optimizer step, and one penalty, per batch
    assert acc1.batches == 8 and acc1.steps == 8 and acc1.calls == 8
    assert acc1.max_error < 1e-5
    assert acc1.srs == [SR] * 8
    # accumulate 4 (nbs = 4 * batch): one step, and one penalty of the same size, per 4 batches
    assert first.batches == 4 and first.calls == 1 and first.steps == 1
    assert second.batches == 4 and second.calls == 1 and second.steps == 1
    assert first.max_error < 1e-5 and second.max_error < 1e-5


def test_penalty_is_added_after_amp_unscaling():
    torch.manual_seed(0)
    model = DetectionModel("yolov8n.yaml", verbose=False).train()
    gammas = prunable_gammas(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    sr = 1e-2
    register_l1_penalty(optimizer, gammas, lambda: sr)

    outputs = model(torch.rand(2, 3, 64, 64))
    loss = 1e-3 * sum(o.mean() for o in raw_head_tensors(outputs))  # small enough that clip_grad_norm_(10) does not clip
    scaler.scale(loss).backward()
    scaled = [g.grad.clone() for g in gammas]
    signs = [torch.sign(g.detach()) for g in gammas]
    scaler.unscale_(optimizer)  # what BaseTrainer.optimizer_step does, in this order
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=10.0)
    assert norm < 10.0
    unscaled = [g.grad.clone() for g in gammas]
    for s, u in zip(scaled, unscaled):
        torch.testing.assert_close(u, s / 2.0**16)
    scaler.step(optimizer)
    for g, u, sign in zip(gammas, unscaled, signs):
        torch.testing.assert_close(g.grad, u + sr * sign)  # not u + sr * sign / 65536


def test_penalty_is_skipped_with_the_step_when_gradients_overflow():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    calls = []
    register_l1_penalty(optimizer, [model[1].weight], lambda: calls.append(1) or 0.1)
    scaler.scale(model(torch.rand(1, 3, 2, 2)).sum()).backward()
    model[0].weight.grad[0, 0, 0, 0] = float("inf")
    before = model[1].weight.detach().clone()
    scaler.step(optimizer)
    assert calls == [] and torch.equal(model[1].weight.detach(), before)


def test_results_csv_histogram_and_checkpoint_args(sparse_run):
    _, save_dir, _ = sparse_run
    rows = _read_csv(save_dir / "results.csv")
    assert len(rows) == 2
    for column in SPARSITY_COLUMNS:
        assert column in rows[0]
    assert [row["sparsity/sr"] for row in rows] == [SR, SR]
    assert all(0.0 < row["sparsity/gamma_p50"] < 1.0 for row in rows)
    assert (save_dir / HISTOGRAM_PNG).stat().st_size > 10_000
    hist = json.loads((save_dir / HISTOGRAM_JSON).read_text())
    assert sorted(hist["epochs"]) == ["1", "2"]
    ckpt = torch.load(save_dir / "weights" / "best.pt", weights_only=False)  # stripped by strip_optimizer
    assert ckpt["train_args"]["sparse"] is True and ckpt["train_args"]["sr"] == SR


def test_resume_continues_the_sr_schedule_and_histograms(accumulated_resumed_run):
    save_dir, first, second = accumulated_resumed_run
    assert first.srs == [pytest.approx(SR)] and second.srs == [pytest.approx(SR / 5)]
    rows = _read_csv(save_dir / "results.csv")
    assert [row["epoch"] for row in rows] == [1, 2]
    assert [row["sparsity/sr"] for row in rows] == [pytest.approx(SR), pytest.approx(SR / 5)]
    assert sorted(json.loads((save_dir / HISTOGRAM_JSON).read_text())["epochs"]) == ["1", "2"]
    assert (save_dir / HISTOGRAM_PNG).is_file()


# Slim pruning ---------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sparse_like_model():
    """yolov8n with log-normal |γ| (a third of them below 1e-2), standing in for a sparse-trained detector."""
    generator = torch.Generator().manual_seed(0)
    model = DetectionModel("yolov8n.yaml", verbose=False)
    for _, bn in prunable_batchnorms(model):
        log_gamma = torch.randn(bn.num_features, generator=generator) * 2.0 - 3.5
        bn.weight.data = torch.exp(log_gamma)
    return model


def _head_output_widths(model):
    head = model.model[-1]
    return [seq[-1].out_channels for seq in (*head.cv2, *head.cv3)]


def test_sparsity_report_warns_for_dense_gammas(sparse_like_model):
    dense = gamma_sparsity_report(DetectionModel("yolov8n.yaml", verbose=False))
    assert not dense["sparse"] and "not sparse" in dense["warning"] and dense["median"] == 1.0
    sparse = gamma_sparsity_report(sparse_like_model, rate=0.25)
    assert sparse["sparse"] and sparse["fraction_below"] > 0.25 and sparse["warning"] is None


def test_sparsity_report_for_a_sparse_trained_model_with_dense_gammas_says_what_to_change():
    """The input's train_args say sparse=True but γ is dense: never 'not sparse-trained?', and name sr/epochs/optimizer."""
    model = DetectionModel("yolov8n.yaml", verbose=False)
    args = {"sparse": True, "sr": 0.05, "epochs": 10, "optimizer": "SGD"}
    warning = gamma_sparsity_report(model, rate=0.5, train_args=args)["warning"]
    assert "sparse-trained (sr=0.05, epochs=10, optimizer=SGD) but γ is still dense" in warning
    assert "not sparse-trained" not in warning and "'sr'" in warning and "epochs" in warning
    assert "{" not in warning  # no raw dict
    plain = gamma_sparsity_report(model, train_args={"sparse": False})["warning"]
    assert "training arguments say sparse=False" in plain and "sparse=True' first" in plain


def test_slim_prune_half_reduces_macs_and_keeps_the_head(sparse_like_model):
    model = copy.deepcopy(sparse_like_model)
    heads = _head_output_widths(model)
    result = slim_prune(model, 0.5, min_channels=8, imgsz=64, verbose=False)
    assert result.macs_after < 0.8 * result.macs_before and result.params_after < result.params_before
    assert not result.clamped and 0.45 <= result.applied_rate <= 0.5  # equal halves give some channels back
    assert 0.0 < result.threshold < 1.0
    assert all(row.after >= min(8, row.before) for row in result.layers)
    assert not any(isinstance(m, C2f_v2) for m in model.modules())  # stock C2f blocks again
    assert _head_output_widths(model) == heads
    x = torch.rand(1, 3, 64, 64)
    model.eval()
    assert model(x)[0].shape == (1, 4 + 80, 8**2 + 4**2 + 2**2)
    model.train()
    assert raw_head_level_channels(model(x)) == [64 + 80] * 3


def test_slim_prune_clamps_an_impossible_rate(sparse_like_model, tmp_path):
    model = copy.deepcopy(sparse_like_model)
    result = slim_prune(model, 0.95, min_channels=8, imgsz=64, verbose=False)
    assert result.clamped and result.applied_rate < 0.95
    assert result.applied_rate == pytest.approx(result.max_rate, abs=0.01)
    assert min(row.after for row in result.layers) == 8  # every layer at or above the floor, none empty
    assert result.macs_after < result.macs_before
    x = torch.rand(1, 3, 64, 64)
    model.train()
    assert raw_head_level_channels(model(x)) == [64 + 80] * 3  # (updates the BatchNorm running statistics)
    model.eval()
    expected = model(x)[0]
    torch.save(model, tmp_path / "slim.pt")
    loaded = torch.load(tmp_path / "slim.pt", weights_only=False).eval()
    torch.testing.assert_close(loaded(x)[0], expected)


def test_slim_prune_round_to_keeps_multiples(sparse_like_model):
    result = slim_prune(copy.deepcopy(sparse_like_model), 0.5, min_channels=8, imgsz=64, round_to=8, verbose=False)
    assert all(row.after % 8 == 0 for row in result.layers if row.after != row.before)
    assert result.applied_rate <= 0.5


def _group(scores, members=1, min_keep=1):
    return _Group(root=None, members=members, scores=torch.tensor(scores, dtype=torch.float64), min_keep=min_keep)


def test_select_channels_global_threshold_floors_and_clamping():
    a, b = _group([0.1, 0.2, 0.3, 0.4]), _group([0.05, 0.15, 0.9, 1.0])
    removed, threshold, max_rate, clamped = select_channels([a, b], 0.5)
    assert [r.tolist() for r in removed] == [[0, 1], [0, 1]] and threshold == pytest.approx(0.2) and not clamped
    # a floor of 3 in the second group: the threshold rises so the rate is still met
    a, b = _group([0.1, 0.2, 0.3, 0.4]), _group([0.05, 0.15, 0.9, 1.0], min_keep=3)
    removed, threshold, max_rate, clamped = select_channels([a, b], 0.5)
    assert [r.tolist() for r in removed] == [[0, 1, 2], [0]] and threshold == pytest.approx(0.3)
    # more than the floors allow: clamped, and the threshold is that of the clamped count
    a, b = _group([0.1, 0.2, 0.3, 0.4], min_keep=2), _group([0.05, 0.15, 0.9, 1.0], min_keep=2)
    removed, threshold, max_rate, clamped = select_channels([a, b], 0.9)
    assert clamped and max_rate == 0.5 and [r.tolist() for r in removed] == [[0, 1], [0, 1]]
    assert threshold == pytest.approx(0.2)
    # a coupled group (3 BatchNorms) weighs three channels per removed channel
    removed, _, _, _ = select_channels([_group([0.01, 0.5], members=3), _group([0.02, 0.03, 0.6, 0.7])], 0.4)
    assert [r.tolist() for r in removed] == [[0], [0]]


def test_auto_optimizer_becomes_sgd_and_an_explicit_adaptive_one_is_warned_about():
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    LOGGER.addHandler(handler)
    try:
        auto = SimpleNamespace(optimizer="auto", lr0=0.01, momentum=0.937)
        choose_sparse_optimizer(auto)
        named = SimpleNamespace(optimizer="AdamW", lr0=0.002, momentum=0.9)
        choose_sparse_optimizer(named)
        params = [nn.Parameter(torch.ones(2))]
        warn_adaptive_optimizer(SimpleNamespace(optimizer=torch.optim.AdamW(params, lr=0.002, betas=(0.9, 0.999))))
        warn_adaptive_optimizer(SimpleNamespace(optimizer=torch.optim.SGD(params, lr=0.01, momentum=0.9)))
    finally:
        LOGGER.removeHandler(handler)
    assert auto.optimizer == "SGD" and auto.lr0 == 0.01  # Ultralytics' lr0 (or the user's) is kept
    assert named.optimizer == "AdamW" and named.lr0 == 0.002  # a named optimizer is kept
    assert len(records) == 2
    info, warning = records[0].getMessage(), records[1].getMessage()
    assert "'optimizer=auto' → SGD(lr0=0.01" in info
    assert "AdamW(lr=0.002" in warning and "optimizer=SGD" in warning
