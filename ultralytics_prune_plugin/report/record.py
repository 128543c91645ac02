"""The record of a prune run: the shape of ``prune_report.json``'s parts, and writing it with its CSV and plot.

The report stays a plain dict, so it is exactly what ``prune_report.json`` holds and what ``YOLO.prune()`` returns;
the ``TypedDict`` classes below say which keys each part has. :func:`write_record` writes the three files that
mirror it, each atomically, after every change, so an interrupted run loses at most the step it was running.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, TypedDict

from ultralytics_prune_plugin.report.files import write_csv_atomic, write_json_atomic
from ultralytics_prune_plugin.report.plots import plot_prune_curve

REPORT_JSON = "prune_report.json"
STEPS_CSV = "prune_steps.csv"
CURVE_PNG = "prune_curve.png"
STEP_COLUMNS = [
    "step",
    "step_ratio",
    "channels_kept",
    "macs",
    "params",
    "latency_ms",
    "speedup",
    "latency_median_ms",
    "pruned_map50",
    "pruned_map50_95",
    "recovered_map50",
    "recovered_map50_95",
    "finetune_map50_95",
    "retry_lr0",
    "retry_map50_95",
    "step_model",
    "finetune_s",
    "within_budget",
]


class Measurement(TypedDict, total=False):
    """A model as measured by the run (``baseline``): cost, and the task's metric when the run has data."""

    macs: int
    params: int
    channels_kept: float  # fraction of the baseline's prunable output channels
    weights: str
    map50: float
    map50_95: float


class StepRow(TypedDict, total=False):
    """One prune step (one row of ``prune_steps.csv``)."""

    step: int
    step_ratio: float
    clamped_layers: int
    channels_kept: float
    macs: int
    params: int
    # measured right after pruning, interleaved with the input in runtime= at imgsz, batch 1, threads= (step_latency);
    # None when timing failed. latency_ms and speedup (input ms / step ms) from each model's fastest run (min_ms)
    latency_ms: Optional[float]
    speedup: Optional[float]
    latency_median_ms: Optional[float]
    input_latency_ms: Optional[float]
    input_latency_median_ms: Optional[float]
    pruned_map50: Optional[float]  # right after pruning
    pruned_map50_95: Optional[float]
    recovered_map50: float  # the step's model (step_model) after its fine-tune
    recovered_map50_95: float
    finetune_map50: Optional[float]  # the fine-tune's best, as validated by the run
    finetune_map50_95: Optional[float]
    # where the fine-tune ended below the pruned model: the retry from the pruned weights at lr0 / 10 (step_k_retry/)
    retry_lr0: float
    retry_map50: Optional[float]
    retry_map50_95: Optional[float]
    step_model: str  # what the step kept: 'fine-tune'; where it fell, 'retry' or 'pruned', whichever scored higher
    finetune_s: float
    within_budget: Optional[bool]  # None: no budget applied (no data, or epochs=0 without max_map_drop)
    weights: str


class FinalRecord(TypedDict, total=False):
    """The kept model: ``weights/pruned.pt``."""

    weights: str
    step: int  # 0: the unpruned model
    macs: int
    params: int
    map50: Optional[float]
    map50_95: Optional[float]
    rate_requested: float
    rate_reached: float


class PruneReport(TypedDict, total=False):
    """Everything in ``prune_report.json``."""

    args: Dict[str, Any]
    save_dir: str
    baseline: Measurement
    steps: List[StepRow]
    kept_step: int
    stop_reason: Optional[str]
    kept_whole: List[str]  # modules the architecture policy never prunes, e.g. 'model.10 (C2PSA)'
    run_overrides: Dict[str, Any]  # what a resume needs to go on with the same arguments
    step_latency: Dict[str, Any]  # how the steps' latency_ms / speedup were measured (runtime, threads, imgsz, runs)
    resumed: List[Dict[str, Any]]
    slim: Dict[str, Any]
    target_macs: Dict[str, Any]
    # round_to=auto: the chosen alignment; where measured, every candidate's MACs and time, and the alignments a latency
    # target made the run give up (fallbacks) (engine/alignment.py)
    round_to: Dict[str, Any]
    allocation: Dict[str, Any]  # allocation=latency: the tables, their load, and every layer's cost and weight
    # target_speedup / target_latency: the search (requested, runtime, threads, imgsz, candidates with their MACs
    # fraction, measured ms and speed-up, chosen_macs_fraction), and final_speedup, the kept model's measured speed-up
    latency_target: Dict[str, Any]
    final: FinalRecord
    onnx: Dict[str, Any]
    artefacts: List["ArtefactRow"]  # formats= / int8=: every artefact and the stock references, measured
    artefact_budget: Optional[float]  # the least main metric within max_map_drop; None when no budget applies
    finetune_lr0: float  # the fine-tunes' lr0 after a retry lowered it (absent when no fine-tune fell)


class ArtefactRow(TypedDict, total=False):
    """One deployable artefact (or stock FP32 reference) as exported, validated, sized and timed by the run."""

    model: str  # 'stock' (the input, the speed-up reference) or 'pruned' (weights/pruned.pt)
    format: str  # 'onnx', 'openvino'
    precision: str  # 'fp32', 'int8'
    path: str
    runtime: str  # what timed it: 'onnxruntime', 'openvino'
    threads: Optional[int]  # None: the runtime's default
    map50: Optional[float]  # the task's metrics, validated on the artefact (batch 1, no rectangular batches)
    map50_95: Optional[float]
    latency_ms: float  # median, batch 1, interleaved with the other artefacts
    latency: Dict[str, float]
    speedup: float  # stock FP32 latency of the same format and runtime / this latency
    size_mib: float


def kept_row(report: PruneReport):
    """The record of the kept step (the baseline's when no step is kept)."""
    kept = report["kept_step"]
    return report["steps"][kept - 1] if kept else report["baseline"]


def final_record(report: PruneReport, weights: Path, rate: float) -> FinalRecord:
    """The kept step's cost and metric, as the run's result."""
    row = kept_row(report)
    return {
        "weights": str(weights),
        "step": report["kept_step"],
        "macs": row["macs"],
        "params": row["params"],
        "map50": row.get("recovered_map50", row.get("pruned_map50", row.get("map50"))),
        "map50_95": row.get("recovered_map50_95", row.get("pruned_map50_95", row.get("map50_95"))),
        "rate_requested": rate,
        "rate_reached": 1.0 - row["channels_kept"],  # fraction of the prunable channels removed
    }


def write_record(save_dir: Path, report: PruneReport, budget: Optional[float] = None) -> None:
    """Write ``prune_steps.csv``, ``prune_report.json`` and (once a step exists) ``prune_curve.png``.

    Args:
        save_dir: The run folder.
        report: The run's report.
        budget: The lowest mAP50-95 within ``max_map_drop``, drawn on the plot, or None.
    """
    write_csv_atomic(save_dir / STEPS_CSV, report["steps"], STEP_COLUMNS)
    write_json_atomic(save_dir / REPORT_JSON, report)
    if report["steps"]:
        plot_prune_curve(
            report["baseline"], report["steps"], save_dir / CURVE_PNG, kept_step=report["kept_step"], budget=budget,
            runtime=(report.get("step_latency") or {}).get("runtime"),
        )
