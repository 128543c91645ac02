"""The Ultralytics series adapters: the bottom layer of the plugin, which imports nothing else of it.

Every difference between the supported Ultralytics series lives here. Series that name Ultralytics' internals alike
and need the same fixes share one adapter (``ultralytics_8_1_8_2``, ``ultralytics_8_3_8_4``; where the two series of
one adapter still differ, its function tells them apart). Each has ``supports(version)``, ``apply()`` (its
compatibility fixes, :mod:`.compat`) and, under one name for every series, what the rest of the plugin needs of
Ultralytics' internals:

* loading and the CLI: ``load_yaml``, ``load_weights``, ``unwrap_model``, ``after_cfg_print`` (``yolo cfg``);
* training batches, validation and ONNX checks: ``train_images`` (the training split a trainer's data loader takes),
  ``val_precision`` (a validation's precision argument), ``onnxruntime_session`` (the ONNX Runtime session an
  ``AutoBackend`` runs);
* deployment artefacts: ``runs_openvino`` (whether an ``AutoBackend`` runs an OpenVINO model), ``exports_onnx_int8``
  (whether the exporter quantizes ONNX), ``int8_export_args`` (its INT8 keyword), ``precision_request`` (the key by
  which a run's arguments ask for INT8: ``int8``, or 8.4's ``quantize``);
* distillation: ``head_branches`` (a head's raw training-mode output as ``(boxes, scores)`` per branch),
  ``add_loss_term`` (one more term in a criterion's loss and loss items), ``add_loss_name`` and ``named_loss_items``
  (the trainer's names for the loss items), ``distill_model`` (the teacher of Ultralytics' own distillation).

The rest of the plugin reaches them through :func:`internals`; :mod:`.heads` holds what both adapters share to read
head outputs. The registration every series shares is :mod:`ultralytics_prune_plugin.integration.registration`,
which ``activate()`` runs after ``apply()``. Every change to Ultralytics goes through :mod:`.patching`. Supporting a
new series means adding a module here, with the same functions, and naming it in :data:`SERIES_MODULES`.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Optional

SERIES_MODULES = ("ultralytics_8_1_8_2", "ultralytics_8_3_8_4")
SUPPORTED_RANGE = ">=8.1.0,<8.5"  # keep in step with setup.py's install_requires


def adapter_for(version: str) -> Optional[ModuleType]:
    """Return the adapter module for an Ultralytics ``version``, or None if that series is not supported."""
    for name in SERIES_MODULES:
        adapter = importlib.import_module(f"{__name__}.{name}")
        if adapter.supports(version):
            return adapter
    return None


def internals() -> ModuleType:
    """Return the adapter of the installed Ultralytics, whose functions name its internals for the plugin.

    Raises:
        RuntimeError: If the installed Ultralytics is not a supported series.
    """
    import ultralytics

    adapter = adapter_for(ultralytics.__version__)
    if adapter is None:
        raise RuntimeError(f"ultralytics {ultralytics.__version__} is not supported ({SUPPORTED_RANGE})")
    return adapter
