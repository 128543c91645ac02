"""Deployment formats of `yolo prune`: the runtime interface, interleaved timing across runtimes, the artefacts of
``formats=`` / ``int8=`` (exported by Ultralytics, validated, sized, timed), their report rows and summary table, the
missing-runtime message and bad values of the new keys (``formats``, ``runtime``, ``threads``, INT8's ``quantize``).

The prune run reuses the suite's trained yolov8n (``trained`` in conftest) at 64 px with ``epochs=0``, so its only
costs are the exports, the validations and the timing.
"""

from __future__ import annotations

import json
from importlib.util import find_spec
from pathlib import Path

import pytest

from conftest import FAST, IMGSZ, run_python, run_yolo, ultralytics_series

pytestmark = pytest.mark.usefixtures("single_thread")
needs_openvino = pytest.mark.skipif(find_spec("openvino") is None, reason="openvino is not installed (8.4 venv has it)")


def _yolo_in_process(argv, cwd, capfd, monkeypatch):
    """Run ``yolo <argv>`` through the wrapped entrypoint in this process; return (exit code, out, err)."""
    import ultralytics.cfg as cfg

    monkeypatch.chdir(cwd)
    monkeypatch.setattr(cfg, "ARGV", ["yolo", *argv])
    capfd.readouterr()
    with pytest.raises(SystemExit) as stop:
        cfg.entrypoint()
    out, err = capfd.readouterr()
    return stop.value.code, out, err


# The runtime interface ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    """An untrained yolov8n exported to ONNX at 64 px (timing only needs a model)."""
    from ultralytics import YOLO

    from ultralytics_prune_plugin.deploy.onnx import export_onnx
    from ultralytics_prune_plugin.engine.checkpoint import save_checkpoint

    root = tmp_path_factory.mktemp("runtimes")
    save_checkpoint(YOLO("yolov8n.yaml").model, root / "tiny.pt", {"task": "detect", "imgsz": IMGSZ})
    return export_onnx(root / "tiny.pt", IMGSZ)


@pytest.mark.core
def test_runtimes_name_themselves_and_refuse_what_they_cannot_run(tiny_onnx):
    import torch

    from ultralytics_prune_plugin.deploy.runtimes import RUNTIMES, get_runtime

    assert set(RUNTIMES) == {"onnxruntime", "openvino", "tensorrt"}
    assert get_runtime("OpenVINO").name == "openvino"
    assert get_runtime("openvino").install_hint == 'pip install "ultralytics-prune-plugin[openvino]"'
    with pytest.raises(ValueError, match="known: onnxruntime, openvino, tensorrt"):
        get_runtime("magic")
    assert get_runtime("onnxruntime").unavailable_reason() is None
    with pytest.raises(ValueError, match="opens .onnx models"):
        get_runtime("onnxruntime").open(tiny_onnx.with_suffix(".pt"))
    with pytest.raises(ValueError, match="threads"):
        get_runtime("onnxruntime").open(tiny_onnx, threads=0)
    session = get_runtime("onnxruntime").open(tiny_onnx, threads=1)
    import numpy as np

    out = session.run(np.zeros((1, 3, IMGSZ, IMGSZ), np.float32))
    assert out[0].shape == (1, 84, sum((IMGSZ // s) ** 2 for s in (8, 16, 32)))
    trt = get_runtime("tensorrt").unavailable_reason()
    if not torch.cuda.is_available():
        assert "CUDA" in trt and "\n" not in trt
        with pytest.raises(RuntimeError, match="CUDA"):
            get_runtime("tensorrt").open(tiny_onnx)


@needs_openvino
def test_time_models_interleaves_runtimes_on_the_same_file(tiny_onnx):
    import numpy as np

    from ultralytics_prune_plugin.deploy.latency import time_models
    from ultralytics_prune_plugin.deploy.runtimes import get_runtime

    image = np.random.default_rng(0).random((1, 3, IMGSZ, IMGSZ), dtype=np.float32)
    ort_out = get_runtime("onnxruntime").open(tiny_onnx).run(image)[0]
    ov_out = next(iter(get_runtime("openvino").open(tiny_onnx, threads=1).run(image).values()))
    assert np.allclose(ort_out, ov_out, atol=1e-3 * max(1.0, float(np.abs(ort_out).max())))  # one model, two runtimes
    stats = time_models({"ort": ("onnxruntime", tiny_onnx), "ov": ("openvino", tiny_onnx)}, IMGSZ, runs=4, warmup=1,
                        threads=1)
    assert set(stats) == {"ort", "ov"}
    for s in stats.values():
        assert s["runs"] == 4 and 0 < s["min_ms"] <= s["median_ms"] <= s["p90_ms"]
    with pytest.raises(ValueError, match="check imgsz"):
        time_models({"ov": ("openvino", tiny_onnx)}, 96, runs=1, warmup=0)


# A prune run with every format ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def formats_run(trained, dataset, tmp_path_factory):
    """`YOLO(best).prune(formats=onnx,openvino, int8=True, threads=1)` with epochs=0: the report and the run folder."""
    from ultralytics import YOLO

    root = tmp_path_factory.mktemp("formats_run")
    report = YOLO(str(trained["best"])).prune(
        data=str(dataset), epochs=0, rate=0.1, iterative_steps=1, imgsz=IMGSZ, formats="onnx,openvino", int8=True,
        threads=1, max_map_drop=0.5, project=str(root), name="run", workers=0, deterministic=False,
    )
    return report, root / "run"


@needs_openvino
def test_every_format_is_exported_validated_sized_and_timed(formats_run):
    report, run = formats_run
    rows = report["artefacts"]
    kinds = [(r["model"], r["format"], r["precision"]) for r in rows]
    assert kinds == [("stock", "onnx", "fp32"), ("stock", "openvino", "fp32"), ("pruned", "onnx", "fp32"),
                     ("pruned", "onnx", "int8"), ("pruned", "openvino", "fp32"), ("pruned", "openvino", "int8")]
    assert json.loads((run / "prune_report.json").read_text())["artefacts"] == rows
    by = {(r["model"], r["format"], r["precision"]): r for r in rows}
    for row in rows:
        assert Path(row["path"]).parent == run / "weights" and Path(row["path"]).exists()
        assert row["threads"] == 1 and row["runtime"] == ("onnxruntime" if row["format"] == "onnx" else "openvino")
        stock = by[("stock", row["format"], "fp32")]
        assert row["speedup"] == pytest.approx(stock["latency_ms"] / row["latency_ms"])
        assert row["latency"]["runs"] == 30 and row["latency_ms"] == row["latency"]["median_ms"]
    # the same pruned model in two formats: the same metric through Ultralytics' validator (ORT against OpenVINO)
    onnx_fp32, ov_fp32 = by[("pruned", "onnx", "fp32")], by[("pruned", "openvino", "fp32")]
    assert onnx_fp32["map50_95"] == report["onnx"]["onnx_map50_95"]  # reused, not validated twice
    assert report["baseline"]["map50_95"] > 0.05  # a trained model: a broken artefact would show
    assert abs(ov_fp32["map50_95"] - onnx_fp32["map50_95"]) <= 0.01
    # INT8: about a quarter of the size, calibrated (an uncalibrated or wrongly scaled model loses the boxes)
    for fmt in ("onnx", "openvino"):
        fp32, int8 = by[("pruned", fmt, "fp32")], by[("pruned", fmt, "int8")]
        assert int8["size_mib"] < 0.45 * fp32["size_mib"], (fmt, int8["size_mib"], fp32["size_mib"])
        assert int8["map50_95"] >= fp32["map50_95"] - 0.1, (fmt, int8["map50_95"], fp32["map50_95"])
        assert int8["map50_95"] > 0.5 * fp32["map50_95"]
    import onnx

    ops = {n.op_type for n in onnx.load(by[("pruned", "onnx", "int8")]["path"]).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert report["args"]["int8"] is True and report["args"]["formats"] == "onnx,openvino"


@needs_openvino
def test_summary_ends_with_the_artefact_table_and_the_fastest_within_budget(formats_run):
    from ultralytics_prune_plugin.report.summary import artefact_lines, fastest_artefact

    report, _ = formats_run
    lines = artefact_lines(report)
    assert len(lines) == 2 + len(report["artefacts"]) + 1
    for line, row in zip(lines[2:-1], report["artefacts"]):
        assert line.split()[:4] == [row["model"], row["format"], row["precision"], row["runtime"]]
        assert f"{row['latency_ms']:.2f}" in line and f"{row['speedup']:.2f}×" in line
    budget = report["artefact_budget"]
    assert budget == pytest.approx(report["baseline"]["map50_95"] - 0.5)
    within = [r for r in report["artefacts"] if r["model"] == "pruned" and r["map50_95"] >= budget]
    best = min(within, key=lambda r: r["latency_ms"])
    assert fastest_artefact(report) is best
    assert Path(best["path"]).name in lines[-1] and "within max_map_drop=0.5" in lines[-1]


def test_fastest_line_keeps_to_the_budget():
    from ultralytics_prune_plugin.report.summary import fastest_line

    def row(model, fmt, precision, ms, score):
        return {"model": model, "format": fmt, "precision": precision, "runtime": "openvino", "path": f"w/{fmt}{precision}",
                "latency_ms": ms, "speedup": 10.0 / ms, "map50_95": score}

    report = {"metrics": {"map50": "box mAP50", "map50_95": "box mAP50-95"}, "args": {"max_map_drop": 0.05},
              "artefact_budget": 0.45, "artefacts": [row("stock", "openvino", "fp32", 10.0, None),
                                                       row("pruned", "openvino", "fp32", 6.0, 0.47),
                                                       row("pruned", "openvino", "int8", 3.0, 0.40)]}
    assert "openvinofp32" in fastest_line(report) and "6.00 ms" in fastest_line(report)  # INT8 is faster, but too lossy
    report["artefact_budget"] = None
    assert "openvinoint8" in fastest_line(report) and "no mAP budget" in fastest_line(report)
    report["artefact_budget"] = 0.9
    assert "no pruned artefact" in fastest_line(report)
    report["artefact_budget"] = -0.04  # max_map_drop above the baseline's mAP: any artefact, and said so
    assert "openvinoint8" in fastest_line(report) and ">= -" not in fastest_line(report)
    assert "the budget exceeds the baseline's" in fastest_line(report)


def test_default_onnx_files_get_no_artefact_table():
    """The default formats=onnx pair would repeat the summary's ONNX rows: no table, no second speed-up."""
    from ultralytics_prune_plugin.report.summary import artefact_lines

    rows = [{"model": m, "format": "onnx", "precision": "fp32", "runtime": "onnxruntime", "path": f"w/{m}.onnx",
             "latency_ms": ms, "speedup": 4.0 / ms, "map50_95": 0.5, "map50": 0.8, "size_mib": 1.0}
            for m, ms in (("stock", 4.0), ("pruned", 2.0))]
    report = {"metrics": {"map50": "box mAP50", "map50_95": "box mAP50-95"}, "args": {"max_map_drop": 0.2},
              "artefact_budget": 0.3, "artefacts": rows}
    assert artefact_lines(report) == []
    rows.append({**rows[1], "precision": "int8", "path": "w/pruned_int8.onnx"})
    lines = artefact_lines(report)
    assert len([line for line in lines[:-1] if "onnxruntime" in line]) == 3 and "fastest artefact" in lines[-1]


@needs_openvino
def test_an_artefact_never_overwrites(formats_run):
    from ultralytics_prune_plugin.deploy.artefacts import export_artefact

    _, run = formats_run
    weights = run / "weights"
    existing = weights / "pruned_openvino_model"
    stamp = sorted((p.name, p.stat().st_mtime_ns) for p in existing.iterdir())
    again = export_artefact(weights / "pruned.pt", "openvino", IMGSZ, weights)
    assert again == weights / "pruned_openvino_model-2" and (again / "pruned.xml").is_file()
    assert sorted((p.name, p.stat().st_mtime_ns) for p in existing.iterdir()) == stamp
    assert not list(weights.glob(".*export-*"))  # the staging folders are gone


# One-line refusals --------------------------------------------------------------------------------------------------
BAD_KEYS = [
    ("formats-unknown", {"formats": "onnx,tflite"}, ["'formats=onnx,tflite'", "'onnx', 'openvino'"]),
    ("formats-none", {"formats": "none"}, ["'formats=None'", "comma-separated"]),
    ("runtime-unknown", {"runtime": "magic"}, ["'runtime=magic'", "'onnxruntime', 'openvino', 'tensorrt'"]),
    ("threads-zero", {"threads": "0"}, ["'threads=0'", "integer >= 1"]),
    ("threads-not-a-number", {"threads": "abc"}, ["'threads=abc'", "integer >= 1"]),
    ("runtime-tensorrt-without-cuda", {"runtime": "tensorrt"}, ["'runtime=tensorrt'", "CUDA"]),
    ("int8-without-data", {"int8": "True"}, [("'int8=True'", "'quantize=8'"), "calibrates", "'data=...'"]),
    ("quantize-fp16", {"quantize": "16"}, ["'quantize=16'", "prune mode"]),
]


@pytest.mark.parametrize("row, overrides, words", BAD_KEYS, ids=[c[0] for c in BAD_KEYS])
def test_bad_values_of_the_new_keys_fail_with_one_line(row, overrides, words, tmp_path, capfd, monkeypatch):
    import torch

    if row == "quantize-fp16" and ultralytics_series() < (8, 4):
        pytest.skip("quantize is a key of Ultralytics 8.4")
    if row.endswith("without-cuda") and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    argv = ["prune", "model=yolov8n.yaml", "epochs=0", f"imgsz={IMGSZ}", *(f"{k}={v}" for k, v in overrides.items()),
            *FAST, "workers=0"]
    code, out, err_text = _yolo_in_process(argv, tmp_path, capfd, monkeypatch)
    assert code not in (0, None) and "Traceback" not in out + err_text, out + err_text
    err = err_text.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ERROR ❌ "), err_text
    assert all(any(w in err[0] for w in (word if isinstance(word, tuple) else (word,))) for word in words), err[0]
    assert not list(tmp_path.rglob("prune_report.json"))


def test_bad_threads_through_the_console_script(tmp_path):
    proc = run_yolo("prune", "model=yolov8n.yaml", "epochs=0", f"imgsz={IMGSZ}", "threads=-1", *FAST, cwd=tmp_path,
                    check=False, timeout=300)
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and "Traceback" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    assert err == ["ERROR ❌ 'threads=-1' is not valid: 'threads' must be an integer >= 1, or None (the runtime's default)."]


def test_missing_openvino_is_one_line_with_the_install_command(tmp_path):
    """OpenVINO made unimportable before the plugin loads: both keys that need it refuse in one line, no traceback."""
    code = (
        "import sys\n"
        "sys.modules['openvino'] = None\n"
        "import ultralytics.cfg as cfg\n"
        "for key in ('formats=onnx,openvino', 'runtime=openvino'):\n"
        f"    cfg.ARGV = ['yolo', 'prune', 'model=yolov8n.yaml', 'epochs=0', 'imgsz={IMGSZ}', key]\n"
        "    try:\n"
        "        cfg.entrypoint()\n"
        "    except SystemExit as e:\n"
        "        print('EXIT', e.code, file=sys.stderr)\n"
    )
    proc = run_python(code, cwd=tmp_path)
    err = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    assert err[1::2] == ["EXIT 2", "EXIT 2"], proc.stderr
    hint = 'install it with: pip install "ultralytics-prune-plugin[openvino]"'
    assert err[0].startswith("ERROR ❌ 'formats=onnx,openvino' asks for openvino, but openvino is not installed") and hint in err[0]
    assert err[2].startswith("ERROR ❌ 'runtime=openvino' cannot run here: openvino is not installed") and hint in err[2]
    assert not list(tmp_path.rglob("prune_report.json"))
