"""The table printed at the end of ``yolo prune``: baseline against result, with what changed."""

from __future__ import annotations

from typing import Any

from ultralytics.utils import colorstr

from ultralytics_prune_plugin.report.record import PruneReport

PREFIX = colorstr("prune: ")


def summary_table(report: PruneReport, imgsz: int) -> str:
    """Return the baseline-against-final table of a finished run's ``report``.

    Costs (MACs, params, sizes, latency) show how many times smaller the result is; scores (mAP) show the change
    itself, never a ratio. The requested rate (or ``target_macs``) is shown next to what was reached.
    """
    from ultralytics_prune_plugin.engine.tasks import metric_names

    base, final, onnx = report["baseline"], report["final"], report.get("onnx", {})
    lat = onnx.get("latency_ms", {})
    secondary, main = metric_names(report["args"].get("task", "detect"))  # e.g. mask mAP50, mask mAP50-95
    scores = {secondary, main}
    rows = [
        ("MACs (G)", base["macs"] / 1e9, final["macs"] / 1e9, "{:.3f}"),
        ("params", base["params"], final["params"], "{:,}"),
        (secondary, base.get("map50"), final.get("map50"), "{:.4f}"),
        (main, base.get("map50_95"), final.get("map50_95"), "{:.4f}"),
        (".pt size (MB)", onnx.get("pt_file_mb", {}).get("baseline"), onnx.get("pt_file_mb", {}).get("pruned"), "{:.2f}"),
        ("ONNX size (MB)", onnx.get("file_mb", {}).get("baseline"), onnx.get("file_mb", {}).get("pruned"), "{:.2f}"),
        (
            "ORT CPU latency b1 (ms)",
            lat.get("baseline", {}).get("median_ms"),
            lat.get("pruned", {}).get("median_ms"),
            "{:.2f}",
        ),
    ]
    lines = [
        f"\n{PREFIX}summary (imgsz={imgsz}, kept step {final['step']})",
        f"{'':<24}{'baseline':>14}{'pruned':>14}  change",
    ]
    for label, a, b, fmt in rows:
        known = isinstance(a, (int, float)) and isinstance(b, (int, float))
        if known and label in scores:  # a score: the change itself, never a ratio
            change = f"{_signed(b - a, '{:.3f}')} ({_signed((b - a) / a * 100, '{:.1f}')} %)" if a else ""
        else:  # a cost: how many times smaller
            change = f"{a / b:.2f}x smaller" if known and b else ""
        lines.append(f"{label:<24}{fmt_value(a, fmt):>14}{fmt_value(b, fmt):>14}  {change}")
    if final.get("rate_requested") is not None:
        applied = report.get("slim", {}).get("applied_rate")
        lines.append(
            f"{'channels removed':<24}{'rate=' + format(final['rate_requested'], 'g'):>14}"
            f"{final['rate_reached']:>14.3f}  (requested; right: reached by the kept step"
            + (f", slim applied {applied:.3f}" if applied is not None else "")
            + ")"
        )
    target = report.get("target_macs")
    if target is not None:
        met = "met" if target["met"] else "not met"
        lines.append(
            f"{'target MACs (G)':<24}{target['goal_macs'] / 1e9:>14.3f}{target['reached_macs'] / 1e9:>14.3f}{met:>9}"
            f"  ({target.get('key', 'target_macs')}={target['requested']:g}; right: reached)"
        )
    if "speedup" in onnx:
        dfl = "  (fast_dfl=True: both exported alike)" if onnx.get("fast_dfl") else ""
        lines.append(f"{'speed-up (ORT)':<24}{onnx['speedup']:>37.2f}x{dfl}")
        lines.append(f"{'speed-up / MACs cut':<24}{onnx['speedup_per_macs_cut']:>37.2f}   (1.00: latency follows MACs)")
    if report.get("resumed"):
        at = ", ".join(f"step {r['at_step']} ({r['time']})" for r in report["resumed"])
        lines.append(f"{'resumed at':<24}{at}")
    if "onnx_map50_95" in onnx:
        lines.append(
            f"{'ONNX vs PyTorch':<24}{onnx['pytorch_map50_95']:>14.4f}{onnx['onnx_map50_95']:>14.4f}"
            f"  ({main}, batch 1, same data)"
        )
    return "\n".join(lines)


def _signed(value: float, fmt: str) -> str:
    """Format ``value`` with an explicit sign, a true minus sign for negatives."""
    text = fmt.format(abs(value))
    return ("−" if value < 0 else "+") + text


def fmt_value(value: Any, fmt: str = "{:.4f}") -> str:
    """Format a number, or '-' when it is unknown."""
    return "-" if value is None else fmt.format(value)
