"""Where the ONNX Runtime CPU time of a YOLOv8 detector goes: a per-node profile, grouped into a few categories.

ONNX Runtime's own profiler (``SessionOptions.enable_profiling``) records the kernel time of every node of the
*optimised* graph on every run. :func:`profile_model` profiles a model with the plugin's
:func:`~ultralytics_prune_plugin.deploy.node_profile.profile_nodes` (``runs`` runs after a warm-up, the median time
of each node over the runs, robust to a busy machine) and sums the medians per category:

* ``conv backbone+neck``: convolutions outside the ``Detect`` head (the layers channel pruning shrinks);
* ``conv Detect head``: the head's convolutions (never pruned; only their input widths shrink with the neck);
* ``SiLU``: the activations (ONNX Runtime fuses ``x * sigmoid(x)`` into one ``QuickGelu`` node);
* ``head post-processing``: the head's other nodes (DFL softmax, box decoding, concatenations, sigmoid);
* ``layout reorders``: ``ReorderInput`` / ``ReorderOutput``, the conversions to and from ONNX Runtime's blocked
  NCHWc layout;
* ``other``: concatenations, splits, residual adds, upsampling and max-pooling of the backbone and neck.

For each convolution the MACs are computed from the shapes the profiler records (output elements × input channels
per group × kernel area, :func:`~ultralytics_prune_plugin.deploy.node_profile.conv_macs`), so that each category's
share of the time can be set against its share of the MACs. The optimised graph itself is saved too, to count how many convolutions run in NCHWc and how many reorders it needed.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Dict, List, Optional

CATEGORIES = (
    "conv backbone+neck",
    "conv Detect head",
    "SiLU",
    "head post-processing",
    "layout reorders",
    "other",
)


def _category(node: str, op: str, head_prefix: str) -> str:
    """Return the category of one profiled node (see the module docstring)."""
    in_head = node.startswith(head_prefix)
    if op == "Conv" and "/dfl/" not in node:
        return "conv Detect head" if in_head else "conv backbone+neck"
    if op in ("QuickGelu",) or (op in ("Sigmoid", "Mul") and "/act/" in node):
        return "SiLU"
    if op in ("ReorderInput", "ReorderOutput"):
        return "layout reorders"
    if in_head:
        return "head post-processing"
    return "other"


def head_prefix_of(onnx_path: os.PathLike) -> str:
    """Return the node-name prefix of the Detect head (``/model.<last layer>/``) of an Ultralytics ONNX export."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    layers = {int(n.name.split("/")[1].split(".")[1]) for n in graph.node if n.name.startswith("/model.")}
    return f"/model.{max(layers)}/"


def profile_model(
    onnx_path: os.PathLike, imgsz: int, runs: int = 30, warmup: int = 5, threads: Optional[int] = None
) -> Dict[str, object]:
    """Profile one ONNX model with ONNX Runtime's node profiler on the CPU.

    Args:
        onnx_path: The model (static input ``(1, 3, imgsz, imgsz)``).
        imgsz: Input size.
        runs: Profiled runs after the warm-up (the per-node median is taken over them).
        warmup: Runs before profiling starts counting (they are profiled too but dropped).
        threads: Intra-op threads, or None for ONNX Runtime's default.

    Returns:
        ``{"categories": {name: {"ms", "macs"}}, "total_ms", "nodes": [{"name", "op", "category", "ms", "macs"}]}``;
        ``total_ms`` is the sum of the per-node medians (close to, but not the same as, a run's wall time).
    """
    from ultralytics_prune_plugin.deploy.node_profile import profile_nodes

    with tempfile.TemporaryDirectory() as tmp:
        optimized = Path(tmp) / "optimized.onnx"
        profiled = profile_nodes(onnx_path, imgsz, "onnxruntime", threads=threads, runs=runs, warmup=warmup,
                                 optimized_model=optimized)
        graph = optimized_graph_counts(optimized)
    head = head_prefix_of(onnx_path)
    nodes, categories = [], {c: {"ms": 0.0, "macs": 0.0} for c in CATEGORIES}
    for node in profiled:
        category = _category(node.name, node.op, head)
        categories[category]["ms"] += node.ms
        categories[category]["macs"] += node.macs
        nodes.append({"name": node.name, "op": node.op, "category": category, "ms": node.ms, "macs": node.macs})
    return {"categories": categories, "total_ms": sum(n["ms"] for n in nodes), "nodes": nodes, "graph": graph}


def optimized_graph_counts(path: os.PathLike) -> Dict[str, int]:
    """Count, in the graph as ONNX Runtime optimised it, the convolutions in its blocked NCHWc layout and in plain
    NCHW, and the layout reorders between them (each one a copy of a whole feature map)."""
    import onnx

    counts = {"nchwc_conv": 0, "nchw_conv": 0, "reorder_input": 0, "reorder_output": 0}
    for node in onnx.load(str(path), load_external_data=False).graph.node:
        if node.op_type in ("Conv", "FusedConv"):
            counts["nchwc_conv" if node.domain == "com.microsoft.nchwc" else "nchw_conv"] += 1
        elif node.op_type == "ReorderInput":
            counts["reorder_input"] += 1
        elif node.op_type == "ReorderOutput":
            counts["reorder_output"] += 1
    return counts


def compare_table(profiles: Dict[str, Dict[str, object]]) -> List[Dict[str, object]]:
    """Rows ``{category, <label>_ms, <label>_gmacs ...}`` for a markdown table comparing several profiles."""
    rows = []
    for category in CATEGORIES + ("total",):
        row: Dict[str, object] = {"category": category}
        for label, prof in profiles.items():
            if category == "total":
                row[f"{label}_ms"] = prof["total_ms"]
                row[f"{label}_gmacs"] = sum(c["macs"] for c in prof["categories"].values()) / 1e9
            else:
                row[f"{label}_ms"] = prof["categories"][category]["ms"]
                row[f"{label}_gmacs"] = prof["categories"][category]["macs"] / 1e9
        rows.append(row)
    return rows


if __name__ == "__main__":  # python benchmarks/ort_profile.py model.onnx [imgsz]
    import sys

    result = profile_model(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 640)
    for cat, v in result["categories"].items():
        print(f"{cat:24s} {v['ms']:8.2f} ms {v['macs'] / 1e9:7.3f} GMACs")
    print(f"{'total':24s} {result['total_ms']:8.2f} ms")
