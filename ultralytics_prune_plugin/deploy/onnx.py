"""Export Ultralytics YOLO models to ONNX, validate them with ONNX Runtime and time them on the CPU.

The four public functions are thin, checked wrappers around what Ultralytics 8.1 and ONNX Runtime already do:

* :func:`export_onnx` runs Ultralytics' own exporter (``YOLO(weights).export(format="onnx")``) and puts the file
  where the caller asks, atomically.
* :func:`validate_onnx` runs Ultralytics' own validator of the model's task on the ``.onnx`` file, which Ultralytics'
  ``AutoBackend`` executes with ONNX Runtime, and proves afterwards that ONNX Runtime really ran.
* :func:`measure_latency` times several ONNX models in one process with ``onnxruntime.InferenceSession``.
* :func:`onnx_file_mb` gives the size of a model file.

Traps met with Ultralytics 8.1.47, torch 2.14, onnx 1.23 and onnxruntime 1.32, and how this module handles them:

1. **The exporter writes next to the checkpoint and overwrites.** ``YOLO("w/best.pt").export(format="onnx")``
   always writes ``w/best.onnx``, silently replacing a file of that name. :func:`export_onnx` therefore exports a
   private copy of the checkpoint inside a staging folder that it creates next to the destination, and moves the
   result onto the destination with ``os.replace``. **File rule:** the only user-visible path ever written is the
   destination, which is ``out`` or, when ``out`` is None, ``<weights>.onnx`` (where Ultralytics itself would
   write). Asking for a destination is asking to own it: an existing file there is replaced, atomically, so
   readers see the old file or the new one, never a partial one. Nothing else is touched; in particular, with
   ``out`` given, a ``best.onnx`` next to ``best.pt`` is left alone. The staging folder (``.<name>.export-*``) is
   removed afterwards, also on failure, and an export that fails leaves the destination as it was.
2. **The exporter silently rounds ``imgsz`` up to a multiple of the largest stride** (32 for YOLOv8), so
   ``imgsz=80`` gives a 96x96 model that then fails validation at 80. :func:`export_onnx` refuses such sizes.
3. **Static shapes by default.** With ``dynamic=False`` (the default, kept here) the graph has one input named
   ``images`` of shape ``(batch, 3, imgsz, imgsz)`` (float32, RGB, 0-1, letterboxed) and one output named
   ``output0`` of shape ``(batch, 4 + nc, anchors)``: boxes as centre-x, centre-y, width, height in input pixels,
   then per-class sigmoid scores, *before* NMS (8400 anchors at 640, 84 at 64). ``dynamic=True`` makes batch,
   height and width symbolic (and the output's anchor axis), and moves the model to the CPU for the export.
   Metadata (``stride``, ``names``, ``imgsz``, ``task``, ...) is stored as strings in the model's custom metadata.
4. **Ultralytics validates non-PyTorch models with ``batch=1`` and ``rect=False``,** whatever was asked for,
   while ``YOLO(pt).val()`` defaults to ``rect=True`` and the given batch. ``rect=True`` is not a no-op even on
   square images: rectangular batches are padded by half a stride, so 64x64 images are validated at 96x96
   (mAP50-95 0.125 with ``rect=True`` against 0.106 with ``rect=False`` for the same checkpoint in the tests). To
   compare an ONNX model with its checkpoint, validate the checkpoint with ``batch=1`` and ``rect=False``.
   A static ONNX model only accepts its own ``imgsz``; :func:`validate_onnx` checks this before starting, instead
   of letting ONNX Runtime fail on the first batch with an ``INVALID_ARGUMENT`` dimension error.
5. **``simplify=True`` needs ``onnxsim``, which is not installed,** and Ultralytics' requirement check would then
   try to ``pip install`` it on the fly. ``simplify`` is off by default here, and :func:`export_onnx` raises
   ``ModuleNotFoundError`` rather than letting anything be installed when it is asked for without ``onnxsim``.
6. **torch >= 2.9 exports with the dynamo exporter and 8.1 guesses opset 9** on new torch. The plugin's adapter
   (:mod:`ultralytics_prune_plugin.adapters.compat`, for 8.1 and 8.2) switches Ultralytics to the TorchScript exporter
   with opset 17 as soon as ``ultralytics`` is imported; pass ``opset=`` to choose another one.
7. **Which runtime ran?** ``YOLO(path).val()`` builds an ``AutoBackend`` inside the validator and never exposes
   it. ONNX Runtime 1.32 wheels list ``AzureExecutionProvider`` besides ``CPUExecutionProvider``, and with
   ``dnn=True`` the same file would run in OpenCV instead. :func:`validate_onnx` therefore validates with a
   subclass of the task's validator that keeps the backend it was given, checks that it is the ONNX Runtime
   backend, and reports the providers of its live ``InferenceSession``.
8. **Where the run goes.** Without ``project`` the validator writes under Ultralytics' global ``runs_dir``
   setting; :func:`validate_onnx` passes ``project``, ``name`` and ``exist_ok`` through and returns the run folder.
9. **Timing several sessions in one process.** Each ONNX Runtime session owns its own intra-op thread pool, whose
   threads spin for a while after each run by default. With models run alternately, the pool of the model that
   just ran would spin on the cores the next model needs, so :func:`measure_latency` turns spinning off
   (``session.intra_op.allow_spinning=0``) for every session; see :func:`session_options`. Measured on the 2-core
   development machine (yolov8n, 640, 2 threads, two sessions alternating, one other busy process): median
   48 ms per run without spinning, 104-118 ms with ONNX Runtime's default spinning.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from importlib.util import find_spec
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Union

import numpy as np

from ultralytics_prune_plugin.deploy.latency import latency_summary as _summary  # noqa: F401 (kept importable)
from ultralytics_prune_plugin.deploy.latency import schedule as _schedule  # noqa: F401 (kept importable)
from ultralytics_prune_plugin.deploy.latency import time_models
from ultralytics_prune_plugin.deploy.runtimes import session_options

__all__ = ["export_onnx", "validate_onnx", "measure_latency", "onnx_file_mb", "session_options"]

PathLike = Union[str, os.PathLike]

CPU_PROVIDER = "CPUExecutionProvider"
_STAGING_PREFIX = ".{name}.export-"
_MIB = float(1 << 20)


# Export ---------------------------------------------------------------------------------------------------------------
def export_onnx(weights: PathLike, imgsz: int, out: Optional[PathLike] = None, **export_kwargs: Any) -> Path:
    """Export a detection checkpoint to ONNX with Ultralytics' own exporter.

    The file is produced by ``YOLO(<copy of weights>).export(format="onnx", imgsz=imgsz, ...)`` inside a staging
    folder next to the destination and then moved onto the destination with ``os.replace`` (see rule 1 of the module
    docstring): the destination is replaced atomically and no other file is written or overwritten.

    Args:
        weights: Ultralytics detection checkpoint (``.pt``).
        imgsz: Square input size of the exported model; a multiple of the model's largest stride (32 for YOLOv8).
        out: Destination ``.onnx`` file, or an existing folder to write ``<weights stem>.onnx`` into. When None,
            the destination is ``<weights>.onnx``, where Ultralytics itself writes.
        **export_kwargs: Further arguments of Ultralytics' exporter, e.g. ``opset``, ``dynamic``, ``half``,
            ``simplify``, ``batch``, ``device``. Defaults set here: ``simplify=False``, ``dynamic=False``,
            ``batch=1``, ``device="cpu"``. ``format`` may only be ``"onnx"``.

    Returns:
        Absolute path of the written ONNX file.

    Raises:
        FileNotFoundError: If ``weights`` does not exist.
        ValueError: If ``weights`` is not a detection ``.pt`` checkpoint, ``out`` is not an ``.onnx`` path,
            ``imgsz`` is not a positive multiple of the stride, or ``format`` is not ``"onnx"``.
        ModuleNotFoundError: If ``simplify=True`` is asked for but ``onnxsim`` is not installed.
    """
    weights = _checked_weights(weights)
    dest = _destination(weights, out)
    kwargs = _export_args(imgsz, export_kwargs)
    with _staging_dir(dest) as stage:
        staged = stage / weights.name
        shutil.copyfile(weights, staged)
        replacements = [
            (str(staged.with_suffix(".onnx")), str(dest)),
            (str(staged), str(weights)),
            (str(stage), str(dest.parent)),
        ]
        with _paths_rewritten_in_log(replacements):  # the staging folder is gone a moment later: never print it
            produced = _run_exporter(staged, kwargs)
        os.replace(produced, dest)
    return dest  # Ultralytics' exporter has said where (its lines show ``dest``, see above); no line of ours repeats it


class _PathRewriteFilter:
    """Logging filter that replaces paths in messages (each ``(old, new)`` pair, in order)."""

    def __init__(self, replacements: Sequence[tuple]):
        """Keep the ``(old, new)`` pairs."""
        self.replacements = list(replacements)

    def filter(self, record) -> bool:
        """Rewrite the record's message; never drop a record."""
        if isinstance(record.msg, str):
            for old, new in self.replacements:
                record.msg = record.msg.replace(old, new)
        return True


@contextmanager
def _paths_rewritten_in_log(replacements: Sequence[tuple]) -> Iterator[None]:
    """While the exporter runs, show the final paths in its log lines instead of the staging folder's."""
    from ultralytics.utils import LOGGER

    rewrite = _PathRewriteFilter(replacements)
    LOGGER.addFilter(rewrite)
    try:
        yield
    finally:
        LOGGER.removeFilter(rewrite)


def _checked_weights(weights: PathLike) -> Path:
    """Return ``weights`` as an absolute path after checking that it is an existing ``.pt`` file."""
    path = Path(weights).expanduser().resolve()
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.suffix != ".pt":
        raise ValueError(f"expected an Ultralytics .pt checkpoint, got {path.name!r}")
    return path


def _destination(weights: Path, out: Optional[PathLike]) -> Path:
    """Return the absolute destination of the export of ``weights`` (see rule 1 of the module docstring)."""
    if out is None:
        return weights.with_suffix(".onnx")
    dest = Path(out).expanduser().resolve()
    if dest.is_dir():
        dest = dest / f"{weights.stem}.onnx"
    if dest.suffix != ".onnx":
        raise ValueError(f"out must be an .onnx file or an existing folder, got {str(out)!r}")
    if not dest.parent.is_dir():
        raise FileNotFoundError(f"the folder of out does not exist: {dest.parent}")
    return dest


def _export_args(imgsz: int, export_kwargs: Mapping[str, Any]) -> Dict[str, Any]:
    """Return the exporter arguments: the caller's, over this module's defaults, with ``format`` and ``imgsz``."""
    _check_positive_int("imgsz", imgsz)
    fmt = str(export_kwargs.get("format", "onnx")).lower()
    if fmt != "onnx":
        raise ValueError(f"export_onnx only exports format='onnx', got format={fmt!r}")
    kwargs = {"simplify": False, "dynamic": False, "batch": 1, "device": "cpu", **export_kwargs}
    kwargs.update(format="onnx", imgsz=int(imgsz))
    if kwargs["simplify"] and find_spec("onnxsim") is None:
        raise ModuleNotFoundError(
            "simplify=True needs the 'onnxsim' package, which is not installed; export with simplify=False "
            "(the default) or install onnxsim yourself (Ultralytics would otherwise try to pip-install it)"
        )
    return kwargs


@contextmanager
def _staging_dir(dest: Path) -> Iterator[Path]:
    """Create a private folder next to ``dest`` (same file system, so ``os.replace`` is atomic); remove it after."""
    stage = Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX.format(name=dest.name), dir=dest.parent))
    try:
        yield stage
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _run_exporter(staged_weights: Path, kwargs: Dict[str, Any]) -> Path:
    """Export ``staged_weights`` with Ultralytics and return the path of the file the exporter wrote."""
    from ultralytics import YOLO

    from ultralytics_prune_plugin.tasks import TASKS

    model = YOLO(str(staged_weights))
    if model.task not in TASKS:
        raise ValueError(f"{staged_weights.name!r} is a {model.task!r} model; the plugin exports {', '.join(TASKS)}")
    stride = int(max(model.model.stride))
    if kwargs["imgsz"] % stride:
        raise ValueError(
            f"imgsz={kwargs['imgsz']} is not a multiple of the model's stride {stride}; Ultralytics would silently "
            f"export at {-(-kwargs['imgsz'] // stride) * stride} instead"
        )
    produced = Path(model.export(**kwargs))
    if produced.resolve().parent != staged_weights.parent or not produced.is_file():
        raise RuntimeError(f"Ultralytics wrote the ONNX file somewhere unexpected: {produced}")
    return produced


# Validation -----------------------------------------------------------------------------------------------------------
def validate_onnx(
    onnx_path: PathLike, data: PathLike, imgsz: int, batch: int = 1, task: str = "detect", **val_kwargs: Any
) -> Dict[str, Any]:
    """Validate an exported model with its task's Ultralytics validator running the model in ONNX Runtime.

    Runs ``YOLO(onnx_path, task=task).val(data=data, imgsz=imgsz, batch=batch, **val_kwargs)`` with a validator
    that records the backend it is handed, then checks that the backend is ONNX Runtime and reads the providers of
    its live ``InferenceSession``.

    Args:
        onnx_path: ONNX file exported from a model of ``task`` (e.g. by :func:`export_onnx`).
        data: Dataset YAML (for classify: the image folder).
        imgsz: Validation image size; must equal the model's input size when that is static.
        batch: Batch size. Ultralytics validates every non-PyTorch model with ``batch=1`` anyway (trap 4).
        task: The model's Ultralytics task (``detect``, ``segment``, ``pose``, ``obb``, ``classify``).
        **val_kwargs: Further arguments of Ultralytics' validator, e.g. ``project``, ``name``, ``exist_ok``,
            ``split``, ``conf``, ``iou``, ``plots``. ``device`` defaults to ``"cpu"``, so that ONNX Runtime is
            asked for ``CPUExecutionProvider`` only.

    Returns:
        ``{"map50", "map50_95", "metric_names", "provider", "providers", "save_dir"}``: the task's two metrics
        under the report's keys (:func:`~ultralytics_prune_plugin.tasks.read_metrics`: box mAP50 and
        mAP50-95 for detect, mask mAP for segment, keypoint mAP for pose, rotated-box mAP for obb, top-5 and top-1
        accuracy for classify) and their names, the session's first (preferred) execution provider, all its
        providers in order of preference, and the run folder (``project/name``).

    Raises:
        FileNotFoundError: If ``onnx_path`` does not exist.
        ValueError: If ``imgsz`` differs from the model's static input size.
        RuntimeError: If the validator did not run the model in ONNX Runtime.
    """
    from ultralytics import YOLO

    path = Path(onnx_path).expanduser().resolve()
    if not path.is_file():
        raise FileNotFoundError(f"ONNX model not found: {path}")
    _check_positive_int("imgsz", imgsz)
    _check_input_size(path, imgsz)
    from ultralytics_prune_plugin.tasks import metric_names, read_metrics

    names = metric_names(task)  # refuses unknown tasks
    model = YOLO(str(path), task=task)
    backends: List[Any] = []
    validator = _recording_validator(model.task_map[task]["validator"], backends)
    args = {"device": "cpu", **val_kwargs, "data": str(data), "imgsz": int(imgsz), "batch": int(batch)}
    if isinstance(args.get("project"), os.PathLike):
        args["project"] = str(args["project"])
    metrics = model.val(validator=validator, **args)
    providers = _onnxruntime_providers(backends)
    return {
        **read_metrics(task, metrics),
        "metric_names": names,
        "provider": providers[0],
        "providers": providers,
        "save_dir": Path(metrics.save_dir),
    }


def _recording_validator(base: type, sink: List[Any]) -> type:
    """Return a subclass of the validator class ``base`` that appends the model it validates to ``sink``."""

    class BackendRecordingValidator(base):
        """The task's validator, keeping the ``AutoBackend`` it runs (Ultralytics keeps it in a local variable)."""

        def init_metrics(self, model):
            """Record ``model``, then initialise the metrics as the base validator does."""
            sink.append(model)
            super().init_metrics(model)

    return BackendRecordingValidator


def _onnxruntime_providers(backends: Sequence[Any]) -> List[str]:
    """Return the execution providers of the ONNX Runtime session in the recorded backend, checking it is one."""
    import onnxruntime

    from ultralytics_prune_plugin.adapters import internals

    if len(backends) != 1:
        raise RuntimeError(f"expected the validator to run one model, it ran {len(backends)}")
    backend = backends[0]
    session = internals().onnxruntime_session(backend)  # None when the backend runs another format
    if not isinstance(session, onnxruntime.InferenceSession):
        raise RuntimeError(f"the validator did not run the model in ONNX Runtime (backend: {type(backend).__name__})")
    return list(session.get_providers())


def _check_input_size(path: Path, imgsz: int) -> None:
    """Raise ValueError when the ONNX model's first input has a static height or width other than ``imgsz``."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    dims = graph.input[0].type.tensor_type.shape.dim
    static = [d.dim_value for d in dims[2:4] if d.HasField("dim_value")]
    if any(side != imgsz for side in static):
        shape = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in dims]
        raise ValueError(f"{path.name} has the static input shape {shape}, which imgsz={imgsz} does not fit")


# Latency --------------------------------------------------------------------------------------------------------------
# The timing itself is .latency.time_models (any runtime, interleaved); the ONNX Runtime options are .runtimes'.


def measure_latency(
    onnx_paths: Mapping[str, PathLike],
    imgsz: int,
    runs: int = 30,
    warmup: int = 5,
    threads: Optional[int] = None,
    alternate: bool = True,
) -> Dict[str, Dict[str, float]]:
    """Time ONNX models at batch 1 on the CPU with ONNX Runtime, all in this process.

    The ONNX Runtime case of :func:`~ultralytics_prune_plugin.deploy.latency.time_models`: every model gets a
    ``CPUExecutionProvider`` session with :func:`session_options` and the same fixed random input; see there for the
    schedule (``alternate``) and the summary.

    Args:
        onnx_paths: Label -> ONNX file, e.g. ``{"base": Path("base.onnx"), "pruned": Path("pruned.onnx")}``.
        imgsz: Square input size; must match each model's static input size.
        runs: Timed runs per model (>= 1).
        warmup: Untimed runs per model before timing (>= 0).
        threads: ONNX Runtime intra-op threads per session, or None for ONNX Runtime's default.
        alternate: Interleave the models run by run (True) or time them one after another (False).

    Returns:
        Label -> ``{"median_ms", "p10_ms", "p90_ms", "min_ms", "runs"}``; percentiles are linearly interpolated.

    Raises:
        ValueError: If ``onnx_paths`` is empty, a count is out of range, or a model's input does not fit.
        FileNotFoundError: If a model file does not exist.
    """
    if not onnx_paths:
        raise ValueError("onnx_paths is empty")
    _check_positive_int("imgsz", imgsz)
    _check_positive_int("runs", runs)
    _check_positive_int("warmup", warmup, minimum=0)
    if threads is not None:
        _check_positive_int("threads", threads)
    for path in onnx_paths.values():
        if not Path(path).expanduser().is_file():
            raise FileNotFoundError(f"ONNX model not found: {path}")
    models = {label: ("onnxruntime", path) for label, path in onnx_paths.items()}
    return time_models(models, imgsz, runs=runs, warmup=warmup, threads=threads, alternate=alternate)


# Size and helpers -----------------------------------------------------------------------------------------------------
def onnx_file_mb(path: PathLike) -> float:
    """Return the size of an ONNX file in MB of 2**20 bytes (MiB), the unit Ultralytics prints as "MB".

    Only the ``.onnx`` file itself is counted; YOLOv8 exports never use ONNX external-data files.

    Args:
        path: ONNX file.

    Returns:
        File size in MiB.

    Raises:
        FileNotFoundError: If ``path`` is not a file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX model not found: {path}")
    return path.stat().st_size / _MIB


def _check_positive_int(name: str, value: Any, minimum: int = 1) -> None:
    """Raise ValueError unless ``value`` is an int (not a bool) of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
