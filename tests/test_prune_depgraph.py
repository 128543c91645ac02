"""`yolo prune` with DepGraph through the real CLI: artefacts, the mAP budget, the per-step ratio, and pruned models
that keep their structure through `yolo train/val/predict/export` in fresh processes."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from pathlib import Path

import onnx
import pytest

from conftest import FAST, IMGSZ, run_python, run_yolo, ultralytics_series
from run_checks import assert_onnx_matches_pytorch, val_metric


def _sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _report(run_dir: Path) -> dict:
    return json.loads((run_dir / "prune_report.json").read_text())


@pytest.fixture(scope="module")
def two_step_run(trained, dataset, workdir):
    """A 2-step prune with 1-epoch fine-tunes, through the real `yolo prune` command."""
    before = _sha(trained["best"])
    listing = sorted(p.name for p in trained["best"].parent.iterdir())
    proc = run_yolo(
        "prune", f"model={trained['best']}", f"data={dataset}", "rate=0.5", "iterative_steps=2", "epochs=1",
        "max_map_drop=1.0", f"imgsz={IMGSZ}", "batch=8", "workers=0", "plots=False", *FAST, "name=two_step", cwd=workdir,
    )
    run_dir = workdir / "runs" / "detect" / "two_step"
    return {
        "dir": run_dir, "stdout": proc.stdout + proc.stderr, "input_sha": before, "input": trained["best"],
        "listing_before": listing, "listing_after": sorted(p.name for p in trained["best"].parent.iterdir()),
    }


def test_two_step_run_writes_every_artefact(two_step_run):
    d = two_step_run["dir"]
    for name in ("prune_steps.csv", "prune_report.json", "prune_curve.png", "weights/pruned.pt", "weights/pruned.onnx",
                 "weights/baseline.pt", "weights/step_1.pt", "weights/step_2.pt", "step_1/results.csv",
                 "step_2/results.csv", "step_2/weights/best.pt"):
        assert (d / name).exists(), name
    rows = list(csv.DictReader((d / "prune_steps.csv").open()))
    assert [r["step"] for r in rows] == ["1", "2"]
    macs = [_report(d)["baseline"]["macs"]] + [float(r["macs"]) for r in rows]
    assert macs[0] > macs[1] > macs[2]
    for r in rows:
        assert r["pruned_map50_95"] and r["recovered_map50_95"] and float(r["finetune_s"]) > 0


def test_input_model_is_never_written(two_step_run):
    assert _sha(two_step_run["input"]) == two_step_run["input_sha"]
    assert two_step_run["listing_after"] == two_step_run["listing_before"]  # nothing written beside it either


def test_onnx_runtime_map_agrees_with_pytorch(two_step_run):
    onnx = _report(two_step_run["dir"])["onnx"]
    assert "CPUExecutionProvider" in str(onnx["onnx_provider"])
    assert abs(onnx["onnx_map50_95"] - onnx["pytorch_map50_95"]) <= 0.01
    assert onnx["pytorch_map50_95"] > 0  # a comparison of two zeros would prove nothing
    lat = onnx["latency_ms"]
    assert lat["baseline"]["runs"] >= 20 and lat["pruned"]["median_ms"] > 0


def test_summary_table_is_printed(two_step_run):
    out = two_step_run["stdout"]
    assert "summary" in out and "ORT CPU latency b1 (ms)" in out
    assert "step 1/2" in out and "step 2/2" in out
    report = _report(two_step_run["dir"])
    onnx, base, final = (report[k] for k in ("onnx", "baseline", "final"))
    assert onnx["speedup_per_macs_cut"] == pytest.approx(onnx["speedup"] * final["macs"] / base["macs"])
    assert f"{onnx['speedup']:.2f}× faster for " in out  # on the latency row, with the speed-up per MACs cut
    assert f"(speed-up ÷ MACs cut: {onnx['speedup_per_macs_cut']:.2f})" in out


def test_ratio_reaches_requested_rate_on_channel_counts(two_step_run):
    """After both steps, every prunable layer keeps about half of its channels (checked on the saved models)."""
    code = (
        "import json\n"
        "from ultralytics import YOLO\n"
        "from ultralytics_prune_plugin.pruning.policy import prunable_convs\n"
        f"base = YOLO(r'{two_step_run['dir'] / 'weights' / 'baseline.pt'}').model\n"
        f"pruned = YOLO(r'{two_step_run['dir'] / 'weights' / 'pruned.pt'}').model\n"
        "from ultralytics_prune_plugin.nn.c2f_v2 import replace_c2f_with_c2f_v2\n"
        "replace_c2f_with_c2f_v2(base); replace_c2f_with_c2f_v2(pruned)  # compare the halves one by one\n"
        "b = dict((n, c.out_channels) for n, c in prunable_convs(base))\n"
        "p = dict((n, c.out_channels) for n, c in prunable_convs(pruned))\n"
        "print(json.dumps([p[n] / b[n] for n in b]))\n"
    )
    fractions = json.loads(run_python(code, cwd=two_step_run["dir"]).stdout.strip().splitlines()[-1])
    assert len(fractions) > 20
    assert all(0.4 <= f <= 0.6 for f in fractions), fractions


def test_pruned_model_keeps_structure_through_train(two_step_run, dataset, tmp_path):
    """`yolo train model=pruned.pt`: same parameter count, weights carried over (not re-initialised)."""
    pruned = tmp_path / "pruned.pt"
    shutil.copy(two_step_run["dir"] / "weights" / "pruned.pt", pruned)
    run_yolo(
        "train", f"model={pruned}", f"data={dataset}", "epochs=1", f"imgsz={IMGSZ}", "batch=16", "workers=0",
        "lr0=0", "warmup_bias_lr=0", "optimizer=SGD", "plots=False", *FAST, "name=ft", cwd=tmp_path,
    )
    trained = tmp_path / "runs" / "detect" / "ft" / "weights" / "last.pt"
    code = (
        "import torch\nfrom ultralytics import YOLO\n"
        f"a = YOLO(r'{pruned}').model; b = YOLO(r'{trained}').model\n"
        "print(sum(p.numel() for p in a.parameters()), sum(p.numel() for p in b.parameters()))\n"
        "convs = [(n, p) for n, p in a.named_parameters() if p.dim() == 4]\n"
        "sb = dict(b.named_parameters())\n"
        "print(all(torch.allclose(p.float(), sb[n].float(), atol=1e-3) for n, p in convs))\n"
    )
    out = run_python(code, cwd=tmp_path).stdout.split()
    assert out[0] == out[1]
    assert out[2] == "True"


def test_pruned_model_val_predict_export(two_step_run, dataset, tmp_path):
    pruned = tmp_path / "pruned.pt"
    shutil.copy(two_step_run["dir"] / "weights" / "pruned.pt", pruned)
    val = run_yolo("val", f"model={pruned}", f"data={dataset}", f"imgsz={IMGSZ}", "batch=8", "workers=0", cwd=tmp_path)
    final = _report(two_step_run["dir"])["final"]  # validated in the run at its batch of 8, as here
    assert val_metric(val.stdout + val.stderr) == pytest.approx(final["map50_95"], rel=0.01, abs=5e-4)
    pred = run_yolo("predict", f"model={pruned}", f"source={Path(dataset).parent / 'images' / 'val'}",
                    f"imgsz={IMGSZ}", cwd=tmp_path)
    assert "Results saved" in pred.stdout + pred.stderr
    run_yolo("export", f"model={pruned}", "format=onnx", f"imgsz={IMGSZ}", cwd=tmp_path)
    assert_onnx_matches_pytorch(pruned, pruned.with_suffix(".onnx"), IMGSZ)


def test_budget_keeps_last_step_within_it(trained, dataset, tmp_path):
    """Rerun the same deterministic prune with a budget between the drops of steps 1 and 2: step 1 is kept."""
    common = [f"model={trained['best']}", f"data={dataset}", "rate=0.2", "iterative_steps=3", "epochs=0",
              f"imgsz={IMGSZ}", "batch=16", "workers=0", "recalibrate_bn=False"]  # statistics as trained
    run_yolo("prune", *common, "max_map_drop=1.0", "name=free", cwd=tmp_path)
    free = _report(tmp_path / "runs" / "detect" / "free")
    base = free["baseline"]["map50_95"]
    drops = [base - s["pruned_map50_95"] for s in free["steps"]]
    assert len(drops) == 3 and drops[1] > drops[0], drops
    budget = (drops[0] + drops[1]) / 2
    proc = run_yolo("prune", *common, f"max_map_drop={budget:.6f}", "name=budget", cwd=tmp_path)
    rep = _report(tmp_path / "runs" / "detect" / "budget")
    assert [s["step"] for s in rep["steps"]] == [1, 2]
    assert rep["kept_step"] == 1 and rep["final"]["step"] == 1
    assert "keeping step 1" in rep["stop_reason"] and "keeping step 1" in proc.stdout + proc.stderr
    kept = (tmp_path / "runs" / "detect" / "budget" / "weights")
    assert _sha(kept / "pruned.pt") == _sha(kept / "step_1.pt")


def test_no_step_within_budget_keeps_unpruned(trained, dataset, tmp_path):
    run_yolo("prune", f"model={trained['best']}", f"data={dataset}", "rate=0.9", "iterative_steps=1", "epochs=0",
             "max_map_drop=0", f"imgsz={IMGSZ}", "workers=0", "name=nothing", cwd=tmp_path)
    rep = _report(tmp_path / "runs" / "detect" / "nothing")
    assert rep["kept_step"] == 0 and "unpruned" in rep["stop_reason"]
    assert rep["final"]["macs"] == rep["baseline"]["macs"]


def test_one_shot_rate_half_cuts_macs_at_640(tmp_path):
    """yolov8n at 640 px, rate 0.5 in one shot: MACs fall by at least 1.6x (no data: prune only)."""
    proc = run_yolo("prune", "model=yolov8n.yaml", "rate=0.5", "iterative_steps=1", "epochs=0", "imgsz=640",
                    cwd=tmp_path)
    log = proc.stdout + proc.stderr
    assert "docs.ultralytics.com/modes/prune" not in log  # Ultralytics' link for a mode it does not document
    assert "💡 Learn more: 'yolo help' lists the 'prune' mode" in log
    run_dir = tmp_path / "runs" / "detect" / "prune"
    rep = _report(run_dir)
    assert rep["baseline"]["macs"] / rep["final"]["macs"] >= 1.6
    assert (run_dir / "weights" / "pruned.pt").exists()
    run_yolo("prune", "model=yolov8n.yaml", "rate=0.3", "iterative_steps=1", "epochs=0", "imgsz=64", "fast_dfl=True",
             cwd=tmp_path)
    second = tmp_path / "runs" / "detect" / ("prune-2" if ultralytics_series() >= (8, 4) else "prune2")  # 8.4's naming
    assert _report(run_dir)["args"]["rate"] == 0.5  # the first run is untouched
    assert _report(run_dir)["onnx"]["fast_dfl"] is False and _report(second)["onnx"]["fast_dfl"] is True
    for run, dfl_ops in ((run_dir, {"Transpose", "Softmax", "Conv"}), (second, {"Transpose", "Softmax", "MatMul"})):
        for name in ("baseline", "pruned"):  # both files exported alike, so that their latencies compare fairly
            graph = onnx.load(str(run / "weights" / f"{name}.onnx")).graph
            assert {n.op_type for n in graph.node if "/dfl/" in n.name} - {"Reshape", "Constant"} == dfl_ops


def test_finetune_map_is_reproduced_by_validating_best(two_step_run):
    """The fine-tune's mAP in the report (our validation of step_2/weights/best.pt) matches the fine-tune's own, and
    the step's model is the fine-tune, or where that fell below the pruned model (by more than 5 % and 0.005), the
    better of the retry and the pruned model."""
    d = two_step_run["dir"]

    def trained_map(folder):
        rows = [{k.strip(): v for k, v in r.items()} for r in csv.DictReader((d / folder / "results.csv").open())]
        return max(float(r["metrics/mAP50-95(B)"]) for r in rows)

    step = _report(d)["steps"][1]
    assert abs(trained_map("step_2") - step["finetune_map50_95"]) <= 0.01, step
    fell = step["pruned_map50_95"] - step["finetune_map50_95"] > max(0.005, 0.05 * step["pruned_map50_95"])
    assert (step["step_model"] != "fine-tune") == fell, step
    if not fell:
        assert step["recovered_map50_95"] == step["finetune_map50_95"], step
    else:
        assert abs(trained_map("step_2_retry") - step["retry_map50_95"]) <= 0.01, step
        assert step["recovered_map50_95"] == max(step["retry_map50_95"], step["pruned_map50_95"]), step


def test_saved_models_carry_no_cached_loss(two_step_run):
    weights = two_step_run["dir"] / "weights"
    code = (
        "import torch\n"
        f"for name in ('pruned.pt', 'step_1.pt', 'step_2.pt', 'step_2_pruned.pt'):\n"
        f"    m = torch.load(r'{weights}' + '/' + name, weights_only=False)['model']\n"
        "    print(any('criterion' in mod.__dict__ for mod in m.modules()))\n"
    )
    assert run_python(code, cwd=two_step_run["dir"]).stdout.split() == ["False"] * 4


def test_a_fine_tune_that_falls_is_retried_at_a_tenth_of_the_rate(trained, dataset, tmp_path):
    """A learning rate far too high for the data (lr0=1) wrecks a one-epoch fine-tune of the trained input for
    certain: the step is fine-tuned again from the pruned weights at lr0=0.1 and keeps the better of that retry and
    the pruned model, records all three and says so in one warning (on real photographs the default lr0=0.01 fell
    in short fine-tunes, see engine/prune_run.py)."""
    import logging

    import torch
    from ultralytics import YOLO
    from ultralytics.utils import LOGGER

    from ultralytics_prune_plugin.engine.checkpoint import load_model

    class Collect(logging.Handler):
        def __init__(self):
            super().__init__(logging.WARNING)
            self.lines = []

        def emit(self, record):
            self.lines.append(record.getMessage())

    collect = Collect()
    LOGGER.addHandler(collect)
    try:
        report = YOLO(str(trained["best"])).prune(
            data=str(dataset), rate=0.3, iterative_steps=1, epochs=1, lr0=1.0, distill=False, imgsz=IMGSZ, batch=16,
            workers=0, project=str(tmp_path / "runs"), name="guard", deterministic=False, plots=False,
        )
    finally:
        LOGGER.removeHandler(collect)
    step = report["steps"][0]
    assert step["pruned_map50_95"] > 0.02, step  # the pruned model still detects: there is something to lose
    assert step["finetune_map50_95"] < step["pruned_map50_95"] / 2, step  # the wrecked fine-tune, recorded
    assert step["retry_lr0"] == pytest.approx(0.1) and report["finetune_lr0"] == pytest.approx(0.1)
    assert step["recovered_map50_95"] == max(step["retry_map50_95"], step["pruned_map50_95"]), step
    assert report["final"]["step"] == 1 and report["final"]["map50_95"] == step["recovered_map50_95"]
    run = Path(report["final"]["weights"]).parent.parent
    kept_from = run / "weights" / "step_1_pruned.pt" if step["step_model"] == "pruned" else \
        run / "step_1_retry" / "weights" / "best.pt"
    assert step["step_model"] in ("pruned", "retry"), step
    kept, source = (load_model(path).state_dict() for path in (run / "weights" / "step_1.pt", kept_from))
    assert kept.keys() == source.keys() and all(torch.equal(kept[k].float(), source[k].float()) for k in kept)
    assert (run / "step_1" / "weights" / "best.pt").is_file()  # the fallen fine-tune stays on disk
    rows = list(csv.DictReader((run / "prune_steps.csv").open()))
    assert rows[0]["step_model"] == step["step_model"] and float(rows[0]["retry_lr0"]) == pytest.approx(0.1)
    warned = [line for line in collect.lines if "fine-tune ended below" in line]
    assert len(warned) == 1 and "lr0=0.1" in warned[0], collect.lines
