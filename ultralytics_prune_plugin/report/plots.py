"""The prune run's plot: mAP before and after fine-tuning against the size that remains, MACs on a second axis."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

from ultralytics_prune_plugin.report.files import write_atomic


def plot_prune_curve(baseline: Dict[str, Any], steps: List[Dict[str, Any]], path: Path) -> Path:
    """Draw recovered and pruned mAP50-95 against the fraction of parameters remaining, with MACs on the right axis.

    Args:
        baseline (dict): The baseline record (``params``, ``macs``, ``map50_95``).
        steps (list[dict]): One record per step (``params``, ``macs``, ``pruned_map50_95``, ``recovered_map50_95``).
        path (Path): Where the PNG goes; it is replaced atomically.

    Returns:
        (Path): ``path``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [baseline, *steps]
    x = [p["params"] / baseline["params"] for p in points]
    pruned = [baseline.get("map50_95")] + [s.get("pruned_map50_95") for s in steps]
    recovered = [baseline.get("map50_95")] + [s.get("recovered_map50_95") for s in steps]
    macs = [p["macs"] / 1e9 for p in points]

    fig, ax = plt.subplots(figsize=(8, 5), tight_layout=True)
    if any(v is not None for v in recovered[1:]):
        ax.plot(*_known(x, recovered), "o-", color="tab:blue", label="recovered mAP50-95 (after fine-tune)")
    if any(v is not None for v in pruned[1:]):
        ax.plot(*_known(x, pruned), "s--", color="tab:orange", label="pruned mAP50-95 (before fine-tune)")
    ax.set_xlabel("fraction of parameters remaining")
    ax.set_ylabel("mAP50-95")
    ax.invert_xaxis()
    ax.grid(alpha=0.3)
    twin = ax.twinx()
    twin.plot(x, macs, "^:", color="tab:green", label="MACs (G)")
    twin.set_ylabel("MACs (G)")
    lines = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    labels = ax.get_legend_handles_labels()[1] + twin.get_legend_handles_labels()[1]
    ax.legend(lines, labels, loc="lower left")
    ax.set_title("Pruning: accuracy against remaining size")
    write_atomic(Path(path), lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    plt.close(fig)
    return Path(path)


def _known(x: List[float], y: List[Any]):
    """Return the (x, y) pairs whose y is known."""
    pairs = [(a, b) for a, b in zip(x, y) if b is not None]
    return [a for a, _ in pairs], [b for _, b in pairs]
