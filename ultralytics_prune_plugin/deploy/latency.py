"""Time exported models at batch 1, any mix of runtimes and files, interleaved in one process.

:func:`time_models` is what everything that needs a measured latency calls: the prune run's deployment check, the
artefact table and a latency-targeted search. Every model gets the same fixed random input (seed 0, uniform in
[0, 1), shape ``(1, 3, imgsz, imgsz)``); after ``warmup`` untimed runs per model, each model runs ``runs`` times, one
run being one :meth:`~.runtimes.Session.run` call timed with ``time.perf_counter``. With ``alternate=True`` the models
take turns, one run each per round, and the model that opens a round rotates, so that slow drift of the machine (heat,
other processes) hits all models alike.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from ultralytics_prune_plugin.deploy.runtimes import Runtime, Session, check_threads, get_runtime

__all__ = ["time_models", "time_sessions", "latency_summary"]

ModelSpec = Tuple[Union[str, Runtime], Union[str, Path]]  # (runtime or its name, exported model)


def time_models(
    models: Mapping[str, ModelSpec],
    imgsz: int,
    runs: int = 30,
    warmup: int = 5,
    threads: Optional[int] = None,
    alternate: bool = True,
) -> Dict[str, Dict[str, float]]:
    """Open each model in its runtime and time them all, interleaved, at batch 1.

    Args:
        models: Label -> ``(runtime, path)``, e.g. ``{"stock": ("onnxruntime", "base.onnx"),
            "pruned_ov": ("openvino", "pruned_openvino_model")}``; a runtime is a :class:`~.runtimes.Runtime` or its
            name.
        imgsz: Square input size; must match each model's static input size.
        runs: Timed runs per model (>= 1).
        warmup: Untimed runs per model before timing (>= 0).
        threads: Threads per model inside one operator, or None for each runtime's default.
        alternate: Interleave the models run by run (True) or time them one after another (False).

    Returns:
        Label -> ``{"median_ms", "p10_ms", "p90_ms", "min_ms", "runs"}``; percentiles are linearly interpolated.

    Raises:
        ValueError: ``models`` is empty, a count is out of range, or a model's input does not fit.
        RuntimeError: A runtime cannot run here (one line, with how to install it).
        FileNotFoundError: A model does not exist.
    """
    if not models:
        raise ValueError("no models to time")
    threads = check_threads(threads)
    sessions = {}
    for label, (runtime, path) in models.items():
        runtime = runtime if isinstance(runtime, Runtime) else get_runtime(runtime)
        sessions[label] = runtime.open(path, threads=threads)
    return time_sessions(sessions, imgsz, runs=runs, warmup=warmup, alternate=alternate)


def time_sessions(
    sessions: Mapping[str, Session], imgsz: int, runs: int = 30, warmup: int = 5, alternate: bool = True
) -> Dict[str, Dict[str, float]]:
    """Time already opened sessions, as :func:`time_models` does (same input, schedule and summary)."""
    _check_count("imgsz", imgsz, 1)
    _check_count("runs", runs, 1)
    _check_count("warmup", warmup, 0)
    if not sessions:
        raise ValueError("no models to time")
    image = np.random.default_rng(0).random((1, 3, imgsz, imgsz), dtype=np.float32)
    for session in sessions.values():
        session.check_input(image)
    labels = list(sessions)
    for label in schedule(labels, warmup, alternate):
        sessions[label].run(image)
    times: Dict[str, List[float]] = {label: [] for label in labels}
    for label in schedule(labels, runs, alternate):
        times[label].append(sessions[label].time_run(image))
    return {label: latency_summary(ms) for label, ms in times.items()}


def schedule(labels: Sequence[str], count: int, alternate: bool) -> List[str]:
    """Return the order of ``count`` runs per label: rotating rounds when alternating, else label by label."""
    if not alternate:
        return [label for label in labels for _ in range(count)]
    n = len(labels)
    return [labels[(i + r) % n] for r in range(count) for i in range(n)]


def latency_summary(ms: Sequence[float]) -> Dict[str, float]:
    """Return the median, 10th and 90th percentiles, minimum and count of run times in milliseconds."""
    values = np.asarray(ms, dtype=np.float64)
    p10, median, p90 = np.percentile(values, [10, 50, 90])
    return {
        "median_ms": float(median),
        "p10_ms": float(p10),
        "p90_ms": float(p90),
        "min_ms": float(values.min()),
        "runs": int(values.size),
    }


def _check_count(name: str, value: Any, minimum: int) -> None:
    """Raise ValueError unless ``value`` is an int (not a bool) of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
