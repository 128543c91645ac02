"""The deployment check at the end of a prune run: both models exported to ONNX, the result validated in ONNX
Runtime against its PyTorch metric, and both timed (:func:`deployment_record`); then the artefacts of every format
asked for, each validated, sized and timed against the stock model in its runtime (:func:`artefact_records`).

Both ONNX files are exported alike (``fast_dfl`` included), so the reported speed-up compares like with like.
"""

from __future__ import annotations

import filecmp
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence


def deployment_record(
    weights_dir: Path,
    imgsz: int,
    fast_dfl: bool,
    macs_cut: float,
    data: Optional[str] = None,
    task: str = "detect",
    validate_pytorch: Optional[Callable[[Path], Dict[str, float]]] = None,
    val_dir: Optional[Path] = None,
) -> Dict[str, Any]:
    """Export ``weights/baseline.pt`` and ``weights/pruned.pt``, check the result in ONNX Runtime, time both.

    Args:
        weights_dir: The run's ``weights/`` folder.
        imgsz: Export and validation image size.
        fast_dfl: Export the DFL with a last-axis softmax (both files).
        macs_cut: Baseline MACs over result MACs, to relate the speed-up to.
        data: The dataset to validate the ONNX model on, or None (no metric check).
        task: The model's task, whose metric the check compares.
        validate_pytorch: Validates a ``.pt`` file at batch 1 the way the ONNX model is validated; needed with data.
        val_dir: Where the ONNX validation run goes.

    Returns:
        The report's ``onnx`` record: paths, file sizes (``file_mb`` of the ONNX files, ``pt_file_mb`` of the
        checkpoints, both in MiB), metrics of both back-ends and whether they agree within 0.01, the ONNX Runtime
        provider, latencies, speed-up and speed-up per MACs cut. When ``pruned.pt`` is the input itself (no step
        kept), the one model is timed once and both latencies are that timing.
    """
    from ultralytics.utils import LOGGER, colorstr

    from ultralytics_prune_plugin.deploy.onnx import export_onnx, measure_latency, onnx_file_mb, validate_onnx
    from ultralytics_prune_plugin.report.console import SPEED, hidden, quiet

    names = ("baseline", "pruned")
    with quiet():  # the input's export is only timed: Ultralytics' lines for it would repeat the result's
        onnx = {"baseline": export_onnx(weights_dir / "baseline.pt", imgsz, fast_dfl=fast_dfl)}
    LOGGER.info(f"{colorstr('prune: ')}exported the input alike for timing: {onnx['baseline']}")
    onnx["pruned"] = export_onnx(weights_dir / "pruned.pt", imgsz, fast_dfl=fast_dfl)
    same = filecmp.cmp(weights_dir / "baseline.pt", weights_dir / "pruned.pt", shallow=False)  # no step kept
    record: Dict[str, Any] = {
        "pruned_onnx": str(onnx["pruned"]),
        "fast_dfl": fast_dfl,
        "file_mb": {name: onnx_file_mb(path) for name, path in onnx.items()},  # MiB, as Ultralytics' "MB"
        "pt_file_mb": {name: onnx_file_mb(weights_dir / f"{name}.pt") for name in names},  # MiB too
    }
    if data is not None:
        torch_map = validate_pytorch(weights_dir / "pruned.pt")
        with hidden(SPEED):
            ort_map = validate_onnx(onnx["pruned"], data, imgsz, task=task, project=val_dir, name="pruned_onnx",
                                    plots=False, verbose=False)
        record.update(
            pytorch_map50=torch_map["map50"],
            pytorch_map50_95=torch_map["map50_95"],
            onnx_map50=ort_map["map50"],
            onnx_map50_95=ort_map["map50_95"],
            onnx_provider=ort_map.get("provider"),
            onnx_agrees=abs(ort_map["map50_95"] - torch_map["map50_95"]) <= 0.01,
        )
    if same:  # one model: time it once, so that noise cannot make it look faster or slower than itself
        latency = measure_latency({"baseline": onnx["baseline"]}, imgsz, runs=30, warmup=5)
        latency["pruned"] = dict(latency["baseline"])
    else:
        latency = measure_latency(onnx, imgsz, runs=30, warmup=5)
    record["latency_ms"] = latency
    record["speedup"] = latency["baseline"]["median_ms"] / latency["pruned"]["median_ms"]
    record["speedup_per_macs_cut"] = record["speedup"] / macs_cut  # 1.0: latency falls exactly as the MACs do
    return record


def artefact_records(
    weights_dir: Path,
    imgsz: int,
    onnx_record: Dict[str, Any],
    formats: Sequence[str] = ("onnx",),
    int8: bool = False,
    runtime: str = "onnxruntime",
    threads: Optional[int] = None,
    data: Optional[str] = None,
    task: str = "detect",
    val_dir: Optional[Path] = None,
    fast_dfl: bool = False,
) -> List[Dict[str, Any]]:
    """Export the kept model in every format (and INT8 when asked), validate and size each artefact, and time them
    all interleaved against the stock (input) model's FP32 artefact of the same format and runtime.

    ``weights/pruned.onnx`` and ``weights/baseline.onnx`` (:func:`deployment_record`) are reused: validated and timed
    there already, they are timed again only when another runtime, thread count or artefact joins the timing.

    Args:
        weights_dir: The run's ``weights/`` folder, which holds ``baseline.pt``, ``pruned.pt`` and their ``.onnx``;
            new artefacts go there under free names.
        imgsz: Export, validation and timing size.
        onnx_record: The report's ``onnx`` record of :func:`deployment_record`.
        formats: The formats asked for (``formats=``).
        int8: Add an INT8 artefact per format, calibrated on the training images of ``data``.
        runtime: The runtime that times ONNX files; other formats are timed in their own.
        threads: Threads per model when timing, or None for the runtime's default.
        data: The run's dataset, or None (no mAP).
        task: The model's task.
        val_dir: Where the validation runs go.
        fast_dfl: Export ONNX artefacts with the last-axis DFL (as ``pruned.onnx`` was).

    Returns:
        One row per artefact, stock references first: ``model`` (``stock`` or ``pruned``), ``format``, ``precision``,
        ``path``, ``runtime``, ``threads``, ``map50``, ``map50_95``, ``latency_ms`` (median), ``latency`` (the
        summary), ``speedup`` (against the stock FP32 row of the same format and runtime) and ``size_mib``.
    """
    from ultralytics_prune_plugin.deploy.artefacts import (
        artefact_size_mib,
        export_artefact,
        timing_runtime,
        validate_artefact,
    )
    from ultralytics_prune_plugin.deploy.latency import time_models
    from ultralytics_prune_plugin.report.console import SPEED, hidden, quiet

    rows: List[Dict[str, Any]] = []

    def add(model: str, fmt: str, precision: str, path: Path) -> Dict[str, Any]:
        row = {"model": model, "format": fmt, "precision": precision, "path": str(path),
               "runtime": timing_runtime(fmt, runtime), "threads": threads, "map50": None, "map50_95": None}
        rows.append(row)
        return row

    with quiet():  # the stock references are only timed: the exporter's lines for them would repeat the result's
        for fmt in formats:
            stock = weights_dir / "baseline.onnx" if fmt == "onnx" else export_artefact(
                weights_dir / "baseline.pt", fmt, imgsz, weights_dir, fast_dfl=fast_dfl)
            add("stock", fmt, "fp32", stock)
    for fmt in formats:
        pruned = add("pruned", fmt, "fp32", weights_dir / "pruned.onnx" if fmt == "onnx" else export_artefact(
            weights_dir / "pruned.pt", fmt, imgsz, weights_dir, fast_dfl=fast_dfl))
        if fmt == "onnx" and "onnx_map50_95" in onnx_record:  # validated by deployment_record already
            pruned.update(map50=onnx_record["onnx_map50"], map50_95=onnx_record["onnx_map50_95"])
        if int8:
            add("pruned", fmt, "int8", export_artefact(weights_dir / "pruned.pt", fmt, imgsz, weights_dir, int8=True,
                                                        data=data, fast_dfl=fast_dfl))
    for row in rows:
        row["size_mib"] = artefact_size_mib(row["path"])
        if data is None or row["model"] == "stock" or row["map50_95"] is not None:
            continue
        name = f"pruned_{row['format']}_{row['precision']}"
        with hidden(SPEED):
            metrics = validate_artefact(row["path"], data, imgsz, task=task, project=val_dir, name=name, plots=False,
                                        verbose=False)
        row.update(map50=metrics["map50"], map50_95=metrics["map50_95"])
    _time_rows(rows, imgsz, threads, onnx_record, time_models)
    return rows


def _time_rows(rows, imgsz, threads, onnx_record, time_models) -> None:
    """Time every row (interleaved, in one process) and set ``latency``, ``latency_ms`` and ``speedup``."""
    def label(row):
        return f"{row['model']}_{row['format']}_{row['precision']}_{row['runtime']}"

    measured = onnx_record.get("latency_ms", {})
    reuse = all(r["format"] == "onnx" and r["precision"] == "fp32" and r["runtime"] == "onnxruntime" for r in rows)
    if reuse and threads is None and {"baseline", "pruned"} <= set(measured):  # already timed exactly so
        latency = {label(r): measured["baseline" if r["model"] == "stock" else "pruned"] for r in rows}
    else:
        latency = time_models({label(r): (r["runtime"], r["path"]) for r in rows}, imgsz, runs=30, warmup=5,
                              threads=threads)
    for row in rows:
        row["latency"] = latency[label(row)]
        row["latency_ms"] = row["latency"]["median_ms"]
    for row in rows:
        stock = next(r for r in rows if r["model"] == "stock" and r["format"] == row["format"]
                     and r["runtime"] == row["runtime"])
        row["speedup"] = stock["latency_ms"] / row["latency_ms"]
