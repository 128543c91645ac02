"""Where the ONNX Runtime CPU time of a YOLOv8 detector goes: a per-node profile, grouped into a few categories.

ONNX Runtime's own profiler (``SessionOptions.enable_profiling``) records the kernel time of every node of the
*optimised* graph on every run. :func:`profile_model` runs a model ``runs`` times after a warm-up, takes the median
time of each node over the runs (robust to a busy machine), and sums the medians per category:

* ``conv backbone+neck``: convolutions outside the ``Detect`` head (the layers channel pruning shrinks);
* ``conv Detect head``: the head's convolutions (never pruned; only their input widths shrink with the neck);
* ``SiLU``: the activations (ONNX Runtime fuses ``x * sigmoid(x)`` into one ``QuickGelu`` node);
* ``head post-processing``: the head's other nodes (DFL softmax, box decoding, concatenations, sigmoid);
* ``layout reorders``: ``ReorderInput`` / ``ReorderOutput``, the conversions to and from ONNX Runtime's blocked
  NCHWc layout;
* ``other``: concatenations, splits, residual adds, upsampling and max-pooling of the backbone and neck.

For each convolution the MACs are computed from the shapes the profiler records (output elements × input channels
per group × kernel area), so that each category's share of the time can be set against its share of the MACs. The
optimised graph itself is saved too, to count how many convolutions run in NCHWc and how many reorders it needed.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

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


def _conv_macs(args: dict) -> float:
    """MACs of one convolution node from the shapes in its profiler record (0 when they are missing)."""
    try:
        out_shape = list(args["output_type_shape"][0].values())[0]
        w_shape = list(args["input_type_shape"][1].values())[0]
    except (KeyError, IndexError):
        return 0.0
    return float(np.prod(out_shape)) * float(np.prod(w_shape[1:]))


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
    import onnxruntime as ort

    from ultralytics_prune_plugin.deploy.onnx import session_options

    options = session_options(threads)
    options.enable_profiling = True
    with tempfile.TemporaryDirectory() as tmp:
        options.profile_file_prefix = str(Path(tmp) / "ort_profile")
        options.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        graph = optimized_graph_counts(Path(tmp) / "optimized.onnx")
        feed = {session.get_inputs()[0].name: np.random.default_rng(0).random((1, 3, imgsz, imgsz), dtype=np.float32)}
        for _ in range(warmup + runs):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
    per_node: Dict[str, List[float]] = defaultdict(list)
    info: Dict[str, dict] = {}
    for event in events:
        if event.get("cat") != "Node" or not event["name"].endswith("_kernel_time"):
            continue
        per_node[event["name"]].append(event["dur"] / 1e3)
        info[event["name"]] = event.get("args", {})
    head = head_prefix_of(onnx_path)
    nodes, categories = [], {c: {"ms": 0.0, "macs": 0.0} for c in CATEGORIES}
    for name, durations in per_node.items():
        args = info[name]
        op = args.get("op_name", "?")
        ms = float(np.median(durations[warmup:] if len(durations) > warmup else durations))
        category = _category(name, op, head)
        macs = _conv_macs(args) if op == "Conv" else 0.0
        categories[category]["ms"] += ms
        categories[category]["macs"] += macs
        nodes.append({"name": name[: -len("_kernel_time")], "op": op, "category": category, "ms": ms, "macs": macs})
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
