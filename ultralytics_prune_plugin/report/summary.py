"""The table printed at the end of ``yolo prune``: baseline against result, with what changed."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional

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
    lines.extend(artefact_lines(report))
    return "\n".join(lines)


def artefact_lines(report: PruneReport) -> List[str]:
    """The artefact table that ends the summary, one row per artefact of ``report["artefacts"]``, then one line
    naming the fastest pruned artefact whose main metric is within the run's ``max_map_drop`` budget.

    The budget is ``report["artefact_budget"]``: the least main metric allowed (baseline minus ``max_map_drop``), or
    None when no budget applies (no data, or ``epochs=0`` without an explicit ``max_map_drop``). Speed-ups are
    against the stock (input) model's FP32 artefact of the same format in the same runtime.

    A run that asked for no more than the default ONNX FP32 files gets no table: its two rows would repeat the
    summary's ONNX size, latency and ONNX Runtime check (``prune_report.json`` keeps them as ``artefacts``).
    """
    rows = report.get("artefacts") or []
    if all(r["format"] == "onnx" and r["precision"] == "fp32" for r in rows):
        return []
    secondary, main = report["metrics"]["map50"], report["metrics"]["map50_95"]
    threads = rows[0].get("threads")
    header = (f"{'model':<7}{'format':<9}{'precision':<10}{'runtime':<12}{main:>14}{secondary:>14}{'latency ms':>11}"
              f"{'speed-up':>9}{'MiB':>8}  artefact")
    lines = [f"\n{PREFIX}artefacts, timed interleaved at batch 1, threads={threads if threads else 'runtime default'}:",
             header]
    for r in rows:
        lines.append(
            f"{r['model']:<7}{r['format']:<9}{r['precision']:<10}{r['runtime']:<12}{fmt_value(r.get('map50_95')):>14}"
            f"{fmt_value(r.get('map50')):>14}{fmt_value(r.get('latency_ms'), '{:.2f}'):>11}"
            f"{fmt_value(r.get('speedup'), '{:.2f}×'):>9}{fmt_value(r.get('size_mib'), '{:.2f}'):>8}  "
            f"{Path(r['path']).name}"
        )
    lines.append(fastest_line(report))
    return lines


def fastest_artefact(report: PruneReport) -> Optional[Dict[str, Any]]:
    """The pruned artefact with the lowest latency whose main metric is within the budget (any, when none applies)."""
    budget = report.get("artefact_budget")
    rows = [r for r in report.get("artefacts") or [] if r["model"] == "pruned" and r.get("latency_ms") is not None]
    if budget is not None:
        rows = [r for r in rows if r.get("map50_95") is not None and r["map50_95"] >= budget]
    return min(rows, key=lambda r: r["latency_ms"], default=None)


def fastest_line(report: PruneReport) -> str:
    """One line naming the fastest artefact within the ``max_map_drop`` budget, or saying that none is."""
    main = report["metrics"]["map50_95"]
    budget = report.get("artefact_budget")
    drop = report.get("args", {}).get("max_map_drop")
    if budget is None:
        within = "(no mAP budget applies to this run)"
    elif budget <= 0:
        within = f"within max_map_drop={drop} (any {main}: the budget exceeds the baseline's)"
    else:
        within = f"within max_map_drop={drop} ({main} >= {budget:.4f})"
    best = fastest_artefact(report)
    if best is None:
        return f"{PREFIX}no pruned artefact is {within}; deploy the stock model or relax max_map_drop"
    return (f"{PREFIX}fastest artefact {within}: {Path(best['path']).name} ({best['format']} {best['precision']} in "
            f"{best['runtime']}), {best['latency_ms']:.2f} ms, {best['speedup']:.2f}× the stock FP32 model's speed")


def _notes(report: PruneReport, main: str) -> List[str]:
    """The lines below the table: MACs target, ONNX file options, the ONNX Runtime check, resumes."""
    onnx, final, notes = report.get("onnx", {}), report["final"], []
    target = report.get("target_macs")
    if target is not None:
        notes.append(
            f"{target.get('key', 'target_macs')}={target['requested']:g}: a goal of {target['goal_macs'] / 1e9:.3f} "
            f"GMACs; the kept model has {target['reached_macs'] / 1e9:.3f}: " + ("met" if target["met"] else "not met")
        )
    latency = report.get("latency_target")
    if latency and latency.get("chosen_macs_fraction") is not None:
        final_speedup = latency.get("final_speedup")
        measured = (f"the kept model measures {final_speedup:.2f}× in {latency.get('final_measured_in')} at the end"
                    if final_speedup is not None else "the kept model was not timed")
        notes.append(
            f"{latency['key']}={latency['requested']:g} in {latency['runtime']} (threads={latency['threads']}, "
            f"imgsz={latency['imgsz']}, batch 1): target_macs={latency['chosen_macs_fraction']:.3f} found by timing "
            f"{len(latency['candidates'])} candidate(s), {latency['chosen_speedup']:.2f}× on its candidate; "
            + measured + (f" (requested {_requested_speedup(latency):.2f}×)" if _requested_speedup(latency) else "")
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


def _requested_speedup(latency: Dict[str, Any]) -> Optional[float]:
    """The speed-up a latency target asks for: ``target_speedup`` itself, or the input's latency over
    ``target_latency`` as the search measured it."""
    if latency["key"] == "target_speedup":
        return latency["requested"]
    return latency["input_ms"] / latency["requested"] if latency.get("input_ms") else None


def _signed(value: float, fmt: str) -> str:
    """Format ``value`` with an explicit sign, a true minus sign for negatives."""
    text = fmt.format(abs(value))
    return ("−" if value < 0 else "+") + text


def fmt_value(value: Any, fmt: str = "{:.4f}") -> str:
    """Format a number, or '-' when it is unknown."""
    return "-" if value is None else fmt.format(value)
