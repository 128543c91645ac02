"""Counting MACs and parameters of a detector, the way the pruning reports state them.

``torch_pruning.utils.count_ops_and_params`` reports multiply-accumulates (MACs). Ultralytics prints GFLOPs, which
are about ``2 * MACs``: yolov8n at 640 px is about 4.4 G MACs here and "8.7 GFLOPs" in Ultralytics' summary.
"""

from __future__ import annotations

from typing import Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch_pruning as tp

ImageSize = Union[int, Sequence[int]]


def count_macs_params(model: nn.Module, imgsz: ImageSize = 640) -> Tuple[int, int]:
    """Count the MACs of one forward pass at ``imgsz`` and the number of parameters of ``model``.

    The model is left as it was: Torch-Pruning runs the count on a deep copy in eval mode, the dummy input is created
    on the model's device with its floating-point dtype, and no autograd graph is recorded.

    Args:
        model: The network to measure, e.g. a ``DetectionModel``.
        imgsz: Square side, or ``(height, width)``, of the dummy batch-1 input.

    Returns:
        ``(macs, params)``; multiply by 2 to compare MACs with Ultralytics' GFLOPs.
    """
    example = dummy_input(model, imgsz)
    with torch.no_grad():
        macs, params = tp.utils.count_ops_and_params(model, example)
    return int(macs), int(params)


def dummy_input(model: nn.Module, imgsz: ImageSize, batch: int = 1) -> torch.Tensor:
    """Return a random image batch that ``model`` accepts, on the model's device and in its dtype.

    Args:
        model: The network; its input channel count is read from ``model.yaml["ch"]`` when present (else 3).
        imgsz: Square side, or ``(height, width)``.
        batch: Batch size.

    Returns:
        A tensor of shape ``(batch, ch, height, width)``.
    """
    height, width = (imgsz, imgsz) if isinstance(imgsz, int) else tuple(imgsz)
    cfg = getattr(model, "yaml", None)
    channels = cfg.get("ch", 3) if isinstance(cfg, dict) else 3
    reference = next((p for p in model.parameters() if p.is_floating_point()), None)
    device = reference.device if reference is not None else torch.device("cpu")
    dtype = reference.dtype if reference is not None else torch.float32
    return torch.randn(batch, channels, height, width, device=device, dtype=dtype)


def gflops_from_macs(macs: float) -> float:
    """Convert MACs to Ultralytics-style GFLOPs (``2 * MACs / 1e9``)."""
    return 2.0 * macs / 1e9
