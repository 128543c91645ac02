"""Export an in-memory YOLO model to ONNX for timing only, without a checkpoint or Ultralytics' exporter.

A latency-targeted search (:mod:`ultralytics_prune_plugin.engine.latency_target`) times several pruned copies of a
model; saving each as a checkpoint and running Ultralytics' exporter on it would cost seconds of checks per copy.
:func:`export_module_onnx` prepares an evaluation copy the way Ultralytics' exporter does for ``format="onnx"``
(parameters frozen, ``eval()``, float, Conv+BatchNorm fused, every head in export mode with a static shape, C2f
blocks on ``forward_split``) and calls ``torch.onnx.export`` with the TorchScript exporter (``dynamo=False``), as
Ultralytics does. The graph is the one the run's final ``pruned.onnx`` gets, so the timings compare like with like;
the file is not meant for deployment (no metadata, not simplified).
"""

from __future__ import annotations

import inspect
import warnings
from copy import deepcopy
from pathlib import Path
from typing import Union

import torch
from torch import nn

from ultralytics_prune_plugin.deploy.fast_dfl import last_axis_dfl

OPSET = 17  # supported by every torch, ONNX Runtime and OpenVINO this plugin runs with


def export_module_onnx(model: nn.Module, imgsz: int, path: Union[str, Path], fast_dfl: bool = False) -> Path:
    """Write an ONNX file of an evaluation copy of ``model`` at batch 1 and ``imgsz`` × ``imgsz``; ``model`` is unchanged.

    Args:
        model: An Ultralytics model (``DetectionModel`` and its task subclasses), pruned or not.
        imgsz: Square input size.
        path: The ``.onnx`` file to write.
        fast_dfl: Export the DFL with its softmax over the last axis (as ``fast_dfl=True`` does for the run's files).

    Returns:
        ``path``.
    """
    from ultralytics.nn.modules import C2f, Detect

    path = Path(path)
    copy = deepcopy(model).float().eval()
    for p in copy.parameters():
        p.requires_grad = False
    fuse = getattr(copy, "fuse", None)
    if callable(fuse):
        kwargs = {"verbose": False}
        if "imgsz" in inspect.signature(fuse).parameters:  # Ultralytics 8.4
            kwargs["imgsz"] = imgsz
        copy = fuse(**kwargs) or copy
    for m in copy.modules():
        if isinstance(m, Detect):  # Segment, Pose, OBB too
            m.dynamic, m.export, m.format = False, True, "onnx"
            if hasattr(m, "shape"):
                m.shape = None
        elif isinstance(m, C2f):
            m.forward = m.forward_split
    image = torch.zeros(1, 3, imgsz, imgsz)
    kwargs = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
    with torch.no_grad(), last_axis_dfl(fast_dfl), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's and the legacy exporter's warnings, as Ultralytics' exporter
        copy(image)  # once in export mode, as Ultralytics' exporter does before exporting (anchors, shapes)
        torch.onnx.export(copy, image, str(path), opset_version=OPSET, input_names=["images"], output_names=["output0"],
                          do_constant_folding=True, **kwargs)
    return path
