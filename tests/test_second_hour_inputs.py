"""A newcomer's second hour (issue 20, points 8, 9, 10, 12): what the Python object holds after ``prune()``, bad
``epochs`` and untrained model YAMLs on the real ``yolo`` command line, and the readability of the two plots.

* Python: after ``m.prune(...)``, ``m`` holds the kept model (``weights/pruned.pt``), as ``train()`` holds its result,
  and ``m.val()`` / ``m.export()`` work on it.
* ``yolo prune epochs=-1`` is one error line that names the valid range (``epochs=0`` is valid in prune mode).
* ``yolo prune model=yolov8n.yaml`` warns in one line that the model is untrained and keeps its 80 placeholder
  classes, naming the data's class count.
* The prune curve's legend and the γ histogram's legend cover no curve; the histogram's |γ| tick labels do not
  overlap and its colour bar names only recorded epochs; drawing either plot leaves matplotlib's backend as it was.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest

from conftest import FAST, IMGSZ, run_python, run_yolo

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _plain(proc) -> str:
    return ANSI.sub("", proc.stdout + proc.stderr)


def _params(module) -> int:
    return sum(p.numel() for p in module.parameters())


# Point 8: the Python object after prune() ----------------------------------------------------------------------------
def test_python_prune_leaves_the_kept_model_in_the_object(trained, dataset, tmp_path):
    import onnx
    from ultralytics import YOLO
    from ultralytics.utils import LOGGER

    class Collect(logging.Handler):
        def __init__(self):
            super().__init__()
            self.lines = []

        def emit(self, record):
            self.lines.append(record.getMessage())

    m = YOLO(str(trained["best"]))
    before = _params(m.model)
    collect = Collect()
    LOGGER.addHandler(collect)
    try:
        report = m.prune(data=str(dataset), rate=0.5, iterative_steps=1, epochs=0, imgsz=IMGSZ, batch=16, workers=0,
                         project=str(tmp_path / "runs"), name="py", deterministic=False)
    finally:
        LOGGER.removeHandler(collect)
    final = Path(report["final"]["weights"])
    assert report["final"]["step"] == 1 and report["final"]["params"] < before

    # the object now holds the kept model, loaded from pruned.pt as YOLO(pruned.pt) would load it
    assert _params(m.model) == report["final"]["params"] == _params(YOLO(str(final)).model)
    assert Path(m.ckpt_path).resolve() == final.resolve()
    assert Path(m.overrides["model"]).resolve() == final.resolve() and m.ckpt and m.task == "detect"
    assert Path(m.model.pt_path).resolve() == final.resolve()
    # a trained checkpoint is not an untrained model YAML (point 10's warning is for YAMLs only)
    assert any("results saved to" in line for line in collect.lines), collect.lines  # the run's log was collected
    assert not any("untrained model" in line for line in collect.lines), collect.lines

    # val() reads the data and imgsz that pruned.pt records, and measures the kept model
    metrics = m.val(batch=16, workers=0, plots=False, project=str(tmp_path / "val"), name="v")
    assert metrics.box.map == pytest.approx(report["final"]["map50_95"], abs=0.02)

    onnx_file = Path(m.export(format="onnx", imgsz=IMGSZ))
    assert onnx_file.resolve() == final.with_suffix(".onnx").resolve()

    def weights(path):
        return sum(int(np.prod(t.dims)) for t in onnx.load(str(path)).graph.initializer)

    assert weights(onnx_file) < 0.9 * weights(final.parent / "baseline.onnx")


# Point 9: epochs=-1 --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("epochs", ["-1", "1.5"])
def test_bad_epochs_is_one_line_that_names_the_range(epochs, tmp_path):
    proc = run_yolo("prune", "model=yolov8n.yaml", f"epochs={epochs}", f"imgsz={IMGSZ}", cwd=tmp_path, check=False,
                    timeout=300)
    out = _plain(proc)
    assert proc.returncode == 2 and "Traceback" not in out, out
    assert proc.stderr.strip().splitlines() == [
        f"ERROR ❌ 'epochs={epochs}' is not valid: in prune mode 'epochs' is each step's fine-tune length, an integer "
        ">= 0 (0: prune only, no fine-tune)."
    ], out
    assert not (tmp_path / "runs").exists()  # refused before the run folder is made


# Point 10: an untrained model YAML -----------------------------------------------------------------------------------
def test_pruning_an_untrained_yaml_warns_in_one_line(dataset, tmp_path):
    proc = run_yolo("prune", "model=yolov8n.yaml", f"data={dataset}", "epochs=0", "iterative_steps=1", "rate=0.3",
                    f"imgsz={IMGSZ}", "batch=16", "workers=0", *FAST, "name=yaml_input", cwd=tmp_path, timeout=600)
    lines = [line for line in _plain(proc).splitlines() if "untrained model" in line]
    assert len(lines) == 1, _plain(proc)
    line = lines[0]
    assert "'model=yolov8n.yaml' is an untrained model YAML" in line and "80 placeholder classes" in line
    assert f"data={dataset} has 2" in line and "train it first" in line
    assert line.startswith("WARNING ⚠️ ") and line.count("WARNING") == 1, line  # one prefix on 8.1 and 8.4 alike
    report = json.loads((tmp_path / "runs" / "detect" / "yaml_input" / "prune_report.json").read_text())
    assert report["final"]["step"] == 1  # a warning, not a refusal


# Point 12: the plots -------------------------------------------------------------------------------------------------
def _overlap(a, b) -> bool:
    """True when two display-space boxes share an area (touching edges do not count)."""
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def _legend_clear_of_curves(fig, axes):
    """The legend of ``axes[0]`` lies in the figure, outside every axes, and on no plotted point."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legend = axes[0].get_legend()
    box = legend.get_window_extent(renderer)
    assert fig.bbox.x0 <= box.x0 and box.x1 <= fig.bbox.x1 and fig.bbox.y0 <= box.y0 and box.y1 <= fig.bbox.y1, (
        "the legend is cut off", box, fig.bbox)
    for ax in axes:
        assert not _overlap(box, ax.get_window_extent(renderer)), ("the legend lies on the plot", box)
        for line in ax.get_lines():
            points = line.get_transform().transform(np.asarray(line.get_xydata(), dtype=float))
            inside = [p for p in points if box.contains(*p)]
            assert not inside, (line.get_label(), inside)


@pytest.mark.parametrize("timed", [False, True], ids=["macs", "measured speed-up"])
@pytest.mark.parametrize("level", [0.03, 0.9])
def test_prune_curve_legend_covers_no_curve(level, timed):
    from ultralytics_prune_plugin.report.plots import prune_curve_figure

    baseline = {"params": 3.0e6, "macs": 4.4e9, "map50_95": level}
    steps = [{"params": 3.0e6 * f, "macs": 4.4e9 * f, "pruned_map50_95": level * f * 0.3,
              "recovered_map50_95": level * f * 0.9, **({"speedup": 0.75 / f} if timed else {})}
             for f in (0.8, 0.6, 0.45, 0.35)]
    if timed:
        steps[1]["speedup"] = None  # a step whose timing failed is left out of the curve
    fig = prune_curve_figure(baseline, steps, kept_step=3, budget=level / 3, runtime="onnxruntime")
    _legend_clear_of_curves(fig, fig.axes)
    assert len(fig.axes) == (3 if timed else 2)  # the mAP panel and its MACs axis, and the speed-up panel above
    if timed:
        top = fig.axes[2]
        assert top.get_window_extent().y0 >= fig.axes[0].get_window_extent().y1  # above the mAP panel
        curves = {line.get_label(): line.get_xydata() for line in top.get_lines()}
        speed = curves["measured speed-up (×, fastest run, onnxruntime)"]
        assert [tuple(p) for p in speed] == [(1.0, 1.0)] + [(f, 0.75 / f) for f in (0.8, 0.45, 0.35)]
        assert [p[1] for p in curves["MACs cut (×)"]] == pytest.approx([1.0] + [1 / f for f in (0.8, 0.6, 0.45, 0.35)])


def _gamma_runs():
    """|γ| histograms of short runs (1 and 3 epochs, ranges of one to two decades) and of a 6-epoch run."""
    import torch

    from ultralytics_prune_plugin.pruning.sparsity import gamma_histogram

    generator = torch.Generator().manual_seed(0)

    def spread(low, high):
        u = torch.rand(3000, generator=generator)
        return gamma_histogram(torch.exp(np.log(low) + u * (np.log(high) - np.log(low))))

    return {
        "1 epoch, 0.5-1.2": {1: spread(0.5, 1.2)},
        "1 epoch, 0.2-3": {1: spread(0.2, 3.0)},
        "3 epochs, 0.3-1.5": {e: spread(0.3 / e, 1.5) for e in (1, 2, 3)},
        "6 epochs, 0.05-1.5": {e: spread(0.3 / e, 1.5) for e in range(1, 7)},
    }


@pytest.mark.parametrize("name", list(_gamma_runs()))
def test_gamma_histogram_is_readable_for_short_runs(name):
    from ultralytics_prune_plugin.pruning.sparsity import gamma_histogram_figure

    histograms = _gamma_runs()[name]
    fig = gamma_histogram_figure(histograms)
    ax = fig.axes[0]
    _legend_clear_of_curves(fig, [ax])
    renderer = fig.canvas.get_renderer()
    low, high = ax.get_xlim()
    labels = [t for t in ax.get_xticklabels(which="both") if t.get_visible() and t.get_text()
              and low <= t.get_position()[0] <= high]
    assert len(labels) >= 2, [t.get_text() for t in labels]  # at least two values to read the scale from
    boxes = [t.get_window_extent(renderer) for t in labels]
    clashes = [(labels[i].get_text(), labels[j].get_text()) for i, j in itertools.combinations(range(len(boxes)), 2)
               if _overlap(boxes[i], boxes[j])]
    assert not clashes, clashes
    # a colour bar, where there is one, names recorded epochs only (a 1-epoch run has no epoch 2)
    for bar in fig.axes[1:]:
        vmin, vmax = sorted(bar.get_ylim())
        ticks = [t for t in bar.get_yticks() if vmin <= t <= vmax]
        assert ticks and set(ticks) <= set(histograms), (ticks, sorted(histograms))
    if len(histograms) <= 3:  # every curve is in the legend: no colour bar to explain them
        assert len(fig.axes) == 1


def test_plots_leave_the_matplotlib_backend_alone(tmp_path):
    code = f"""
import matplotlib
matplotlib.use("svg")
import matplotlib.pyplot as plt
from pathlib import Path
from ultralytics_prune_plugin.report.plots import plot_prune_curve
from ultralytics_prune_plugin.pruning.sparsity import plot_histograms
base = {{"params": 3.0e6, "macs": 4.4e9, "map50_95": 0.5}}
steps = [{{"params": 1.5e6, "macs": 2.2e9, "pruned_map50_95": 0.2, "recovered_map50_95": 0.45}}]
plot_prune_curve(base, steps, Path({str(tmp_path / 'curve.png')!r}), kept_step=1, budget=0.3)
plot_histograms({{1: [0] * 60 + [5, 20, 30, 10] + [0] * 6}}, Path({str(tmp_path / 'gamma.png')!r}))
print("backend", matplotlib.get_backend(), "figures", plt.get_fignums())
"""
    proc = run_python(code, cwd=tmp_path, timeout=300)
    assert proc.stdout.strip().splitlines()[-1] == "backend svg figures []", _plain(proc)
    assert (tmp_path / "curve.png").stat().st_size > 5000 and (tmp_path / "gamma.png").stat().st_size > 5000
