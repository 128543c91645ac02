"""Per-node time of an exported model in its runtime, each node mapped back to the PyTorch module it came from.

:func:`profile_nodes` opens an ONNX file in ONNX Runtime or OpenVINO with the runtime's own profiler switched on,
runs it ``warmup + runs`` times on the same fixed input :mod:`.latency` times with, and returns one
:class:`NodeTime` per node of the graph *as the runtime executes it* (after its fusions): the median of the node's
time over the ``runs`` timed runs, which a busy machine disturbs less than a mean.

* ONNX Runtime: ``SessionOptions.enable_profiling``; each run writes one ``<node>_kernel_time`` event per node,
  with the op type and, for convolutions, the input and output shapes (from which :func:`conv_macs` counts MACs).
* OpenVINO: the ``PERF_COUNT`` property; after each run ``InferRequest.get_profiling_info()`` lists every node with
  its ``real_time``. Nodes OpenVINO fused into another (status ``NOT_RUN``, e.g. the SiLU after a convolution) take
  no time of their own; they are left out.

Node names: Ultralytics exports through ``torch.onnx.export``, which names each node by the module scopes it was
traced in, e.g. ``/model.22/cv2.0/cv2.0.0/conv/Conv`` for ``model.22.cv2.0.0.conv``; both runtimes keep that name
(adding suffixes such as ``_output_0_nchwc`` or ``/QuickGeluFusion/`` to the nodes they rewrite).
:func:`module_of` turns such a name back into the module's qualified name; nodes the runtime adds itself (ONNX
Runtime's ``ReorderInput``/``ReorderOutput`` layout conversions) map to no module.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Collection, Dict, List, Optional, Union

import numpy as np

from ultralytics_prune_plugin.deploy.runtimes import check_threads, get_runtime, session_options

__all__ = ["NodeTime", "profile_nodes", "module_of", "conv_macs", "runtime_version", "PROFILED_RUNTIMES"]

PathLike = Union[str, Path]


@dataclass
class NodeTime:
    """One node of the executed graph.

    Attributes:
        name: The node's name in the runtime (e.g. ``/model.2/cv1/conv/Conv_output_0_nchwc``).
        op: The runtime's op type (``Conv``, ``QuickGelu``, ``Convolution``, ``Concat``, ...).
        module: The qualified name of the module the node belongs to (``model.2.cv1.conv``), or None for a node the
            runtime added (layout reorders).
        ms: The node's median time over the timed runs, in milliseconds.
        macs: Multiply-accumulates of a convolution node (ONNX Runtime only, from the shapes it records), else 0.
    """

    name: str
    op: str
    module: Optional[str]
    ms: float
    macs: float = 0.0

    def to_dict(self) -> dict:
        """The node as a JSON-ready dict."""
        return asdict(self)


def module_of(node: str, module_names: Optional[Collection[str]] = None) -> Optional[str]:
    """The qualified name of the module a node of an Ultralytics ONNX export was traced in.

    The node name's scopes are joined with dots; a scope that repeats its parent's name with a suffix
    (``cv2.0`` then ``cv2.0.0``: a container's child is named from the container's own parent) replaces it. Scopes
    end at the first part that is not a module name: the op (``Conv``, ``Mul``: capitalised) or the runtime's
    additions. With ``module_names``, the longest joined prefix that is a known module is returned (a repeated call
    such as SPPF's ``m_1`` then resolves to ``m``); without, the joined scopes themselves.

    Args:
        node: The node name, e.g. ``/model.22/cv2.0/cv2.0.0/conv/Conv_output_0_nchwc``.
        module_names: Optional qualified names of the model's modules (``model.named_modules()``).

    Returns:
        The module name (``model.22.cv2.0.0.conv``), or None when the node has no module scope.
    """
    if not node.startswith("/"):
        return None  # added by the runtime (ReorderInput_token_17, ...)
    scopes: List[str] = []
    for part in node.strip("/").split("/"):
        if not part or not part[0].islower():
            break
        if scopes and part.startswith(scopes[-1] + "."):
            scopes[-1] = part
        else:
            scopes.append(part)
    if not scopes:
        return None
    if module_names is None:
        return ".".join(scopes)
    for end in range(len(scopes), 0, -1):
        name = ".".join(scopes[:end])
        if name in module_names:
            return name
        repeated = re.sub(r"_\d+$", "", name)  # the n-th call of a module reused in one forward
        if repeated in module_names:
            return repeated
    return None


def conv_macs(args: dict) -> float:
    """MACs of a convolution from its ONNX Runtime profiler record: output elements × weight elements per output
    channel (0 when the shapes are missing)."""
    try:
        out_shape = list(args["output_type_shape"][0].values())[0]
        w_shape = list(args["input_type_shape"][1].values())[0]
    except (KeyError, IndexError, AttributeError):
        return 0.0
    return float(np.prod(out_shape)) * float(np.prod(w_shape[1:]))


def runtime_version(runtime: str) -> str:
    """The installed version of a runtime's Python package (``onnxruntime``, ``openvino``, ``tensorrt``)."""
    module = __import__(get_runtime(runtime).module)
    return str(getattr(module, "__version__", "unknown"))


def profile_nodes(
    path: PathLike,
    imgsz: int,
    runtime: str = "onnxruntime",
    threads: Optional[int] = None,
    runs: int = 20,
    warmup: int = 3,
    module_names: Optional[Collection[str]] = None,
    optimized_model: Optional[PathLike] = None,
) -> List[NodeTime]:
    """Profile every node of an ONNX model in ``runtime`` on the CPU, at batch 1.

    Args:
        path: The ``.onnx`` file (static input ``(1, 3, imgsz, imgsz)``).
        imgsz: Input size.
        runtime: ``onnxruntime`` or ``openvino`` (:data:`PROFILED_RUNTIMES`).
        threads: Threads inside one operator, or None for the runtime's default.
        runs: Profiled runs whose per-node median is taken (>= 1).
        warmup: Runs before them, dropped (>= 0).
        module_names: The model's module names, to resolve node names exactly (:func:`module_of`).
        optimized_model: ONNX Runtime only: also save the graph as ONNX Runtime optimised it to this file.

    Returns:
        The executed nodes, in the order the runtime first reported them.

    Raises:
        ValueError: No per-node profiler for ``runtime``, or a count out of range.
        RuntimeError: The runtime is not installed (one line, with how to install it).
    """
    if runtime not in PROFILED_RUNTIMES:
        raise ValueError(f"no per-layer profiler for runtime {runtime!r}; profiled: {', '.join(PROFILED_RUNTIMES)}")
    reason = get_runtime(runtime).unavailable_reason()
    if reason:
        raise RuntimeError(reason)
    if isinstance(runs, bool) or int(runs) < 1 or isinstance(warmup, bool) or int(warmup) < 0:
        raise ValueError(f"runs must be >= 1 and warmup >= 0, got runs={runs!r}, warmup={warmup!r}")
    image = np.random.default_rng(0).random((1, 3, imgsz, imgsz), dtype=np.float32)  # as .latency times with
    profile = PROFILED_RUNTIMES[runtime]
    times, ops, macs = profile(Path(path), image, check_threads(threads), runs, warmup, optimized_model)
    return [
        NodeTime(name, ops[name], module_of(name, module_names), float(np.median(ms[-runs:])), macs.get(name, 0.0))
        for name, ms in times.items()
    ]


Profiled = tuple  # (times: {node: [ms per run]}, ops: {node: op}, macs: {node: MACs})


def _profile_onnxruntime(path: Path, image: np.ndarray, threads: Optional[int], runs: int, warmup: int,
                         optimized_model: Optional[PathLike]) -> Profiled:
    """ONNX Runtime's profiler: one ``<node>_kernel_time`` event per node and run."""
    import onnxruntime as ort

    options = session_options(threads)
    options.enable_profiling = True
    with tempfile.TemporaryDirectory() as tmp:
        options.profile_file_prefix = str(Path(tmp) / "ort_profile")
        if optimized_model is not None:
            options.optimized_model_filepath = str(optimized_model)
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name: image}
        for _ in range(warmup + runs):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
    times: Dict[str, List[float]] = defaultdict(list)
    ops: Dict[str, str] = {}
    macs: Dict[str, float] = {}
    suffix = "_kernel_time"
    for event in events:
        if event.get("cat") != "Node" or not event["name"].endswith(suffix):
            continue
        name, args = event["name"][: -len(suffix)], event.get("args", {})
        times[name].append(event["dur"] / 1e3)
        ops[name] = args.get("op_name", "?")
        if ops[name] == "Conv":
            macs[name] = conv_macs(args)
    return times, ops, macs


def _profile_openvino(path: Path, image: np.ndarray, threads: Optional[int], runs: int, warmup: int,
                      optimized_model: Optional[PathLike]) -> Profiled:
    """OpenVINO's ``PERF_COUNT``: every executed node's ``real_time`` after each run."""
    import openvino as ov

    config = {"PERFORMANCE_HINT": "LATENCY", "PERF_COUNT": True}
    if threads is not None:
        config["INFERENCE_NUM_THREADS"] = threads
    request = ov.Core().compile_model(str(path), "CPU", config).create_infer_request()
    times: Dict[str, List[float]] = defaultdict(list)
    ops: Dict[str, str] = {}
    for _ in range(warmup + runs):
        request.infer({0: image})
        for info in request.get_profiling_info():
            if info.status == info.Status.EXECUTED:
                times[info.node_name].append(info.real_time.total_seconds() * 1e3)
                ops[info.node_name] = info.node_type
    return times, ops, {}


# The runtimes with a per-node profiler, and how each one is read.
PROFILED_RUNTIMES: Dict[str, Callable[..., Profiled]] = {
    "onnxruntime": _profile_onnxruntime,
    "openvino": _profile_openvino,
}
