"""Tables and plots of the real-data benchmark, from the record that :mod:`real_prune` keeps (``results_real.json``).

Writes ``<out>.md`` beside the record: the converged inputs, the continuations (the collapse check), the default
recipe against its input and its control, and prune-big-or-train-small at equal MACs and at equal measured latency;
and two plots, mAP50-95 against GMACs and against ONNX Runtime latency, with the unpruned inputs (the stock ``n`` and
``s`` models trained here) as reference points.

Usage::

    python benchmarks/real_report.py                       # benchmarks/results_real.json -> results_real.md, plots
    python benchmarks/real_report.py --record OTHER.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Dict, List, Optional

HERE = Path(__file__).resolve().parent


def _pct(part: Optional[float], whole: Optional[float]) -> str:
    return f"{part / whole:.1%}" if part is not None and whole else "–"


def _num(value: Optional[float], digits: int = 3) -> str:
    return f"{value:.{digits}f}" if value is not None else "–"


def _gmacs(macs: Optional[float]) -> str:
    return f"{macs / 1e9:.2f}" if macs else "–"


def _inputs_table(record: Dict[str, Any]) -> List[str]:
    lines = ["| model | image size | epochs trained | best mAP50-95 | training time | ONNX Runtime latency |",
             "|---|---|---|---|---|---|"]
    latency = record.get("latency_ms", {})
    for model, info in record.get("inputs", {}).items():
        lines.append(f"| {model} | {info.get('train_args', {}).get('imgsz', 320)} | {info.get('epochs')} | "
                     f"{_num(info.get('best_map50_95'))} | "
                     f"{info.get('train_s', info.get('wall_s', 0)) / 3600:.1f} h | {_num(latency.get(model), 1)} ms |")
    return lines


def _continue_table(record: Dict[str, Any]) -> List[str]:
    lines = []
    for model, runs in record.get("continue", {}).items():
        start = record.get("inputs", {}).get(model, {}).get("best_map50_95")
        lines += [f"{model}, input mAP50-95 {_num(start)}:", "",
                  "| continuation | what it changes | mAP50-95 per epoch | lowest / input |", "|---|---|---|---|"]
        for name, row in runs.items():
            maps = row.get("epoch_map50_95", [])
            lines.append(f"| {name} | {row.get('what', '')} | {' '.join(f'{m:.3f}' for m in maps)} | "
                         f"{_pct(min(maps) if maps else None, start)} |")
        lines.append("")
    return lines


def _steps(row: Dict[str, Any]) -> str:
    """Each step's mAP50-95 right after pruning → after its fine-tune (→ its retry at lr0 / 10 where the fine-tune
    ended below the pruned model), and what the step kept."""
    parts = []
    for step in row.get("steps", []):
        tuned = step.get("finetune_map50_95", step.get("recovered_map50_95"))
        if step.get("pruned_map50_95") is None or tuned is None:
            return "–"
        retry = step.get("retry_map50_95")
        kept = {"retry": " (kept the retry)", "pruned": " (kept the pruned model)"}.get(step.get("step_model"), "")
        if step.get("finetune_kept") is False:  # the variant that only discarded a fallen fine-tune
            kept = " (kept the pruned model)"
        parts.append(f"{_num(step['pruned_map50_95'])} → {_num(tuned)}"
                     + (f", retry at lr0 / 10 → {_num(retry)}" if retry is not None else "") + kept)
    return "; ".join(parts) or "–"


def _epochs(row: Dict[str, Any]) -> str:
    """The fine-tune budget, plus the epochs of the retries that fallen fine-tunes got."""
    retries = sum(step.get("retry_map50_95") is not None for step in row.get("steps", []))
    per_step = row["budget_epochs"] // max(1, len(row.get("steps", [])))
    return f"{row['budget_epochs']}" + (f" + {retries * per_step} retry" if retries else "")


def _recipe_table(record: Dict[str, Any]) -> List[str]:
    lines = ["| model | recipe | target MACs | MACs cut | fine-tune epochs | input → pruned mAP50-95 | kept of input | "
             "control (same epochs, unpruned) | kept of control | steps: pruned → fine-tuned | speed-up (ORT) | "
             "wall time |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    latency = record.get("latency_ms", {})
    for row in record.get("recipe", []):
        label = f"{row['recipe']}_{row['model']}_{row['target']}"
        speed = latency.get(row["model"], 0) / latency[label] if latency.get(label) else None
        lines.append(
            f"| {row['model']} | {row['recipe']} | {row['target']} | {row['macs_before'] / row['macs_after']:.2f}× | "
            f"{_epochs(row)} | {_num(row['input_map50_95'])} → {_num(row['map50_95'])} | "
            f"{_pct(row['map50_95'], row['input_map50_95'])} | {_num(row.get('control_map50_95'))} | "
            f"{_pct(row['map50_95'], row.get('control_map50_95'))} | {_steps(row)} | "
            f"{_num(speed, 2) + '×' if speed else '–'} | "
            f"{row['wall_s'] / 60:.0f} min |")
    return lines


def _minutes(seconds: Optional[float]) -> str:
    return f"{seconds / 60:.0f} min" if seconds is not None else "–"


def _big_epochs(row: Dict[str, Any]) -> str:
    """The big model's epochs: those of the input it started from (if any), its own, its fine-tunes'."""
    init = f"{row['big_init_epochs']} ({row['big_init']}) + " if row.get("big_init") else ""
    return f"{init}{row['big_epochs']} + {row['budget_epochs']}"


def _bigsmall_table(record: Dict[str, Any]) -> List[str]:
    lines = ["| image size | pruned big model | GMACs | mAP50-95 | latency | epochs (input + fine-tunes) | "
             "small model | GMACs | mAP50-95 (converged) | latency | same total epochs: mAP50-95 | "
             "higher mAP50-95 | prune wall time |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in record.get("bigsmall", []):
        latency = row.get("latency_ms", {})
        small_equal = row.get("small_equal_map50_95", row["small_map50_95"])
        big_wins = row["map50_95"] > max(row["small_map50_95"], small_equal)
        extra = row.get("small_extra_epochs", 0)
        lines.append(
            f"| {row.get('imgsz', 320)} | {row['big']} ({_num(row.get('big_map50_95'))}, {_gmacs(row['macs_before'])} "
            f"GMACs) pruned | {_gmacs(row['macs_after'])} | {_num(row['map50_95'])} | "
            f"{_num(latency.get('pruned'), 1)} ms | {_big_epochs(row)} | "
            f"{row['small']} ({row['small_epochs']} epochs) | {_gmacs(row['small_macs'])} | "
            f"{_num(row['small_map50_95'])} | {_num(latency.get(row['small']), 1)} ms | "
            f"{_num(small_equal)} ({row['small_epochs']} + {extra} epochs) | "
            f"{'pruned ' + row['big'] if big_wins else row['small']} (equal MACs) | {_minutes(row.get('wall_s'))} |")
        fast = row.get("equal_latency")
        if fast:  # the big model pruned again, to the small model's measured latency
            fast_wins = fast["map50_95"] > max(row["small_map50_95"], small_equal)
            lines.append(
                f"| {row.get('imgsz', 320)} | {row['big']} pruned to {row['small']}'s latency | "
                f"{_gmacs(fast['macs_after'])} | {_num(fast['map50_95'])} | "
                f"{_num(latency.get('pruned_latency'), 1)} ms | {_big_epochs(row)} | "
                f"{row['small']} | {_gmacs(row['small_macs'])} | {_num(row['small_map50_95'])} | "
                f"{_num(latency.get(row['small']), 1)} ms | {_num(small_equal)} | "
                f"{'pruned ' + row['big'] if fast_wins else row['small']} (equal latency) | "
                f"{_minutes(fast.get('wall_s'))} |")
    return lines


def _pyplot():
    """matplotlib.pyplot on the Agg backend (a script of its own: no user backend to keep)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    """Lay out, write and close a figure; returns its path."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_bigsmall(record: Dict[str, Any], out: Path) -> List[Path]:
    """One figure per prune-big-or-train-small row: mAP50-95 against GMACs and against latency for the big input,
    the pruned big model, the small input and the small model at the same total epochs."""
    plt = _pyplot()
    written = []
    for row in record.get("bigsmall", []):
        latency = row.get("latency_ms", {})
        points = [(f"{row['big']} (trained here)", row["macs_before"], latency.get(row["big"]), row.get("big_map50_95"),
                   "black", "s"),
                  (f"{row['big']} pruned", row["macs_after"], latency.get("pruned"), row["map50_95"], "tab:blue", "o"),
                  (f"{row['small']} (trained here)", row["small_macs"], latency.get(row["small"]),
                   row["small_map50_95"], "black", "s"),
                  (f"{row['small']}, same total epochs", row["small_macs"], latency.get("equal"),
                   row.get("small_equal_map50_95"), "tab:orange", "o")]
        if row.get("equal_latency"):
            fast = row["equal_latency"]
            points.append((f"{row['big']} pruned to {row['small']}'s latency", fast["macs_after"],
                           latency.get("pruned_latency"), fast["map50_95"], "tab:green", "o"))
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        for ax, index, label in ((axes[0], 1, "GMACs"), (axes[1], 2, "ONNX Runtime latency, batch 1 (ms)")):
            for point in points:
                x = point[index] / 1e9 if index == 1 and point[index] else point[index]
                if x and point[3] is not None:
                    ax.scatter([x], [point[3]], color=point[4], marker=point[5])
                    ax.annotate(point[0], (x, point[3]), textcoords="offset points", xytext=(4, 4), fontsize=8)
            ax.set_xlabel(f"{label} at {row.get('imgsz', 320)} px")
            ax.set_ylabel("mAP50-95 (val tiles)")
            ax.grid(alpha=0.3)
            ax.margins(x=0.25, y=0.15)
        fig.suptitle(f"Prune big or train small: {row['big']} pruned to {row['small']}'s MACs (tree crowns)")
        written.append(_save(fig, out.parent / f"{out.name}_bigsmall_{row['big']}.png"))
    return written


def plot(record: Dict[str, Any], out: Path) -> List[Path]:
    """mAP50-95 against GMACs and against ONNX Runtime latency: inputs as reference points, pruned models as arrows
    from their input. Returns the files written."""
    plt = _pyplot()
    latency = record.get("latency_ms", {})
    inputs = {m: info for m, info in record.get("inputs", {}).items()
              if info.get("train_args", {}).get("imgsz", 320) == 320}  # other sizes: plot_bigsmall
    macs = {m: info.get("gmacs") for m, info in inputs.items()}
    points = []  # (label, input label, gmacs, latency, map)
    for row in record.get("recipe", []):
        points.append((f"{row['model']} pruned to {row['target']}", row["model"], row["macs_after"] / 1e9,
                       latency.get(f"{row['recipe']}_{row['model']}_{row['target']}"), row["map50_95"]))
        macs.setdefault(row["model"], row["macs_before"] / 1e9)
    written: List[Path] = []
    if not points:  # a record without recipe rows (e.g. the seeds part's own): nothing to plot
        return written
    for axis, name in (("gmacs", "map_vs_gmacs"), ("latency", "map_vs_latency")):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for model, info in inputs.items():
            x = macs.get(model) if axis == "gmacs" else latency.get(model)
            if x:
                ax.scatter([x], [info["best_map50_95"]], marker="s", color="black")
                ax.annotate(f"{model} (trained here)", (x, info["best_map50_95"]), textcoords="offset points",
                            xytext=(4, 4), fontsize=8)
        for label, source, gmacs, ms, value in points:
            x = gmacs if axis == "gmacs" else ms
            x0 = macs.get(source) if axis == "gmacs" else latency.get(source)
            if not x:
                continue
            ax.scatter([x], [value], color="tab:blue")
            ax.annotate(label, (x, value), textcoords="offset points", xytext=(4, -10), fontsize=8)
            if x0 and source in inputs:
                ax.annotate("", (x, value), (x0, inputs[source]["best_map50_95"]),
                            arrowprops={"arrowstyle": "->", "color": "tab:blue", "alpha": 0.5})
        ax.set_xlabel("GMACs at 320 px" if axis == "gmacs" else "ONNX Runtime latency, batch 1, 320 px (ms)")
        ax.set_ylabel("mAP50-95 (val tiles)")
        ax.set_title("Tree crowns (real photographs): pruned models against models trained here")
        ax.grid(alpha=0.3)
        ax.margins(x=0.2, y=0.1)  # room for the labels of the outermost points
        written.append(_save(fig, out.parent / f"{out.name}_{name}.png"))
    return written


def _equal_latency_table(record: Dict[str, Any]) -> List[str]:
    """MACs-targeted against latency-targeted pruning of one input, timed together (the ``latency`` part)."""
    lines = ["| model | threads of the search | run | keys | MACs cut | speed-up, timed after the run | "
             "re-timed: 1 thread | re-timed: default threads | input → pruned mAP50-95 | kept of input | "
             "prune wall time |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in record.get("equal_latency", []):
        model, latency, retimed = row["model"], row["latency_ms"], row.get("retimed", {})

        def again(threads: str, label: str) -> str:
            times = retimed.get(threads)
            return f"{times[model]['median_ms'] / times[label]['median_ms']:.2f}×" if times else "–"

        for label, run in (("macs", row["macs_targeted"]), ("latency", row["latency_targeted"])):
            cut = row["macs_before"] / run["macs_after"]
            keys = " ".join(k for k in run["keys"] if k.split("=")[0] in ("target_macs", "target_speedup", "allocation"))
            lines.append(
                f"| {model} | {row.get('threads') or 'default'} | {label}-targeted | `{keys}` | {cut:.2f}× | "
                f"{latency[model] / latency[label]:.2f}× | {again('1', label)} | {again('default', label)} | "
                f"{_num(row['input_map50_95'])} → {_num(run['map50_95'])} | "
                f"{_pct(run['map50_95'], row['input_map50_95'])} | {_minutes(run.get('wall_s'))} |")
    return lines


def _seeds_table(record: Dict[str, Any]) -> List[str]:
    """Each comparison's runs repeated with other seeds (the ``seeds`` part): the spread a single run hides."""
    import statistics

    names = {"control": "control (unpruned, same epochs)", "macs": "`target_macs=0.5`, uniform",
             "latency": "latency-targeted, default threads", "latency_t1": "latency-targeted, 1 thread"}
    lines = ["| model | run | MACs cut | mAP50-95 per seed | mean ± sd | mean kept of input | mean of the control's mean "
             "| wall time per run (two at a time) |",
             "|---|---|---|---|---|---|---|---|"]
    for model, row in record.get("seeds", {}).items():
        control = statistics.mean(r["map50_95"] for r in row["control"]) if row.get("control") else None
        for label, name in names.items():
            runs = row.get(label)
            if not runs:
                continue
            values = [r["map50_95"] for r in runs]
            sd = statistics.stdev(values) if len(values) > 1 else 0.0
            cut = f"{row['macs_before'] / runs[0]['macs_after']:.2f}×" if runs[0].get("macs_after") else "–"
            same = "" if row.get(f"{label}_same_architecture", True) else " (architectures differ)"
            per_seed = " ".join(f"{v:.3f} (seed {r['seed']})" for v, r in zip(values, runs))
            lines.append(
                f"| {model} | {name}{same} | {cut} | "
                f"{per_seed} | "
                f"{statistics.mean(values):.3f} ± {sd:.3f} | {_pct(statistics.mean(values), row.get('input_map50_95'))} "
                f"| {_pct(statistics.mean(values), control) if label != 'control' else '–'} "
                f"| {_minutes(statistics.mean(r['wall_s'] for r in runs))} |")
    return lines


def write(record: Dict[str, Any], out: Path) -> Path:
    """Write ``<out>.md`` and the plots; return the markdown file. Sections without rows are left out."""
    machine = record.get("machine", {})
    lines = [
        "# Real photographs: tree crowns (NEON orthophotos from the deepforest wheel)",
        "",
        f"Machine: {machine.get('cpu', '?')}, {machine.get('cores', '?')} cores, flags: {machine.get('flags', '?')}; "
        f"{record.get('versions', '')}; OMP_NUM_THREADS={record.get('threads')}; updated {record.get('updated')}. "
        "That is the machine of the last update: rows of earlier sessions keep the numbers measured on theirs.",
        "Inputs trained here from `*.yaml` (no pretrained weights can be downloaded); latency: ONNX Runtime CPU, "
        f"batch 1, 320 px, {record.get('latency_threads', 'default threads')}, every file timed in one process.",
        "",
    ]
    sections = [
        ("Converged inputs", [], _inputs_table(record)),
        ("Continuing the input without pruning (does a fine-tune start by collapsing?)", [], _continue_table(record)),
        ("Recipes against their input and their control", [], _recipe_table(record)),
        ("Prune big or train small", [], _bigsmall_table(record)),
        ("MACs or latency as the target, at equal measured latency", [
            "The `target_macs=0.5` recipe run (uniform allocation) is timed against its input; the input is pruned "
            "again with `target_speedup` set to that speed-up and `allocation=latency`, with the same fine-tune "
            "budget; the three files are then timed together (median of 100 runs each, taking turns) at the search's "
            "thread count, and again by the `retime` part (median of 200 runs each; the load average is in the JSON "
            "record).", ""], _equal_latency_table(record)),
        ("The same runs with other seeds", [
            "Each comparison run again with other seeds (`--parts seeds`; seed 0 is the run above). A latency-targeted "
            "row is its searched architecture (`allocation=latency` at the MACs fraction the search found), so only "
            "the fine-tune's randomness (augmentation, batch order) differs. Control: the best epoch; pruned runs: "
            "the kept model.", ""], _seeds_table(record)),
    ]
    for title, text, table in sections:
        if len([ln for ln in table if ln.startswith("|")]) > 2 or (table and not table[0].startswith("|")):
            while table and not table[-1]:
                table = table[:-1]
            lines += [f"## {title}", "", *text, *table, ""]
    for path in [*plot(record, out), *plot_bigsmall(record, out)]:
        lines.append(f"![{path.stem}]({path.name})")
    md = out.parent / f"{out.name}.md"
    md.write_text("\n".join(lines) + "\n")
    return md


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", type=Path, default=HERE / "results_real.json")
    args = parser.parse_args(argv)
    record = json.loads(args.record.read_text())
    md = write(record, args.record.with_suffix(""))
    print(f"written {md}")
    return md


if __name__ == "__main__":
    main()
