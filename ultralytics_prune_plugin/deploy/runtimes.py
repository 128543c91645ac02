"""The inference runtimes a deployed model is timed in: ONNX Runtime, OpenVINO and TensorRT, behind one interface.

A :class:`Runtime` knows its name, whether it can run here (:meth:`Runtime.unavailable_reason`, one line, and the
``pip install`` hint), and how to open an exported model on its device with a given thread count
(:meth:`Runtime.open`). The opened :class:`Session` runs one batch-1 input (:meth:`Session.run`). Everything that
times models (:mod:`.latency`) goes through this interface, so a new runtime slots in as one more class here.

* ``onnxruntime`` opens ``.onnx`` files on the CPU execution provider with :func:`session_options`.
* ``openvino`` opens ``.onnx`` files and Ultralytics' ``*_openvino_model/`` folders (their ``.xml``) on the CPU, with
  the ``LATENCY`` performance hint and ``INFERENCE_NUM_THREADS``.
* ``tensorrt`` opens TensorRT ``.engine`` files on a CUDA GPU through Ultralytics' ``AutoBackend``; without CUDA it
  reports itself unavailable (this project's CI machine has no GPU, so this class is not exercised there).
"""

from __future__ import annotations

import time
from importlib.util import find_spec
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np

__all__ = ["Runtime", "Session", "RUNTIMES", "get_runtime", "session_options", "check_threads"]

PathLike = Union[str, Path]
CPU_PROVIDER = "CPUExecutionProvider"
INSTALL = 'pip install "ultralytics-prune-plugin[{extra}]"'


def check_threads(threads: Any) -> Optional[int]:
    """Return ``threads`` as an int >= 1, or None (the runtime's default); raise ValueError otherwise."""
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise ValueError(f"threads must be an integer >= 1 or None, got {threads!r}")
    return int(threads)


class Session:
    """An exported model opened in a runtime, ready to run batch-1 inputs.

    Args:
        label: A name for messages (the file's name by default).
        input_shape: The model's input shape as the runtime reports it (ints, or names/None for symbolic axes).
    """

    def __init__(self, label: str, input_shape: Tuple[Any, ...]):
        self.label = label
        self.input_shape = tuple(input_shape)

    def check_input(self, image: np.ndarray) -> None:
        """Raise ValueError when ``image`` does not fit the model's static input shape."""
        shape = self.input_shape
        fits = len(shape) == image.ndim and all(not isinstance(d, int) or d in (n, -1) for d, n in zip(shape, image.shape))
        if not fits:
            raise ValueError(f"model {self.label!r} takes input shape {list(shape)}, not {list(image.shape)}; check imgsz")

    def run(self, image: np.ndarray) -> Any:
        """Run the model once on ``image`` (float32, ``(1, 3, h, w)``, RGB in [0, 1]) and return its outputs."""
        raise NotImplementedError

    def time_run(self, image: np.ndarray) -> float:
        """Run once on ``image`` and return the wall time in milliseconds (the outputs are ready when it returns)."""
        start = time.perf_counter()
        self.run(image)
        return (time.perf_counter() - start) * 1e3


class Runtime:
    """An inference runtime: its name, whether it runs here, and how to open a model in it.

    Subclasses set :attr:`name`, :attr:`module` (the Python module it needs), :attr:`extra` (the plugin's pip extra
    that installs it) and :attr:`suffixes` (what it opens), and implement :meth:`_open`.
    """

    name = ""
    module = ""
    extra = ""
    suffixes: Tuple[str, ...] = ()

    @property
    def install_hint(self) -> str:
        """The one command that installs this runtime."""
        return INSTALL.format(extra=self.extra) if self.extra else f"pip install {self.module}"

    def unavailable_reason(self) -> Optional[str]:
        """None when the runtime can run here; else one line saying why not and how to fix it."""
        if find_spec(self.module) is None:
            return f"{self.name} is not installed; install it with: {self.install_hint}"
        return None

    @property
    def available(self) -> bool:
        """True when the runtime can run here."""
        return self.unavailable_reason() is None

    def can_open(self, path: PathLike) -> bool:
        """True when ``path`` is a model file or folder this runtime opens."""
        path = Path(path)
        return any(path.name.endswith(suffix) for suffix in self.suffixes)

    def open(self, path: PathLike, threads: Optional[int] = None) -> Session:
        """Open the exported model ``path`` for batch-1 inference.

        Args:
            path: The exported model (a file, or an Ultralytics export folder such as ``best_openvino_model/``).
            threads: Threads inside one operator (>= 1), or None for the runtime's default.

        Returns:
            The opened session.

        Raises:
            RuntimeError: The runtime cannot run here (the message is :meth:`unavailable_reason`).
            FileNotFoundError: ``path`` does not exist.
            ValueError: This runtime does not open such a file, or ``threads`` is not an int >= 1.
        """
        reason = self.unavailable_reason()
        if reason:
            raise RuntimeError(reason)
        threads = check_threads(threads)
        path = Path(path).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"model not found: {path}")
        if not self.can_open(path):
            raise ValueError(f"{self.name} opens {', '.join(self.suffixes)} models, not {path.name!r}")
        return self._open(path, threads)

    def _open(self, path: Path, threads: Optional[int]) -> Session:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


# ONNX Runtime ---------------------------------------------------------------------------------------------------------
def session_options(threads: Optional[int] = None):
    """Return the ``onnxruntime.SessionOptions`` every timed ONNX Runtime session uses.

    * ``intra_op_num_threads = threads``: threads used inside one operator. When None, it stays 0, ONNX Runtime's
      default, which is one thread per physical core.
    * ``inter_op_num_threads = 1`` and ``execution_mode = ORT_SEQUENTIAL``: operators run one after another, the
      usual setting for a single batch-1 stream.
    * ``graph_optimization_level = ORT_ENABLE_ALL``: all graph optimisations, as a deployment would use them.
    * ``session.intra_op.allow_spinning = "0"``: idle worker threads sleep instead of spinning, so that sessions
      timed alternately in one process do not steal each other's cores (trap 9 of :mod:`.onnx`).
    * ``log_severity_level = 3``: errors only.

    Args:
        threads: Intra-op thread count (>= 1), or None for ONNX Runtime's default.

    Returns:
        The session options.
    """
    import onnxruntime as ort

    threads = check_threads(threads)
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads or 0)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return options


class _OnnxRuntimeSession(Session):
    def __init__(self, label: str, session):
        inputs = session.get_inputs()
        if len(inputs) != 1:
            raise ValueError(f"model {label!r} has {len(inputs)} inputs; expected one image input")
        super().__init__(label, inputs[0].shape)
        self.session, self.input_name = session, inputs[0].name

    def run(self, image: np.ndarray) -> Any:
        return self.session.run(None, {self.input_name: image})


class OnnxRuntime(Runtime):
    """ONNX Runtime on the CPU execution provider."""

    name, module, extra, suffixes = "onnxruntime", "onnxruntime", "", (".onnx",)

    @property
    def install_hint(self) -> str:
        return "pip install onnxruntime"  # a dependency of the plugin itself

    def _open(self, path: Path, threads: Optional[int]) -> Session:
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), sess_options=session_options(threads), providers=[CPU_PROVIDER])
        return _OnnxRuntimeSession(path.name, session)


# OpenVINO -------------------------------------------------------------------------------------------------------------
class _OpenVinoSession(Session):
    def __init__(self, label: str, compiled):
        if len(compiled.inputs) != 1:
            raise ValueError(f"model {label!r} has {len(compiled.inputs)} inputs; expected one image input")
        shape = compiled.inputs[0].get_partial_shape()
        dims = tuple(d.get_length() if d.is_static else None for d in shape)
        super().__init__(label, dims)
        self.request = compiled.create_infer_request()

    def run(self, image: np.ndarray) -> Any:
        return self.request.infer({0: image})


class OpenVinoRuntime(Runtime):
    """OpenVINO on the CPU, with the ``LATENCY`` performance hint (one stream, as for a batch-1 camera feed)."""

    name, module, extra, suffixes = "openvino", "openvino", "openvino", (".onnx", ".xml", "_openvino_model")

    def _open(self, path: Path, threads: Optional[int]) -> Session:
        import openvino as ov

        model_file = path
        if path.is_dir():  # Ultralytics' export folder: <stem>_openvino_model/<stem>.xml
            xmls = sorted(path.glob("*.xml"))
            if len(xmls) != 1:
                raise ValueError(f"expected one .xml model in {path}, found {len(xmls)}")
            model_file = xmls[0]
        config: Dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY"}
        if threads is not None:
            config["INFERENCE_NUM_THREADS"] = threads
        compiled = ov.Core().compile_model(str(model_file), "CPU", config)
        return _OpenVinoSession(path.name, compiled)


# TensorRT -------------------------------------------------------------------------------------------------------------
class _AutoBackendSession(Session):
    def __init__(self, label: str, backend, imgsz_hint: Tuple[Any, ...]):
        super().__init__(label, imgsz_hint)
        self.backend = backend

    def run(self, image: np.ndarray) -> Any:
        import torch

        out = self.backend(torch.from_numpy(image).to(self.backend.device))
        torch.cuda.synchronize()
        return out


class TensorRtRuntime(Runtime):
    """TensorRT on a CUDA GPU: runs Ultralytics' ``.engine`` exports through its ``AutoBackend``.

    ``threads`` does not apply to a GPU and is ignored.
    """

    name, module, extra, suffixes = "tensorrt", "tensorrt", "", (".engine",)

    @property
    def install_hint(self) -> str:
        return "pip install tensorrt (on a machine with an NVIDIA GPU and CUDA)"

    def unavailable_reason(self) -> Optional[str]:
        try:
            import torch

            cuda = torch.cuda.is_available()
        except ImportError:  # pragma: no cover - torch is a dependency
            cuda = False
        if not cuda:
            return "tensorrt needs an NVIDIA GPU with CUDA, and torch sees none here (torch.cuda.is_available() is False)"
        return super().unavailable_reason()

    def _open(self, path: Path, threads: Optional[int]) -> Session:  # pragma: no cover - needs a GPU
        import torch
        from ultralytics.nn.autobackend import AutoBackend

        backend = AutoBackend(str(path), device=torch.device("cuda:0"))
        return _AutoBackendSession(path.name, backend, (1, 3, None, None))


RUNTIMES: Dict[str, Runtime] = {r.name: r for r in (OnnxRuntime(), OpenVinoRuntime(), TensorRtRuntime())}


def get_runtime(name: str) -> Runtime:
    """Return the runtime called ``name`` (``onnxruntime``, ``openvino`` or ``tensorrt``).

    Raises:
        ValueError: No runtime has that name.
    """
    try:
        return RUNTIMES[str(name).lower()]
    except KeyError:
        raise ValueError(f"unknown runtime {name!r}; known: {', '.join(RUNTIMES)}") from None
