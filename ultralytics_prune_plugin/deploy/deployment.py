"""The deployment check at the end of a prune run: both models exported to ONNX, the result validated in ONNX
Runtime against its PyTorch metric, and both timed.

Both ONNX files are exported alike (``fast_dfl`` included), so the reported speed-up compares like with like.
"""

from __future__ import annotations

import filecmp
from pathlib import Path
from typing import Any, Callable, Dict, Optional


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
