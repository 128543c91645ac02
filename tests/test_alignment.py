"""round_to=auto (engine/alignment.py): the channel alignment measured fastest in the run's runtime, on an untrained
yolov8n at 96 px, one ONNX Runtime thread, candidates timed for real and cached in a temporary folder.

Without a latency measurement in the run, auto is the fixed default (8) and nothing is measured. With one
(allocation=latency or a latency target), every candidate is pruned to the same MACs, timed, and the rule picks the
smallest alignment within TIE of the fastest; a second request comes from the cache; a prune run records the choice
and prunes with it; a latency target the chosen alignment cannot reach is searched again with a finer one.
"""

from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import pytest

pytestmark = pytest.mark.usefixtures("single_thread", "steady_load")

IMGSZ = 96


@pytest.fixture(scope="module")
def prepared():
    """(untrained yolov8n prepared for pruning, its MACs at IMGSZ)."""
    from ultralytics.nn.tasks import DetectionModel

    from ultralytics_prune_plugin.pruning.counting import count_macs_params
    from ultralytics_prune_plugin.pruning.depgraph import prepare_for_pruning

    model = prepare_for_pruning(DetectionModel("yolov8n.yaml", verbose=False))
    return model, float(count_macs_params(model, IMGSZ)[0])


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """A cache folder that the measuring test leaves its alignment record in, for the prune run's test to reuse (it
    measures for itself when run alone)."""
    return tmp_path_factory.mktemp("alignment_measured")


def _args(**overrides):
    """The run arguments alignment reads, at their defaults."""
    base = dict(round_to="auto", runtime="onnxruntime", threads=1, imgsz=IMGSZ, fast_dfl=False, prune_head=False,
                ignore_layers=None, allocation="uniform", target_speedup=None, target_latency=None, importance="l2",
                global_pruning=False, max_layer_rate=0.8, isomorphic=False, layer_rates=None)
    return SimpleNamespace(**{**base, **overrides})


def test_auto_without_a_latency_measurement_is_the_fixed_default(prepared, tmp_path):
    from ultralytics_prune_plugin.engine.alignment import DEFAULT, resolve_round_to

    model, macs = prepared
    args = _args()
    record = resolve_round_to(args, model, macs, tmp_path, cache_dir=tmp_path / "cache")
    assert args.round_to == DEFAULT == 8 and record["chosen"] == 8 and record["measured"] is False
    assert not (tmp_path / "cache").exists()  # nothing measured, nothing cached
    given = _args(round_to=16, allocation="latency")
    assert resolve_round_to(given, model, macs, tmp_path) is None and given.round_to == 16  # a number stays


def test_auto_measures_every_candidate_at_equal_macs_and_caches_the_choice(prepared, measured, tmp_path):
    from ultralytics_prune_plugin.engine.alignment import CANDIDATES, GOAL_FRACTION, REACH, TIE, resolve_round_to

    model, macs = prepared
    widths = [m.out_channels for m in model.modules() if hasattr(m, "out_channels")]
    args = _args(allocation="latency")
    record = resolve_round_to(args, model, macs, tmp_path, cache_dir=tmp_path / "cache")
    assert record["measured"] and not record["from_cache"] and args.round_to == record["chosen"]
    rows = record["candidates"]
    assert [r["round_to"] for r in rows] == list(CANDIDATES)
    for row in rows:  # each pruned towards the goal by a real bisection, and timed
        assert 0.3 < row["macs_fraction"] and 0 < row["ratio"] <= 0.95 and row["latency_ms"] > 0
        assert row["ms_at_goal"] == pytest.approx(row["latency_ms"] * GOAL_FRACTION * macs / row["macs"])
        assert row["reaches_goal"] == (row["macs_fraction"] <= GOAL_FRACTION * (1 + REACH))
    # the fine alignments reach it; 32 channels per layer cannot take this small model to half its MACs
    assert all(r["reaches_goal"] for r in rows if r["round_to"] <= 8) and not rows[-1]["reaches_goal"]
    assert len({r["macs"] for r in rows}) > 1  # the alignments gave different widths
    # the rule: among those that reach the goal, the smallest alignment within TIE of the fastest
    able = [r for r in rows if r["reaches_goal"]]
    fastest = min(r["ms_at_goal"] for r in able)
    assert record["chosen"] == min(r["round_to"] for r in able if r["ms_at_goal"] <= fastest * (1 + TIE))
    assert record["runtime"] == "onnxruntime" and record["threads"] == 1 and record["imgsz"] == IMGSZ
    assert [m.out_channels for m in model.modules() if hasattr(m, "out_channels")] == widths  # input untouched
    # the same request again: from the cache, same choice, file untouched
    cache = next((tmp_path / "cache").glob("*.json"))
    stamp = cache.stat().st_mtime_ns
    again = _args(target_speedup=1.5)  # a latency target measures too: the same key, the same file
    second = resolve_round_to(again, model, macs, tmp_path, cache_dir=tmp_path / "cache")
    assert second["from_cache"] and again.round_to == record["chosen"] and cache.stat().st_mtime_ns == stamp
    assert json.loads(cache.read_text())["chosen"] == record["chosen"]
    assert not list(tmp_path.glob("alignment_*"))  # the temporary ONNX files are gone
    # the key is the per-layer latency table's (runtime, version, CPU, size, threads, widths; test_layer_latency.py)
    # and the candidates
    key = json.loads(cache.read_text())["key"]
    assert key["threads"] == 1 and key["imgsz"] == IMGSZ and key["candidates"] == list(CANDIDATES)
    (measured / "alignment").mkdir(exist_ok=True)
    shutil.copy2(cache, measured / "alignment" / cache.name)


def test_prune_run_records_the_alignment_and_prunes_with_it(measured, tmp_path, monkeypatch):
    from ultralytics import YOLO

    from ultralytics_prune_plugin.deploy import measure_cache
    from ultralytics_prune_plugin.engine.checkpoint import load_model
    from ultralytics_prune_plugin.pruning.depgraph import prepare_for_pruning
    from ultralytics_prune_plugin.pruning.policy import prunable_convs

    # the alignment the test above measured for the same input, runtime, size and threads (a real cache hit)
    monkeypatch.setattr(measure_cache, "default_cache_dir", lambda kind: measured / kind)
    reused = (measured / "alignment").is_dir()
    report = YOLO("yolov8n.yaml").prune(
        model="yolov8n.yaml", allocation="latency", target_macs=0.5, epochs=0, imgsz=IMGSZ, iterative_steps=1,
        threads=1, workers=0, project=str(tmp_path), name="auto", deterministic=False,
    )
    record = report["round_to"]
    assert record["measured"] and record["from_cache"] == reused
    assert record["chosen"] in (4, 8, 16)  # 32 cannot halve this model's MACs
    assert report["args"]["round_to"] == "auto"  # what was asked stays in the arguments
    on_disk = json.loads((tmp_path / "auto" / "prune_report.json").read_text())
    assert on_disk["round_to"]["chosen"] == record["chosen"]
    # the pruned widths are multiples of the chosen alignment (a layer narrower than one multiple keeps its width)
    unit = record["chosen"]
    before = {n: c.out_channels for n, c in prunable_convs(prepare_for_pruning(load_model(report["baseline"]["weights"])))}
    after = {n: c.out_channels for n, c in prunable_convs(prepare_for_pruning(load_model(report["final"]["weights"])))}
    assert after.keys() == before.keys() and any(after[n] < before[n] for n in after)
    assert all(after[n] % unit == 0 or after[n] == before[n] for n in after), (unit, after)


def test_a_resumed_run_keeps_the_alignment_its_report_holds(measured, tmp_path, monkeypatch):
    from ultralytics import YOLO

    from ultralytics_prune_plugin.deploy import measure_cache
    from ultralytics_prune_plugin.engine.prune_run import PruneRun

    monkeypatch.setattr(measure_cache, "default_cache_dir", lambda kind: measured / kind)  # measured above, or now

    given = {"model": "yolov8n.yaml", "epochs": 0, "imgsz": IMGSZ, "threads": 1, "iterative_steps": 2, "workers": 0,
             "deterministic": False, "allocation": "latency", "target_macs": 0.5, "project": str(tmp_path),
             "name": "auto"}
    run = PruneRun(YOLO("yolov8n.yaml"), given)
    run._start()  # interrupted before its first step
    assert run.args.round_to == run.report["round_to"]["chosen"]
    # the report, not a new measurement, decides: a value no measurement here picks (32 cannot halve this model)
    path = tmp_path / "auto" / "prune_report.json"
    report = json.loads(path.read_text())
    report["round_to"]["chosen"] = 32
    path.write_text(json.dumps(report))
    resumed = PruneRun(YOLO("yolov8n.yaml"), {**given, "resume": str(tmp_path / "auto")})
    assert resumed.args.round_to == "auto"
    resumed._restore()
    assert resumed.args.round_to == 32


def test_a_latency_target_the_chosen_alignment_cannot_reach_is_searched_again_finer(tmp_path, monkeypatch):
    """32 channels cannot halve this model's MACs at 96 px, so no 2.5× with it (about 2× at best): the run must not
    stop (or settle for less) because of an alignment it chose itself, but search again with the next finer one and
    record the switch."""
    from ultralytics import YOLO

    from ultralytics_prune_plugin.deploy import measure_cache
    from ultralytics_prune_plugin.engine import alignment
    from ultralytics_prune_plugin.engine.prune_run import PruneRun

    # its own cache: the made-up choice must not reach the other tests' runs
    monkeypatch.setattr(measure_cache, "default_cache_dir", lambda kind: tmp_path / "cache" / kind)
    # the measurement is not under test here (see above): it picks the coarsest candidate, as it did for yolo11n with
    # the head pruned at 640 px on an AVX2 CPU
    monkeypatch.setattr(alignment, "_measure", lambda *a, **k: {"chosen": 32, "candidates": [], "other_load": 0.0})
    given = {"model": "yolov8n.yaml", "epochs": 0, "imgsz": IMGSZ, "threads": 1, "iterative_steps": 1, "workers": 0,
             "deterministic": False, "target_speedup": 2.5, "project": str(tmp_path), "name": "finer"}
    run = PruneRun(YOLO("yolov8n.yaml"), given)
    run._start()
    record = run.report["round_to"]
    fallbacks = record["fallbacks"]
    assert fallbacks[0]["round_to"] == 32 and not fallbacks[0]["met"] and fallbacks[0]["best_speedup"] < 2.5
    assert [f["round_to"] for f in fallbacks] == sorted((f["round_to"] for f in fallbacks), reverse=True)
    assert run.args.round_to == record["chosen"] < min(f["round_to"] for f in fallbacks)
    search = run.report["latency_target"]
    assert search["chosen_macs_fraction"] < fallbacks[0]["most_pruned_macs_fraction"]
    assert run.args.target_macs == search["chosen_macs_fraction"]
    on_disk = json.loads((tmp_path / "finer" / "prune_report.json").read_text())
    assert on_disk["round_to"]["chosen"] == record["chosen"] and on_disk["round_to"]["fallbacks"] == fallbacks
