"""Each prune step's measured latency beside its MACs: the step's model timed against the run's input.

Right after a step prunes (its widths are final; the fine-tune changes weights, not widths), an evaluation copy of the
pruned model is exported to a temporary ONNX file by :func:`~ultralytics_prune_plugin.deploy.module_onnx.
export_module_onnx` (the training model is not touched) and timed with
:func:`~ultralytics_prune_plugin.deploy.latency.time_models` interleaved with the run's input (exported once per
process, from ``weights/baseline.pt``), in ``runtime=`` at the run's ``imgsz``, batch 1, ``threads=``. The step's row
gets ``latency_ms`` and ``speedup`` (input ms / step ms) from each model's fastest run (``min_ms``, the statistic
``target_speedup`` compares: the least disturbed by other processes), and ``latency_median_ms`` /
``input_latency_median_ms`` beside them. :data:`RUNS` timed runs after :data:`WARMUP` per model keep it to a few
seconds per step for a nano model at 640 px on one CPU thread (yolov8n: about 115 ms the input, 60-80 ms a step).

Timing never fails a run: when the runtime is missing or an export fails, the step records None, one warning line
says why, and later steps are not timed either.
"""

from __future__ import annotations

import shutil
import tempfile
from copy import deepcopy
from pathlib import Path
from typing import Any, Callable, Dict, Optional

from torch import nn

from ultralytics_prune_plugin.engine.run_config import PREFIX
from ultralytics_prune_plugin.report.console import warn

RUNS, WARMUP = 20, 3  # timed and untimed runs per model and step
STATISTIC = "min_ms"  # what latency_ms and speedup come from (as engine/latency_target.py)
STEP_KEYS = ("latency_ms", "speedup", "latency_median_ms", "input_latency_ms", "input_latency_median_ms")


class StepTimer:
    """Times each step's model against the run's input in one runtime; one per run (or resumed run).

    Args:
        load_input: Returns the run's input model (prepared for pruning, as the steps' models are); called once, at
            the first step timed.
        runtime: ``runtime=`` (``onnxruntime``, ``openvino``, ``tensorrt``).
        imgsz: The run's square input size.
        threads: ``threads=``, or None for the runtime's default.
        fast_dfl: Export as the run's final files are (``fast_dfl=``).
    """

    def __init__(self, load_input: Callable[[], nn.Module], runtime: str, imgsz: int, threads: Optional[int] = None,
                 fast_dfl: bool = False):
        self.load_input = load_input
        self.runtime, self.imgsz, self.threads, self.fast_dfl = runtime, int(imgsz), threads, bool(fast_dfl)
        self.folder: Optional[Path] = None
        self.input_file: Optional[Path] = None
        self.failed: Optional[str] = None  # why timing stopped, once it has

    def settings(self) -> Dict[str, Any]:
        """What the steps' numbers mean: the report's ``step_latency``."""
        return {"runtime": self.runtime, "threads": self.threads, "imgsz": self.imgsz, "batch": 1, "runs": RUNS,
                "warmup": WARMUP, "statistic": STATISTIC, "reference": "the input (weights/baseline.pt), interleaved"}

    def time_step(self, model: nn.Module, step: int) -> Dict[str, Optional[float]]:
        """The step's latency fields (:data:`STEP_KEYS`); all None once timing has failed. ``model`` is unchanged."""
        empty = dict.fromkeys(STEP_KEYS)
        if self.failed is not None:
            return empty
        try:
            from ultralytics_prune_plugin.deploy.latency import time_models
            from ultralytics_prune_plugin.deploy.module_onnx import export_module_onnx

            if self.folder is None:
                self.folder = Path(tempfile.mkdtemp(prefix="prune-step-latency-"))
            if self.input_file is None:
                self.input_file = export_module_onnx(_on_cpu(self.load_input()), self.imgsz,
                                                     self.folder / "input.onnx", fast_dfl=self.fast_dfl)
            path = export_module_onnx(_on_cpu(model), self.imgsz, self.folder / f"step_{step}.onnx",
                                      fast_dfl=self.fast_dfl)
            try:
                timed = time_models({"input": (self.runtime, self.input_file), "step": (self.runtime, path)},
                                    self.imgsz, runs=RUNS, warmup=WARMUP, threads=self.threads)
            finally:
                path.unlink(missing_ok=True)
        except Exception as error:  # a missing runtime, an export the runtime cannot open: the run goes on
            self.failed = f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"
            warn(f"{PREFIX}step {step}: cannot time the pruned model in {self.runtime} ({self.failed}); the steps' "
                 "latency_ms and speedup stay empty")
            self.close()
            return empty
        base, ms = timed["input"][STATISTIC], timed["step"][STATISTIC]
        return {"latency_ms": ms, "speedup": base / ms, "latency_median_ms": timed["step"]["median_ms"],
                "input_latency_ms": base, "input_latency_median_ms": timed["input"]["median_ms"]}

    def close(self) -> None:
        """Remove the temporary ONNX files (the input's is exported again if another step is timed)."""
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
        self.folder = self.input_file = None


def _on_cpu(model: nn.Module) -> nn.Module:
    """``model`` itself when on the CPU, else a CPU copy (the export traces on the CPU)."""
    parameter = next(model.parameters(), None)
    return model if parameter is None or parameter.device.type == "cpu" else deepcopy(model).cpu()
