"""The prune run's plot: mAP before and after fine-tuning against the size that remains, MACs on a second axis, and,
once a step has been timed, a panel above with each step's MACs cut and measured speed-up over the input."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional

from ultralytics_prune_plugin.report.files import write_atomic


def plot_prune_curve(
    baseline: Dict[str, Any],
    steps: List[Dict[str, Any]],
    path: Path,
    kept_step: Optional[int] = None,
    budget: Optional[float] = None,
    runtime: Optional[str] = None,
) -> Path:
    """Draw recovered and pruned mAP50-95 against the fraction of parameters remaining, with MACs on the right axis;
    above it, when steps carry a measured ``speedup``, the MACs cut and the measured speed-up (× the input).

    Args:
        baseline (dict): The baseline record (``params``, ``macs``, ``map50_95``).
        steps (list[dict]): One record per step (``params``, ``macs``, ``pruned_map50_95``, ``recovered_map50_95``,
            optionally ``speedup``: input latency / step latency, None where not measured).
        path (Path): Where the PNG goes; it is replaced atomically.
        kept_step (int, optional): The step kept as the result (0: the unpruned model), circled on the plot.
        budget (float, optional): The lowest mAP50-95 within ``max_map_drop``, drawn as a horizontal line.
        runtime (str, optional): What measured the speed-up, named in its label.

    Returns:
        (Path): ``path``.
    """
    fig = prune_curve_figure(baseline, steps, kept_step, budget, runtime)
    write_atomic(Path(path), lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    return Path(path)


def prune_curve_figure(
    baseline: Dict[str, Any],
    steps: List[Dict[str, Any]],
    kept_step: Optional[int] = None,
    budget: Optional[float] = None,
    runtime: Optional[str] = None,
):
    """Build the figure of :func:`plot_prune_curve` (arguments as there) and return it, drawn on its own Agg canvas.

    The figure is a plain ``matplotlib.figure.Figure``: pyplot is not used, so the process's matplotlib backend and
    pyplot's open figures are left as they are. The legend sits below the plot, outside the axes, so it never covers
    a curve whatever the mAP values are. The main panel is ``fig.axes[0]``; the speed-up panel, when drawn, sits
    above it on the same x-axis.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    points = [baseline, *steps]
    x = [p["params"] / baseline["params"] for p in points]
    pruned = [baseline.get("map50_95")] + [s.get("pruned_map50_95") for s in steps]
    recovered = [baseline.get("map50_95")] + [s.get("recovered_map50_95") for s in steps]
    macs = [p["macs"] / 1e9 for p in points]

    speedups = [1.0] + [s.get("speedup") for s in steps]
    timed = any(v is not None for v in speedups[1:])
    fig = Figure(figsize=(8, 8.5 if timed else 6), constrained_layout=True)
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(2, 1, height_ratios=[1, 2.4]) if timed else None
    ax = fig.add_subplot(grid[1]) if timed else fig.add_subplot()
    if any(v is not None for v in recovered[1:]):
        ax.plot(*_known(x, recovered), "o-", color="tab:blue", label="recovered mAP50-95 (after fine-tune)")
    if any(v is not None for v in pruned[1:]):
        ax.plot(*_known(x, pruned), "s--", color="tab:orange", label="pruned mAP50-95 (before fine-tune)")
    scores = recovered if any(v is not None for v in recovered[1:]) else pruned
    if kept_step is not None and kept_step <= len(steps) and scores[kept_step] is not None:
        ax.plot(x[kept_step], scores[kept_step], "o", ms=14, mfc="none", mec="black", mew=1.5,
                label=f"kept: {'step ' + str(kept_step) if kept_step else 'unpruned model'}", zorder=4)
    if budget is not None:
        ax.axhline(budget, color="tab:red", ls="-.", lw=1, label=f"max_map_drop budget (mAP50-95 {budget:.3f})")
    known = [v for v in (*pruned, *recovered, budget) if v is not None]
    if known:  # the mAP axis starts at 0 and the MACs axis too, so the two curves never lie exactly on each other
        ax.set_ylim(0, max(max(known) * 1.1, 0.05))
    ax.set_xlabel("fraction of parameters remaining")
    ax.set_ylabel("mAP50-95")
    ax.invert_xaxis()
    ax.grid(alpha=0.3)
    twin = ax.twinx()
    twin.plot(x, macs, "^:", color="tab:green", label="MACs (G)")
    twin.set_ylabel("MACs (G)")
    twin.set_ylim(0, max(macs) * 1.25)
    lines = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    labels = ax.get_legend_handles_labels()[1] + twin.get_legend_handles_labels()[1]
    # below the x-axis label, outside the axes: at low mAP the curves fill the lower corners, at high mAP the upper
    ax.legend(lines, labels, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, fontsize=9, frameon=False)
    if not timed:
        ax.set_title("Pruning: accuracy against remaining size")
        return fig
    top = fig.add_subplot(grid[0], sharex=ax)  # after ax: the main panel stays fig.axes[0]
    cut = [baseline["macs"] / p["macs"] for p in points]
    top.plot(x, cut, "^:", color="tab:green", label="MACs cut (×)")
    top.plot(*_known(x, speedups), "D-", color="tab:purple", label="measured speed-up (×, fastest run" + (f", {runtime})" if runtime else ")"))
    top.axhline(1.0, color="gray", lw=0.8)
    top.set_ylabel("× the input")
    top.set_ylim(0, max(max(cut), *(v for v in speedups if v is not None)) * 1.2)
    top.grid(alpha=0.3)
    top.tick_params(labelbottom=False)
    top.legend(loc="upper left", fontsize=9, frameon=False)
    top.set_title("Pruning: accuracy and measured speed against remaining size")
    return fig


def _known(x: List[float], y: List[Any]):
    """Return the (x, y) pairs whose y is known."""
    pairs = [(a, b) for a, b in zip(x, y) if b is not None]
    return [a for a, _ in pairs], [b for _, b in pairs]
