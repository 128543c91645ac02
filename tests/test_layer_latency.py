"""The per-layer latency table (deploy/layer_latency.py, deploy/node_profile.py): real profiles of an untrained
yolov8n at 64 px on one thread, few runs, cached in a temporary folder.

The table must map the runtime's nodes onto the model's own convolutions, a second request must come from the cache
without profiling again, and a change of runtime, input size, thread count or layer widths must measure anew. A table
measured while other processes kept the CPUs busy is measured again once the machine is quieter, and the load share
itself must see another busy process and not this one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from copy import deepcopy

import pytest

pytestmark = pytest.mark.usefixtures("single_thread", "steady_load")

IMGSZ = 64
FAST = {"runs": 3, "warmup": 1}


@pytest.fixture(scope="module")
def unsplit_model():
    """An untrained yolov8n in the unsplit form pruning works on (C2f halves as cv0 / cv1)."""
    from ultralytics.nn.tasks import DetectionModel

    from ultralytics_prune_plugin.pruning.depgraph import prepare_for_pruning

    return prepare_for_pruning(DetectionModel("yolov8n.yaml", verbose=False))


@pytest.fixture(scope="module")
def cached(unsplit_model, tmp_path_factory):
    """The first table of the model, measured into a fresh cache folder; (table, cache folder)."""
    from ultralytics_prune_plugin.deploy.layer_latency import layer_latency_table

    folder = tmp_path_factory.mktemp("layer_latency")
    return layer_latency_table(unsplit_model, IMGSZ, "onnxruntime", threads=1, cache_dir=folder, **FAST), folder


def test_table_maps_the_nodes_onto_the_convolutions(unsplit_model, cached):
    from ultralytics_prune_plugin.pruning.policy import prunable_convs

    table, _ = cached
    assert not table.from_cache and table.path.is_file()
    names = {name for name, _ in unsplit_model.named_modules()}
    by_module = table.module_ms()
    assert set(by_module) <= names  # every mapped node names a real module
    # every prunable convolution (both halves of each unsplit block included) was found and took time
    convs = [name for name, _ in prunable_convs(unsplit_model)]
    assert convs and all(by_module.get(name, 0.0) > 0.0 for name in convs), [c for c in convs if c not in by_module]
    # the Detect head's own convolutions are there too (ONNX names them /model.22/cv2.0/cv2.0.0/conv/Conv)
    assert by_module.get("model.22.cv2.0.0.conv", 0.0) > 0.0 and by_module.get("model.22.cv3.2.2", 0.0) > 0.0
    # a Conv block's time holds its convolution and its activation, and the convolutions carry their MACs
    assert table.ms_within("model.0") >= by_module["model.0.conv"]
    first = next(n for n in table.nodes if n.module == "model.0.conv" and n.op == "Conv")
    assert first.macs == pytest.approx(16 * (IMGSZ // 2) ** 2 * 3 * 9)  # 16 outputs at 32 × 32, 3 × 3 × 3 inputs
    # only nodes the runtime added itself (layout reorders) are left without a module
    assert all(n.op.startswith("Reorder") for n in table.nodes if n.module is None)
    assert table.total_ms == pytest.approx(sum(n.ms for n in table.nodes))


def test_same_request_comes_from_the_cache(unsplit_model, cached):
    from ultralytics_prune_plugin.deploy.layer_latency import layer_latency_table

    table, folder = cached
    stamp = table.path.stat().st_mtime_ns
    again = layer_latency_table(deepcopy(unsplit_model), IMGSZ, "onnxruntime", threads=1, cache_dir=folder, **FAST)
    assert again.from_cache and again.path == table.path and table.path.stat().st_mtime_ns == stamp
    assert [(n.name, n.ms) for n in again.nodes] == [(n.name, n.ms) for n in table.nodes]
    stored = json.loads(table.path.read_text())["key"]
    assert stored == table.key and stored["threads"] == 1 and stored["imgsz"] == IMGSZ and stored["cpu"]


def test_another_runtime_size_thread_count_or_width_measures_anew(unsplit_model, cached):
    from ultralytics_prune_plugin.deploy.layer_latency import layer_latency_table
    from ultralytics_prune_plugin.deploy.runtimes import get_runtime
    from ultralytics_prune_plugin.pruning.depgraph import prune_once

    table, folder = cached
    pruned = deepcopy(unsplit_model)
    prune_once(pruned, IMGSZ, 0.25, round_to=8)
    requests = {
        "imgsz": (unsplit_model, {"imgsz": 96, "runtime": "onnxruntime", "threads": 1}),
        "threads": (unsplit_model, {"imgsz": IMGSZ, "runtime": "onnxruntime", "threads": 2}),
        "widths": (pruned, {"imgsz": IMGSZ, "runtime": "onnxruntime", "threads": 1}),
    }
    if get_runtime("openvino").available:
        requests["runtime"] = (unsplit_model, {"imgsz": IMGSZ, "runtime": "openvino", "threads": 1})
    paths = {table.path}
    for what, (model, request) in requests.items():
        other = layer_latency_table(model, cache_dir=folder, **request, **FAST)
        assert not other.from_cache, what
        assert other.key[what] != table.key[what], what
        assert other.path not in paths, what  # a file of its own: the first table stays cached
        paths.add(other.path)
        assert other.module_ms().get("model.2.cv1.conv", 0.0) > 0.0, what  # OpenVINO's names map the same way
    # the first table is still valid and still served from the cache
    assert layer_latency_table(unsplit_model, IMGSZ, "onnxruntime", threads=1, cache_dir=folder, **FAST).from_cache


def _cached_copy(table, folder, other_load):
    """The cached table's file copied into ``folder`` (same name: same key), its recorded load set to ``other_load``."""
    folder.mkdir()
    path = folder / table.path.name
    data = json.loads(table.path.read_text())
    data["other_load"] = other_load
    path.write_text(json.dumps(data))
    return path


@pytest.mark.machine_load
def test_a_table_measured_under_load_is_measured_again_when_quieter(unsplit_model, cached, tmp_path, monkeypatch):
    from ultralytics_prune_plugin.deploy import measure_cache
    from ultralytics_prune_plugin.deploy.layer_latency import layer_latency_table

    table, _ = cached
    request = dict(imgsz=IMGSZ, runtime="onnxruntime", threads=1, **FAST)
    # measured quietly: used as it is, the machine is not even sampled
    quiet = _cached_copy(table, tmp_path / "quiet", 0.05)
    monkeypatch.setattr(measure_cache, "other_load_now", lambda: pytest.fail("a quiet table needs no sample"))
    assert layer_latency_table(unsplit_model, cache_dir=quiet.parent, **request).from_cache
    # measured with every CPU taken by others, and the machine as busy now: still served from the cache
    busy = _cached_copy(table, tmp_path / "busy", 1.0)
    stamp = busy.stat().st_mtime_ns
    monkeypatch.setattr(measure_cache, "other_load_now", lambda: 0.95)
    again = layer_latency_table(unsplit_model, cache_dir=busy.parent, **request)
    assert again.from_cache and again.other_load == 1.0 and busy.stat().st_mtime_ns == stamp
    # the machine is quiet now: measured again, and the new table, measured under less load, replaces it
    monkeypatch.setattr(measure_cache, "other_load_now", lambda: 0.0)
    fresh = layer_latency_table(unsplit_model, cache_dir=busy.parent, **request)
    assert not fresh.from_cache and fresh.path == busy and fresh.other_load is not None and fresh.other_load < 1.0
    assert json.loads(busy.read_text())["other_load"] == fresh.other_load
    assert layer_latency_table(unsplit_model, cache_dir=busy.parent, **request).from_cache or fresh.other_load >= 0.25


def test_other_load_sees_another_busy_process():
    from ultralytics_prune_plugin.deploy.machine_load import other_load_now

    if not os.path.isfile("/proc/stat"):
        assert other_load_now(0.1) is None  # unknown where the kernel does not say
        return
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        other = other_load_now(1.0)
    finally:
        spinner.kill()
        spinner.wait()
    assert other is not None and other >= 0.6 / (os.cpu_count() or 1), other  # one other busy core, at least


def test_other_load_leaves_out_this_processes_own_time(monkeypatch):
    from ultralytics_prune_plugin.deploy import machine_load

    # the kernel's busy seconds of all CPUs and this process's own: 1.0 s of the busy time is this process's, 0.1 s
    # another's, over a real 0.2 s on 2 CPUs
    busy = iter([(100.0, 2), (101.1, 2)])
    own = iter([10.0, 11.0])
    monkeypatch.setattr(machine_load, "_cpu_seconds", lambda: next(busy))
    monkeypatch.setattr(machine_load, "_own_seconds", lambda: next(own))
    with machine_load.OtherLoad() as load:
        time.sleep(0.2)
    assert 0.15 < load.share <= 0.25  # 0.1 s ÷ (0.2 s × 2 CPUs), not (1.0 + 0.1) ÷ 0.4


def test_node_names_resolve_to_modules():
    from ultralytics_prune_plugin.deploy.node_profile import module_of

    names = {"model.22.cv2.0.0.conv", "model.9.m", "model.2.cv1.act", "model.2.cv1"}
    assert module_of("/model.22/cv2.0/cv2.0.0/conv/Conv_output_0_nchwc", names) == "model.22.cv2.0.0.conv"
    assert module_of("/model.9/m_1/MaxPool_output_0_nchwc", names) == "model.9.m"  # SPPF's second call of m
    assert module_of("/model.2/cv1/act/Mul/QuickGeluFusion/", names) == "model.2.cv1.act"
    assert module_of("/model.22/cv2.0/cv2.0.0/conv/Conv") == "model.22.cv2.0.0.conv"  # without the names
    assert module_of("ReorderInput_token_17", names) is None
