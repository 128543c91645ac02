"""A model's per-layer latency table in a runtime, measured once and cached on disk.

:func:`layer_latency_table` exports an evaluation copy of a model to a temporary ONNX file
(:func:`~.module_onnx.export_module_onnx`, the graph the run's ``pruned.onnx`` gets), profiles every node in the
runtime (:func:`~.node_profile.profile_nodes`: the median over ``runs`` runs after a warm-up) and maps each node to
the module it came from. The result, a :class:`LayerLatencyTable`, says how many milliseconds each module costs
where the model will run; a latency-aware allocation reads it to decide which layers lose more channels.

Cache: profiling yolov8n at 640 px takes seconds, and a run asks for the same table several times (the latency
target's candidates, every step). Tables are cached by :mod:`.measure_cache` in Ultralytics' settings folder under
``prune_plugin/layer_latency/``, so that every run on the machine shares them. A file is used only when its recorded
key equals the one asked for (:func:`table_key`): the runtime and its version, the CPU model, ``imgsz``, ``threads``
(None: the runtime's default), the export variant (``fast_dfl``) and :func:`width_signature` of the model (every
convolution's name, widths, kernel, stride and groups). Any change of these measures a new table; weights play no
part (latency does not depend on them).

Load: a table also records the share of the CPUs other processes used while it was measured. One measured under
load is provisional (:func:`~.measure_cache.measure_again`): when the machine is clearly quieter at a later request,
the table is measured again, and whichever of the two was measured under less load is kept.
"""

from __future__ import annotations

import hashlib
import platform
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from torch import nn

from ultralytics_prune_plugin.deploy import measure_cache
from ultralytics_prune_plugin.deploy.machine_load import OtherLoad
from ultralytics_prune_plugin.deploy.node_profile import NodeTime, profile_nodes, runtime_version
from ultralytics_prune_plugin.deploy.runtimes import check_threads

__all__ = ["LayerLatencyTable", "layer_latency_table", "table_key", "width_signature", "cpu_model",
           "default_cache_dir"]

TABLE_FORMAT = 1  # bumped when the file's layout or the way it is measured changes
RUNS, WARMUP = 20, 3


@dataclass
class LayerLatencyTable:
    """Per-node times of one model in one runtime, with what they were measured under.

    Attributes:
        key: What the table is valid for (:func:`table_key`).
        nodes: The executed nodes with their median times (:class:`~.node_profile.NodeTime`).
        runs: Runs the medians were taken over.
        path: The cache file.
        from_cache: True when read from the cache, False when measured by this call.
        other_load: Share of the CPUs other processes used while it was measured (None: unknown).
    """

    key: Dict[str, Any]
    nodes: List[NodeTime]
    runs: int
    path: Optional[Path] = None
    from_cache: bool = False
    other_load: Optional[float] = None
    _by_module: Dict[str, float] = field(default_factory=dict, repr=False)

    @property
    def total_ms(self) -> float:
        """The sum of all nodes' median times (close to, not the same as, one run's wall time)."""
        return sum(node.ms for node in self.nodes)

    def module_ms(self) -> Dict[str, float]:
        """Milliseconds per module name: the summed times of the nodes mapped to it (unmapped nodes left out)."""
        if not self._by_module:
            for node in self.nodes:
                if node.module is not None:
                    self._by_module[node.module] = self._by_module.get(node.module, 0.0) + node.ms
        return self._by_module

    def ms_within(self, module: str) -> float:
        """Milliseconds of ``module`` and everything inside it (``model.2.cv1``: its convolution and activation)."""
        prefix = module + "."
        return sum(ms for name, ms in self.module_ms().items() if name == module or name.startswith(prefix))

    def to_dict(self) -> Dict[str, Any]:
        """The table as the cache stores it."""
        return {"key": self.key, "runs": self.runs, "total_ms": self.total_ms, "other_load": self.other_load,
                "nodes": [node.to_dict() for node in self.nodes]}


def default_cache_dir() -> Path:
    """``<Ultralytics settings folder>/prune_plugin/layer_latency``, where tables are cached by default."""
    return measure_cache.default_cache_dir("layer_latency")


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``'s ``model name`` on Linux, else what ``platform`` says)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def width_signature(model: nn.Module) -> str:
    """A short hash of the model's class and every convolution's name, input and output widths, kernel, stride and
    groups: two models share it only when every layer has the same shape."""
    rows = [type(model).__name__]
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            rows.append(f"{name}:{m.in_channels}:{m.out_channels}:{m.kernel_size}:{m.stride}:{m.groups}")
    return hashlib.sha256("\n".join(rows).encode()).hexdigest()[:16]


def table_key(model: nn.Module, imgsz: int, runtime: str, threads: Optional[int],
              fast_dfl: bool = False) -> Dict[str, Any]:
    """What a table measured now would be valid for; a cached table is used only when its key is equal."""
    return {
        "format": TABLE_FORMAT,
        "runtime": runtime,
        "runtime_version": runtime_version(runtime),
        "cpu": cpu_model(),
        "imgsz": int(imgsz),
        "threads": check_threads(threads),
        "fast_dfl": bool(fast_dfl),
        "widths": width_signature(model),
    }


def layer_latency_table(
    model: nn.Module,
    imgsz: int,
    runtime: str = "onnxruntime",
    threads: Optional[int] = None,
    fast_dfl: bool = False,
    cache_dir: Optional[Union[str, Path]] = None,
    runs: int = RUNS,
    warmup: int = WARMUP,
) -> LayerLatencyTable:
    """The per-layer latency table of ``model`` in ``runtime``: from the cache when it holds one for the same key,
    else measured now and cached.

    Args:
        model: An Ultralytics model (unchanged; an evaluation copy is exported). Node names map onto its module
            names, so pass the form whose names you will look up (e.g. the unsplit form pruning uses).
        imgsz: Square input size.
        runtime: ``onnxruntime`` or ``openvino``.
        threads: Threads inside one operator, or None for the runtime's default.
        fast_dfl: Export the DFL as ``fast_dfl=True`` does.
        cache_dir: Folder of the cached tables; default :func:`default_cache_dir`.
        runs: Profiled runs per node when measuring.
        warmup: Untimed runs before them.

    Returns:
        The table; ``from_cache`` says whether it was measured by this call.
    """
    key = table_key(model, imgsz, runtime, threads, fast_dfl)
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = measure_cache.cache_file(folder, f"{runtime}_{int(imgsz)}", key)
    table, from_cache = measure_cache.reuse_or_measure(
        path, key, lambda: _measure(model, key, runs, warmup), lambda data: _table(data, key, path))
    table.from_cache = from_cache
    return table


def _measure(model: nn.Module, key: Dict[str, Any], runs: int, warmup: int) -> Dict[str, Any]:
    """Export ``model`` to a temporary ONNX file and profile it for ``key`` (runtime, size, threads, DFL form); the
    table's data as the cache stores it."""
    from ultralytics_prune_plugin.deploy.module_onnx import export_module_onnx

    names = {name for name, _ in model.named_modules()}
    with tempfile.TemporaryDirectory(prefix="layer_latency_") as tmp:
        onnx_file = export_module_onnx(model, key["imgsz"], Path(tmp) / "model.onnx", fast_dfl=key["fast_dfl"])
        with OtherLoad() as load:
            nodes = profile_nodes(onnx_file, key["imgsz"], key["runtime"], threads=key["threads"], runs=runs,
                                  warmup=warmup, module_names=names)
    return LayerLatencyTable(key, nodes, runs, other_load=load.share).to_dict()


def _table(data: Dict[str, Any], key: Dict[str, Any], path: Path) -> LayerLatencyTable:
    """The table of stored ``data`` (raises ``TypeError``/``KeyError``/``ValueError`` where it does not parse)."""
    nodes = [NodeTime(**node) for node in data["nodes"]]
    return LayerLatencyTable(key, nodes, int(data["runs"]), path, other_load=data.get("other_load"))
