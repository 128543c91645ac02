"""Deployable artefacts: a checkpoint exported by Ultralytics' own exporter in a format and precision, validated by
Ultralytics' own validator on the artefact, and measured (size; latency through :mod:`.latency`).

* :func:`export_artefact` exports in a private staging folder and moves the result into the destination folder under
  a free name: an existing file or folder is never overwritten (``pruned_int8.onnx``, then ``pruned_int8-2.onnx``).
* :func:`validate_artefact` validates the artefact with the task's validator and checks which backend ran it.
* :func:`check_deployment_request` refuses, in one line naming the key, what cannot be done here (a runtime that is not
  installed, INT8 without data, ONNX INT8 on a series whose exporter lacks it) before a run starts.

INT8 is Ultralytics' static quantization, calibrated on the training split of the run's data (at most
:data:`CALIBRATION_IMAGES` images): ONNX through ONNX Runtime's QDQ quantizer (only the weighted ops, the head's
decode stays float), OpenVINO through NNCF (the detection head kept float). Ultralytics' exporter has ONNX INT8 from
8.4.60 on; on older series ``int8=True`` with ``formats=onnx`` is refused (see :func:`check_deployment_request`).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from ultralytics_prune_plugin.config import PluginArgumentError, parse_formats  # noqa: F401 (re-exported)
from ultralytics_prune_plugin.deploy.onnx import (
    _checked_weights,
    _paths_rewritten_in_log,
    _staging_dir,
    validate_onnx,
)
from ultralytics_prune_plugin.deploy.runtimes import get_runtime

__all__ = [
    "FORMATS", "CALIBRATION_IMAGES", "export_artefact", "validate_artefact", "artefact_size_mib",
    "check_deployment_request", "timing_runtime", "onnx_int8_supported",
]

PathLike = Union[str, os.PathLike]
# format -> (what Ultralytics' exporter appends to the checkpoint's stem, the runtime that runs it natively)
FORMATS: Dict[str, Tuple[str, str]] = {"onnx": (".onnx", "onnxruntime"), "openvino": ("_openvino_model", "openvino")}
CALIBRATION_IMAGES = 300  # Ultralytics recommends >= 300 calibration images; more only slows the export
_MIB = float(1 << 20)


def onnx_int8_supported() -> bool:
    """True when the installed Ultralytics exports ONNX INT8 (8.4.60 and later; the adapter of the series knows)."""
    from ultralytics_prune_plugin.adapters import internals

    return internals().exports_onnx_int8()


def timing_runtime(fmt: str, runtime: str) -> str:
    """The runtime an artefact of format ``fmt`` is timed in: ``runtime=`` for ONNX files, else the format's own."""
    return runtime if fmt == "onnx" else FORMATS[fmt][1]


def check_deployment_request(formats: Sequence[str], int8: bool, runtime: str, has_data: bool, int8_key: str) -> None:
    """Refuse, before a run starts, artefacts that cannot be made or timed here.

    Args:
        formats: The formats asked for (``formats=``).
        int8: Whether INT8 artefacts are asked for too.
        runtime: The runtime that times ONNX files (``runtime=``).
        has_data: Whether the run has data (INT8 calibrates on it).
        int8_key: How the user asked for INT8, for the message (``int8=True`` or ``quantize=8``).

    Raises:
        PluginArgumentError: One line naming the key, why, and how to install what is missing.
    """
    chosen = get_runtime(runtime)
    reason = chosen.unavailable_reason()
    if reason:
        raise PluginArgumentError(f"'runtime={runtime}' cannot run here: {reason}")
    if chosen.name == "tensorrt":
        raise PluginArgumentError(
            "'runtime=tensorrt': prune runs do not export TensorRT engines yet; time with runtime=onnxruntime or openvino"
        )
    for fmt in formats:
        reason = get_runtime(FORMATS[fmt][1]).unavailable_reason()
        if reason:
            raise PluginArgumentError(f"'formats={','.join(formats)}' asks for {fmt}, but {reason}")
    if not int8:
        return
    if not has_data:
        raise PluginArgumentError(f"'{int8_key}' calibrates on the run's training images: give 'data=...'")
    if "onnx" in formats and not onnx_int8_supported():
        import ultralytics

        raise PluginArgumentError(
            f"'{int8_key}' with formats=onnx needs Ultralytics >= 8.4.60, whose exporter quantizes ONNX "
            f"(this is {ultralytics.__version__}); use formats=openvino for INT8 here, or upgrade Ultralytics"
        )
    if "openvino" in formats:
        from importlib.util import find_spec

        if find_spec("nncf") is None:
            raise PluginArgumentError(
                f"'{int8_key}' with formats=openvino quantizes with NNCF, which is not installed; install it with: "
                + get_runtime("openvino").install_hint
            )


# Export ---------------------------------------------------------------------------------------------------------------
def export_artefact(
    weights: PathLike,
    fmt: str,
    imgsz: int,
    out_dir: PathLike,
    stem: Optional[str] = None,
    int8: bool = False,
    data: Optional[str] = None,
    fast_dfl: bool = False,
) -> Path:
    """Export ``weights`` with Ultralytics' exporter into ``out_dir``, never overwriting anything there.

    Args:
        weights: An Ultralytics ``.pt`` checkpoint.
        fmt: ``onnx`` or ``openvino``.
        imgsz: Square input size (a multiple of the model's stride); the artefact has a static batch-1 input.
        out_dir: An existing folder.
        stem: The artefact's name before the format's suffix; default the checkpoint's stem, plus ``_int8``.
        int8: Quantize to INT8, calibrating on the training split of ``data``.
        data: The dataset (needed with ``int8``).
        fast_dfl: Export the DFL with its last-axis softmax (ONNX only; see :mod:`.fast_dfl`).

    Returns:
        The artefact: an ``.onnx`` file or an ``*_openvino_model`` folder.
    """
    from ultralytics.utils.files import increment_path

    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    weights = _checked_weights(weights)
    out_dir = Path(out_dir).resolve()
    suffix = FORMATS[fmt][0]
    stem = stem or (weights.stem + ("_int8" if int8 else ""))
    dest = Path(increment_path(out_dir / f"{stem}{suffix}", exist_ok=False, sep="-"))
    kwargs: Dict[str, Any] = {"format": fmt, "imgsz": int(imgsz), "batch": 1, "device": "cpu", "dynamic": False}
    if fmt == "onnx":
        kwargs.update(simplify=False, fast_dfl=bool(fast_dfl))
    if int8:
        if not data:
            raise ValueError("int8 export needs data to calibrate on")
        kwargs.update(_int8_kwargs(), data=str(data), split="train", fraction=_calibration_fraction(data))
    with _staging_dir(dest) as stage:
        staged = stage / weights.name
        shutil.copyfile(weights, staged)
        with _paths_rewritten_in_log([(str(stage), str(out_dir))]):
            produced = _export(staged, kwargs)
        os.replace(produced, dest)
    return dest


def _int8_kwargs() -> Dict[str, Any]:
    """The exporter's INT8 switch: ``quantize=8`` on 8.4 (where ``int8`` is its deprecated alias), else ``int8``."""
    from ultralytics_prune_plugin.adapters import internals

    return internals().int8_export_args()


def _calibration_fraction(data: str) -> float:
    """The fraction of the training images that makes at most :data:`CALIBRATION_IMAGES` calibration images."""
    count = count_train_images(data)
    return 1.0 if count <= CALIBRATION_IMAGES else CALIBRATION_IMAGES / count


def count_train_images(data: str) -> int:
    """Count the training images of a detection-style dataset YAML (0 when they cannot be listed)."""
    from ultralytics.data.utils import IMG_FORMATS

    from ultralytics_prune_plugin.adapters import internals

    try:
        cfg = internals().load_yaml(str(data))
    except Exception:  # a classify folder or anything else: no fraction
        return 0
    root = Path(cfg.get("path") or Path(data).parent)
    train = cfg.get("train")
    count = 0
    for entry in train if isinstance(train, list) else [train]:
        path = Path(entry) if Path(str(entry)).is_absolute() else root / str(entry)
        if path.is_dir():
            count += sum(1 for p in path.rglob("*") if p.suffix[1:].lower() in IMG_FORMATS)
        elif path.is_file():
            count += sum(1 for line in path.read_text().splitlines() if line.strip())
    return count


def _export(staged: Path, kwargs: Dict[str, Any]) -> Path:
    """Run Ultralytics' exporter on the staged checkpoint; return what it wrote inside the staging folder."""
    from ultralytics import YOLO

    produced = Path(YOLO(str(staged)).export(**kwargs))
    if produced.resolve().parent != staged.parent or not produced.exists():
        raise RuntimeError(f"Ultralytics wrote the {kwargs['format']} export somewhere unexpected: {produced}")
    return produced


# Validation and size --------------------------------------------------------------------------------------------------
def validate_artefact(path: PathLike, data: PathLike, imgsz: int, task: str = "detect", **val_kwargs: Any) -> Dict[str, Any]:
    """Validate an artefact with the task's Ultralytics validator, which runs it in its own backend.

    ``.onnx`` files go through :func:`~.onnx.validate_onnx` (ONNX Runtime, checked); OpenVINO folders through the same
    validator, checked to have run in OpenVINO.

    Returns:
        ``{"map50", "map50_95", "metric_names", "backend", "save_dir"}``.
    """
    path = Path(path).expanduser().resolve()
    if path.suffix == ".onnx":
        record = validate_onnx(path, data, imgsz, task=task, **val_kwargs)
        record["backend"] = "onnxruntime"
        return record
    return _validate_openvino(path, data, imgsz, task, val_kwargs)


def _validate_openvino(path: Path, data: PathLike, imgsz: int, task: str, val_kwargs: Dict[str, Any]) -> Dict[str, Any]:
    """Validate an ``*_openvino_model`` folder, checking that the validator ran it in OpenVINO."""
    from ultralytics import YOLO

    from ultralytics_prune_plugin.deploy.onnx import _recording_validator
    from ultralytics_prune_plugin.tasks import metric_names, read_metrics

    if not path.is_dir():
        raise FileNotFoundError(f"OpenVINO model folder not found: {path}")
    names = metric_names(task)
    model = YOLO(str(path), task=task)
    backends: List[Any] = []
    validator = _recording_validator(model.task_map[task]["validator"], backends)
    args = {"device": "cpu", **val_kwargs, "data": str(data), "imgsz": int(imgsz), "batch": 1}
    if isinstance(args.get("project"), os.PathLike):
        args["project"] = str(args["project"])
    metrics = model.val(validator=validator, **args)
    backend = backends[0] if len(backends) == 1 else None
    from ultralytics_prune_plugin.adapters import internals

    if backend is None or not internals().runs_openvino(backend):
        raise RuntimeError(f"the validator did not run {path.name} in OpenVINO (backend: {type(backend).__name__})")
    return {**read_metrics(task, metrics), "metric_names": names, "backend": "openvino", "save_dir": Path(metrics.save_dir)}


def artefact_size_mib(path: PathLike) -> float:
    """The size of an artefact in MiB: the file, or every file of a folder (an OpenVINO model's .xml and .bin)."""
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / _MIB
    if path.is_file():
        return path.stat().st_size / _MIB
    raise FileNotFoundError(f"artefact not found: {path}")

