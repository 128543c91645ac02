"""The table printed at the end of ``yolo prune``: baseline against result, with what changed."""

from __future__ import annotations

from typing import Any, List

from ultralytics.utils import colorstr

from ultralytics_prune_plugin.report.record import PruneReport

PREFIX = colorstr("prune: ")
LABEL, COLUMN = 24, 12  # widths of the label and of each number column


def summary_table(report: PruneReport, imgsz: int) -> str:
    """Return the baseline-against-result table of a finished run's ``report``, then one line per note.

    Every number sits under the column of the model it measures: ``baseline`` (the input) and ``pruned`` (the kept
    step, ``weights/pruned.pt``); the last column says what changed. Costs (MACs, params, file sizes) show how many
    times fewer or smaller, latency how many times faster, scores (the task's metrics) the change itself, never a
    ratio. When no step is kept, ``pruned.pt`` is the input itself and the table says so instead of comparing two
    timings of one model. Below the table: the MACs target against what was reached, and the ONNX Runtime check of
    ``pruned.onnx``, whose metric is measured differently from the table's (batch 1, no rectangular batches).
    File sizes are in MiB (2**20 bytes).
    """
    base, final, onnx = report["baseline"], report["final"], report.get("onnx", {})
    lat = onnx.get("latency_ms", {})
    secondary, main = report["metrics"]["map50"], report["metrics"]["map50_95"]  # e.g. mask mAP50, mask mAP50-95
    same = final["step"] == 0  # pruned.pt is a copy of the input
    steps = len(report.get("steps", []))
    kept = (
        "no step kept: weights/pruned.pt is the unpruned input" if same
        else f"step {final['step']} of {steps} kept (weights/pruned.pt)"
    )
    lines = [
        f"\n{PREFIX}summary at imgsz={imgsz}: {kept}",
        f"{'':<{LABEL}}{'baseline':>{COLUMN}}{'pruned':>{COLUMN}}  pruned against baseline",
    ]

    def row(label: str, a: Any, b: Any, fmt: str, change: str) -> None:
        if a is None and b is None:
            return
        known = isinstance(a, (int, float)) and isinstance(b, (int, float))
        text = "same model" if same and known else change if known else ""
        lines.append(f"{label:<{LABEL}}{fmt_value(a, fmt):>{COLUMN}}{fmt_value(b, fmt):>{COLUMN}}  {text}".rstrip())

    def times(a: Any, b: Any, word: str) -> str:
        return f"{a / b:.2f}× {word}" if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else ""

    def change(a: Any, b: Any) -> str:
        if not (isinstance(a, (int, float)) and isinstance(b, (int, float))):
            return ""
        return f"{_signed(b - a, '{:.3f}')}" + (f" ({_signed((b - a) / a * 100, '{:.1f}')} %)" if a else "")

    row("MACs (G)", base["macs"] / 1e9, final["macs"] / 1e9, "{:.3f}", times(base["macs"], final["macs"], "fewer"))
    row("params", base["params"], final["params"], "{:,}", times(base["params"], final["params"], "fewer"))
    for label, key in ((secondary, "map50"), (main, "map50_95")):
        row(label, base.get(key), final.get(key), "{:.4f}", change(base.get(key), final.get(key)))
    if final.get("rate_requested") is not None:
        applied = report.get("slim", {}).get("applied_rate")
        note = f"rate={final['rate_requested']:g} requested" + (
            f"; slim applied {applied:.3f}" if applied is not None and abs(applied - final["rate_reached"]) > 5e-4 else ""
        )
        lines.append(
            f"{'channels removed':<{LABEL}}{fmt_value(0.0, '{:.3f}'):>{COLUMN}}"
            f"{fmt_value(final['rate_reached'], '{:.3f}'):>{COLUMN}}  {note}"
        )
    for label, key in ((".pt file (MiB)", "pt_file_mb"), ("ONNX file (MiB)", "file_mb")):
        sizes = onnx.get(key, {})
        row(label, sizes.get("baseline"), sizes.get("pruned"), "{:.2f}", times(sizes.get("baseline"), sizes.get("pruned"), "smaller"))
    a, b = lat.get("baseline", {}).get("median_ms"), lat.get("pruned", {}).get("median_ms")
    faster = times(a, b, "faster")
    if faster and "speedup_per_macs_cut" in onnx:
        faster += (f" for {base['macs'] / final['macs']:.2f}× fewer MACs (speed-up ÷ MACs cut: "
                   f"{onnx['speedup_per_macs_cut']:.2f})")
    row("ORT CPU latency b1 (ms)", a, b, "{:.2f}", faster)
    lines.extend(_notes(report, main))
    return "\n".join(lines)


def _notes(report: PruneReport, main: str) -> List[str]:
    """The lines below the table: MACs target, ONNX file options, the ONNX Runtime check, resumes."""
    onnx, final, notes = report.get("onnx", {}), report["final"], []
    target = report.get("target_macs")
    if target is not None:
        notes.append(
            f"{target.get('key', 'target_macs')}={target['requested']:g}: a goal of {target['goal_macs'] / 1e9:.3f} "
            f"GMACs; the kept model has {target['reached_macs'] / 1e9:.3f}: " + ("met" if target["met"] else "not met")
        )
    if onnx.get("fast_dfl"):
        notes.append("fast_dfl=True: both ONNX files exported with it, so the latencies compare like with like")
    if "onnx_map50_95" in onnx:
        agree = "agree within 0.01" if onnx.get("onnx_agrees", True) else "differ by more than 0.01"
        table = final.get("map50_95")
        notes.append(
            f"ONNX Runtime check of weights/pruned.onnx: {main} {onnx['onnx_map50_95']:.4f} in ONNX Runtime, "
            f"{onnx['pytorch_map50_95']:.4f} in PyTorch: {agree}\n  (both at batch 1 without rectangular batches, as "
            "Ultralytics validates ONNX models"
            + (f"; the table's {table:.4f} is with them)" if isinstance(table, (int, float)) else ")")
        )
    if report.get("resumed"):
        notes.append("resumed at " + ", ".join(f"step {r['at_step']} ({r['time']})" for r in report["resumed"]))
    return notes


def _signed(value: float, fmt: str) -> str:
    """Format ``value`` with an explicit sign, a true minus sign for negatives."""
    text = fmt.format(abs(value))
    return ("−" if value < 0 else "+") + text


def fmt_value(value: Any, fmt: str = "{:.4f}") -> str:
    """Format a number, or '-' when it is unknown."""
    return "-" if value is None else fmt.format(value)
