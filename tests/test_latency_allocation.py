"""``allocation=latency`` (pruning/latency_allocation.py, engine/allocation.py): each prunable group's rate follows its
measured latency per channel.

An untrained yolov8n at 64 px and its copy pruned uniformly at the reference rate get real per-layer tables in ONNX
Runtime on one thread (cached in a temporary folder); the costs, weights and pruned widths are checked against those
tables' own numbers, so the checks hold whatever the machine measures. One whole run checks the key end to end with a
MACs target.
"""

from __future__ import annotations

import math
from copy import deepcopy

import pytest

pytestmark = pytest.mark.usefixtures("single_thread", "steady_load")

IMGSZ = 64


@pytest.fixture(scope="module")
def weighted():
    """(unsplit yolov8n, its reference, both latency tables, each group's members and cost, weights by convolution)."""
    from ultralytics.nn.tasks import DetectionModel

    from ultralytics_prune_plugin.deploy.layer_latency import layer_latency_table
    from ultralytics_prune_plugin.pruning.depgraph import PruneOptions, prepare_for_pruning
    from ultralytics_prune_plugin.pruning.latency_allocation import group_costs, latency_weights, reference_model

    model = prepare_for_pruning(DetectionModel("yolov8n.yaml", verbose=False))
    reference = reference_model(model, IMGSZ, 8, PruneOptions())
    # measured into the default cache (the suite's own settings folder), where the whole run below finds them
    tables = [layer_latency_table(m, IMGSZ, "onnxruntime", threads=1, runs=7, warmup=1) for m in (model, reference)]
    groups = group_costs(model, reference, tables[0].ms_within, tables[1].ms_within, PruneOptions())
    return model, reference, tables, groups, latency_weights(model, groups)


def test_costs_and_weights_follow_the_tables(weighted):
    from ultralytics_prune_plugin.pruning.latency_allocation import FLOOR_MS, MAX_WEIGHT, REFERENCE_RATE, STRENGTH
    from ultralytics_prune_plugin.pruning.policy import prunable_convs

    model, reference, (full, half), groups, weights = weighted
    cost = {name: c for members, c in groups for name in members}
    assert set(cost) == {name for name, _ in prunable_convs(model)} == set(weights)
    widths = {name: m.out_channels for name, m in reference.named_modules() if name in cost}
    assert widths["model.2.cv2.conv"] == 16 and widths["model.8.cv2.conv"] == 128  # half of 32 and 256
    assert REFERENCE_RATE == 0.5
    # the stem's group: the convolution's and SiLU's saving between the two tables (its input, the image, does not
    # shrink), plus half the saving of its consumer model.1.conv (whose input and output both halved), per channel lost
    def saved(name):
        return full.ms_within(name) - half.ms_within(name)

    expected = (saved("model.0") + 0.5 * saved("model.1.conv")) / (16 - 8)
    assert cost["model.0.conv"] == pytest.approx(expected)
    # a residual group (C2f bottleneck with shortcut): its producers are one group with one cost
    assert ("model.2.cv1.conv", "model.2.m.0.cv2.conv") in [tuple(sorted(m)) for m, _ in groups]
    # each weight is the tempered, clipped relative cost; the groups of an unsplit block's halves share their mean
    floored = {name: max(c, FLOOR_MS) for name, c in cost.items()}
    mean = math.exp(sum(math.log(max(c, FLOOR_MS)) for _, c in groups) / len(groups))
    single = {name: min(max((c / mean) ** STRENGTH, 1 / MAX_WEIGHT), MAX_WEIGHT) for name, c in floored.items()}
    blocks = [name for name, m in model.named_modules() if hasattr(m, "stock_class")]  # the unsplit C2f blocks
    halves = {f"{b}.{half}.conv": b for b in blocks for half in ("cv0", "cv1")}
    assert len(blocks) == 8
    for name, weight in weights.items():
        partner = next((halves[n] for n in halves for m, _ in groups if name in m and n in m), None)
        if partner is not None:
            both = (single[f"{partner}.cv0.conv"] + single[f"{partner}.cv1.conv"]) / 2
            assert weight == pytest.approx(both), name
        else:
            assert weight == pytest.approx(single[name]), name
    assert max(weights.values()) > 1.0 > min(weights.values())  # the rates really differ


def test_uniform_plan_prunes_each_group_at_its_weighted_rate(weighted):
    from ultralytics_prune_plugin.pruning.depgraph import PruneOptions, prune_once

    model, _, _, _, weights = weighted
    ratio = 0.5
    widths = {name: conv.out_channels for name, conv in model.named_modules() if name in weights}
    latency, uniform = deepcopy(model), deepcopy(model)
    prune_once(latency, IMGSZ, ratio, round_to=None, options=PruneOptions(latency_weights=weights))
    prune_once(uniform, IMGSZ, ratio, round_to=None)
    ideal = latency.pruning_ideal_widths
    for name, width in widths.items():
        assert ideal[name] == pytest.approx(width * (1 - ratio) ** weights[name]), name
        assert uniform.pruning_ideal_widths[name] == pytest.approx(width * (1 - ratio))
    # the groups whose channels cost the most time keep the smallest share of their channels
    dearest, cheapest = max(weights, key=weights.get), min(weights, key=weights.get)
    assert ideal[dearest] / widths[dearest] < 1 - ratio < ideal[cheapest] / widths[cheapest]


def test_global_ranking_divides_importance_by_weight(weighted):
    from ultralytics_prune_plugin.pruning.depgraph import PruneOptions, plan_global_widths

    model, _, _, _, weights = weighted
    plain, _ = plan_global_widths(deepcopy(model), 0.4, None, PruneOptions(global_pruning=True, max_step_ratio=0.9))
    latency, _ = plan_global_widths(
        deepcopy(model), 0.4, None, PruneOptions(global_pruning=True, max_step_ratio=0.9, latency_weights=weights)
    )
    heavy = [n for n in latency if weights.get(n, 1) >= 1.2]
    light = [n for n in latency if weights.get(n, 1) <= 0.8]
    assert heavy and light
    assert sum(latency[n] for n in heavy) < sum(plain[n] for n in heavy)  # dear channels rank lower: more go
    assert sum(latency[n] for n in light) > sum(plain[n] for n in light)


def test_prune_run_with_latency_allocation_meets_a_macs_target(weighted, tmp_path):
    from ultralytics import YOLO

    _, _, tables, _, weights = weighted

    report = YOLO("yolov8n.yaml").prune(
        model="yolov8n.yaml", allocation="latency", target_macs=0.5, epochs=0, imgsz=IMGSZ, iterative_steps=1,
        threads=1, workers=0, project=str(tmp_path), name="latency", deterministic=False, round_to=8,
    )
    record = report["allocation"]
    assert report["args"]["allocation"] == "latency" and record["runtime"] == "onnxruntime" and record["threads"] == 1
    assert record["imgsz"] == IMGSZ and len(record["tables"]) == 2 and record["tables"][0] != record["tables"][1]
    # the run's input (baseline.pt) and its reference have the fixture's widths: the run read the fixture's tables
    assert record["tables"] == [str(t.path) for t in tables] and record["tables_from_cache"]
    assert record["tables_other_load"] == [t.other_load for t in tables]  # the load each was measured under
    assert {name: v["weight"] for name, v in record["layers"].items()} == pytest.approx(weights)
    # the bisection found the overall level with the weights in place: the target is met
    assert report["target_macs"]["met"] and report["final"]["macs"] <= 0.5 * report["baseline"]["macs"] + 1
