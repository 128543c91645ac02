"""Compatibility fixes that let older Ultralytics series run on today's torch and numpy.

Each fix is a function that checks the condition that needs it and, only then, changes attributes of Ultralytics' own
modules (never torch or numpy themselves). A series adapter calls the fixes it needs with the Ultralytics modules of
that series; series that need none call none.
"""

from __future__ import annotations

import functools
import inspect
from types import ModuleType
from typing import Iterable

from ultralytics_prune_plugin.adapters.patching import patch_attr

ONNX_DEFAULT_OPSET = 17


class ModuleProxy(ModuleType):
    """Stands in for a module inside one Ultralytics module, replacing a few attributes and forwarding the rest."""

    def __init__(self, module: ModuleType, **overrides):
        """Wrap ``module``; ``overrides`` replace attributes of the same name."""
        super().__init__(module.__name__)
        self.__dict__.update(overrides)
        self.__dict__["_wrapped_module"] = module

    def __getattr__(self, name):
        """Forward every attribute that is not overridden to the wrapped module."""
        return getattr(self.__dict__["_wrapped_module"], name)


def fix_torch_load(modules: Iterable[ModuleType]) -> None:
    """torch >= 2.6 loads with ``weights_only=True``: let these Ultralytics modules unpickle model objects again.

    Only the given modules' ``torch.load`` calls get ``weights_only=False`` (as later Ultralytics releases pass);
    only files the user names are loaded that way.
    """
    import torch

    from ultralytics.utils.checks import check_version

    if not check_version(torch.__version__, ">=2.6.0"):
        return

    @functools.wraps(torch.load)
    def load(*args, **kwargs):
        kwargs.setdefault("weights_only", False)
        return torch.load(*args, **kwargs)

    for module in modules:
        patch_attr(module, "torch", ModuleProxy(torch, load=load))


def fix_numpy_trapz(metrics: ModuleType) -> None:
    """numpy >= 2.4 removed ``np.trapz``: give Ultralytics' metrics module ``np.trapezoid`` under the old name."""
    import numpy as np

    if hasattr(np, "trapz"):
        return
    patch_attr(metrics, "np", ModuleProxy(np, trapz=np.trapezoid))


def fix_onnx_export(exporter: ModuleType) -> None:
    """torch >= 2.9 exports with the dynamo exporter by default, and newer torch breaks the old opset guess.

    Ultralytics' exporter module gets the TorchScript exporter (``dynamo=False``), which is what these series were
    written for, and its ``get_latest_opset`` answers at least opset 17 (the guess counts ``symbolic_opset*`` modules,
    which newer torch no longer has, and lands on 9).
    """
    import torch

    export = torch.onnx.export
    if inspect.signature(export).parameters.get("dynamo", None) is not None:

        @functools.wraps(export)
        def torchscript_export(*args, **kwargs):
            kwargs.setdefault("dynamo", False)
            return export(*args, **kwargs)

        patch_attr(exporter, "torch", ModuleProxy(torch, onnx=ModuleProxy(torch.onnx, export=torchscript_export)))

    try:
        too_low = exporter.get_latest_opset() < ONNX_DEFAULT_OPSET
    except ValueError:  # newer torch has no symbolic_opset* modules: the guess takes max() of nothing
        too_low = True
    if too_low:
        patch_attr(exporter, "get_latest_opset", lambda: ONNX_DEFAULT_OPSET)

