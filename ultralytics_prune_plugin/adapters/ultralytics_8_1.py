"""Adapter for Ultralytics 8.1.x: every change the plugin makes to Ultralytics 8.1 is made here, and only here.

Two kinds of change are applied by :func:`apply`:

* **Compatibility fixes** that let stock 8.1 run on today's torch and numpy. Each one is tied to the version
  condition that needs it and touches only Ultralytics' own modules, never torch or numpy themselves:

  - torch >= 2.6 loads with ``weights_only=True``, so every checkpoint load of 8.1 fails. Ultralytics' own load call
    sites (model loading, ``strip_optimizer``, the tuner) get ``weights_only=False``, as later Ultralytics releases
    do. Only files the user names are loaded this way; nothing loads more broadly than Ultralytics itself does.
  - numpy >= 2.4 has no ``np.trapz`` (used for mAP); Ultralytics' metrics get ``np.trapezoid`` under that name.
  - torch >= 2.9 exports ONNX with the dynamo exporter by default, which needs ``onnxscript`` and is not what 8.1
    was written for; Ultralytics' exporter gets the TorchScript exporter (``dynamo=False``).
  - 8.1 derives the ONNX opset from the number of ``torch.onnx.symbolic_opset*`` modules, which newer torch no
    longer has, and so picks opset 9; the exporter's default becomes opset 17.

* **Plugin registration**: the ``prune`` and ``sparse`` modes, the plugin keys with their defaults and checks,
  ``Model.prune()`` / ``Model.sparse()``, the detection trainer that keeps pruned models intact and knows sparse
  training, and the ``fast_dfl`` option of the ONNX export.
"""

from __future__ import annotations

import functools
import inspect
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

SUPPORTED_SERIES = "8.1"
ONNX_DEFAULT_OPSET = 17
PLUGIN_MODES = ("prune", "sparse")


def supports(version: str) -> bool:
    """Return True for Ultralytics versions of the 8.1 series."""
    return version.split(".")[:2] == SUPPORTED_SERIES.split(".")


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


def _version_tuple(version: str) -> tuple:
    """Return the leading numeric parts of a version string, e.g. '2.14.1+cpu' -> (2, 14, 1)."""
    parts = []
    for part in version.split("+")[0].split("."):
        digits = "".join(c for c in part if c.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


# Compatibility fixes ---------------------------------------------------------------------------------------------------
def _fix_torch_load() -> None:
    """torch >= 2.6: let Ultralytics' own checkpoint loads unpickle model objects again (``weights_only=False``)."""
    import torch

    if _version_tuple(torch.__version__) < (2, 6):
        return

    @functools.wraps(torch.load)
    def load(*args, **kwargs):
        kwargs.setdefault("weights_only", False)
        return torch.load(*args, **kwargs)

    import ultralytics.engine.tuner
    import ultralytics.nn.tasks
    import ultralytics.utils.torch_utils

    for module in (ultralytics.nn.tasks, ultralytics.utils.torch_utils, ultralytics.engine.tuner):
        module.torch = ModuleProxy(torch, load=load)


def _fix_numpy_trapz() -> None:
    """numpy >= 2.4 removed ``np.trapz``: give Ultralytics' metrics ``np.trapezoid`` under the old name."""
    import numpy as np

    if hasattr(np, "trapz"):
        return
    import ultralytics.utils.metrics

    ultralytics.utils.metrics.np = ModuleProxy(np, trapz=np.trapezoid)


def _fix_onnx_export() -> None:
    """torch >= 2.9 defaults to the dynamo ONNX exporter, and newer torch breaks 8.1's opset guess: fix both."""
    import torch
    import ultralytics.engine.exporter as exporter

    export = torch.onnx.export
    if inspect.signature(export).parameters.get("dynamo", None) is not None:

        @functools.wraps(export)
        def torchscript_export(*args, **kwargs):
            kwargs.setdefault("dynamo", False)
            return export(*args, **kwargs)

        exporter.torch = ModuleProxy(torch, onnx=ModuleProxy(torch.onnx, export=torchscript_export))

    if exporter.get_latest_opset() < ONNX_DEFAULT_OPSET:
        exporter.get_latest_opset = lambda: ONNX_DEFAULT_OPSET


def _register_fast_dfl_export() -> None:
    """``fast_dfl=True``: the ONNX export traces the DFL with its softmax over the last axis (``deploy.fast_dfl``)."""
    from ultralytics.engine.exporter import Exporter
    from ultralytics.utils import LOGGER

    from ultralytics_prune_plugin.deploy.fast_dfl import last_axis_dfl

    export_onnx = Exporter.export_onnx

    @functools.wraps(export_onnx)
    def export_onnx_with_fast_dfl(self, *args, **kwargs):
        enabled = bool(getattr(self.args, "fast_dfl", False))
        if enabled:
            LOGGER.info("fast_dfl=True: the DFL is exported with its softmax over the last axis (Softmax + MatMul)")
        with last_axis_dfl(enabled):
            return export_onnx(self, *args, **kwargs)

    Exporter.export_onnx = export_onnx_with_fast_dfl


# Plugin registration ---------------------------------------------------------------------------------------------------
def _register_keys() -> None:
    """Add the plugin keys to Ultralytics' defaults, so the CLI, ``cfg=`` files and every ``get_cfg`` accept them."""
    from ultralytics.utils import DEFAULT_CFG, DEFAULT_CFG_DICT

    from ultralytics_prune_plugin.config import plugin_defaults

    for key, value in plugin_defaults().items():
        DEFAULT_CFG_DICT.setdefault(key, value)  # DEFAULT_CFG_KEYS is a live view of this dict
        if not hasattr(DEFAULT_CFG, key):
            setattr(DEFAULT_CFG, key, value)


def _register_checks() -> None:
    """Check plugin keys wherever Ultralytics checks its own (``get_cfg`` calls ``check_cfg``)."""
    import ultralytics.cfg as cfg

    from ultralytics_prune_plugin.config import check_plugin_args

    original = cfg.check_cfg

    @functools.wraps(original)
    def check_cfg(config, hard=True):
        check_plugin_args(config)
        return original(config, hard)

    cfg.check_cfg = check_cfg


def _register_cli() -> None:
    """Add the modes, the help text, ``yolo cfg`` output and one-line CLI errors for bad plugin arguments."""
    import ultralytics.cfg as cfg
    from ultralytics.utils import DEFAULT_CFG_PATH, LOGGER

    from ultralytics_prune_plugin.config import PluginArgumentError, default_cfg_path, plugin_help
    from ultralytics_prune_plugin.engine.cli_checks import help_with_modes, print_error

    old_modes, modes = str(cfg.MODES), set(cfg.MODES) | set(PLUGIN_MODES)
    if isinstance(cfg.MODES, set):
        cfg.MODES.update(PLUGIN_MODES)  # the entrypoint reads this very set
    else:
        cfg.MODES = type(cfg.MODES)(modes)
    cfg.CLI_HELP_MSG = help_with_modes(cfg.CLI_HELP_MSG, old_modes, modes).rstrip() + (
        "\n\n    ultralytics-prune-plugin adds the modes 'prune' and 'sparse':\n"
        "        yolo prune model=best.pt data=data.yaml rate=0.5 iterative_steps=16 max_map_drop=0.2 epochs=30\n"
        "        yolo prune model=sparse.pt data=data.yaml method=slim rate=0.5 epochs=30\n"
        "        yolo prune resume=runs/detect/prune3   (continue an interrupted run after its last completed step)\n"
        "        yolo sparse model=best.pt data=data.yaml sr=0.01 epochs=50   (= yolo train sparse=True ...)\n"
        "    and these keys:\n" + plugin_help() + "\n"
    )

    original_yaml_print = cfg.yaml_print

    @functools.wraps(original_yaml_print)
    def yaml_print(yaml_file):
        original_yaml_print(yaml_file)
        if Path(yaml_file) == Path(DEFAULT_CFG_PATH):  # `yolo cfg`: show the plugin keys with their documentation
            path = default_cfg_path()
            LOGGER.info(f"\nPrinting '{path}' (ultralytics-prune-plugin)\n\n{path.read_text(encoding='utf-8')}")

    cfg.yaml_print = yaml_print

    original_entrypoint = cfg.entrypoint

    @functools.wraps(original_entrypoint)
    def entrypoint(debug=""):
        argv = debug.split(" ")[1:] if debug else cfg.ARGV[1:]
        mode = None
        try:
            mode, resumed_argv = _check_plugin_mode_inputs(argv)
            with _plugin_learn_more(LOGGER, mode):
                if resumed_argv is None:
                    return original_entrypoint(debug)
                saved = cfg.ARGV  # run Ultralytics' own parsing on the completed or reordered arguments
                cfg.ARGV = [saved[0] if saved else "yolo", *resumed_argv]
                try:
                    return original_entrypoint("")
                finally:
                    cfg.ARGV = saved
        except PluginArgumentError as e:
            print_error(e)  # one line per bad argument
            raise SystemExit(2) from None
        except KeyboardInterrupt:
            if mode not in PLUGIN_MODES:
                raise
            if mode == "sparse":  # `yolo prune` has logged where its results are and how to resume
                LOGGER.warning("\nInterrupted; resume with 'yolo sparse resume model=path/to/run/weights/last.pt'")
            raise SystemExit(130) from None  # Ctrl-C: no traceback

    cfg.entrypoint = entrypoint


class _LearnMoreFilter:
    """Logging filter: Ultralytics ends every command with a link to ``docs.ultralytics.com/modes/<mode>``, a page
    that does not exist for the plugin's modes; point to where they are documented instead."""

    def __init__(self, mode: str):
        self.link = f"https://docs.ultralytics.com/modes/{mode}"
        self.text = (
            f"💡 Learn more: 'yolo help' lists the '{mode}' mode and its keys; the ultralytics-prune-plugin README "
            "explains every output"
        )

    def filter(self, record) -> bool:
        if isinstance(record.msg, str) and self.link in record.msg:
            record.msg, record.args = self.text, ()
        return True


@contextmanager
def _plugin_learn_more(logger, mode):
    """While a plugin mode runs, replace Ultralytics' dead documentation link (see :class:`_LearnMoreFilter`)."""
    if mode not in PLUGIN_MODES:
        yield
        return
    learn_more = _LearnMoreFilter(mode)
    logger.addFilter(learn_more)
    try:
        yield
    finally:
        logger.removeFilter(learn_more)


def _check_plugin_mode_inputs(argv):
    """For ``yolo prune``/``yolo sparse``, check the model file before Ultralytics tries to load or download it.

    Returns:
        (tuple): The mode, and for ``yolo prune resume=...`` the arguments to run instead (else None): the resumed
            run's folder as ``resume`` and its own ``weights/baseline.pt`` as ``model``, so that Ultralytics never
            falls back to (and downloads) its default model. The resumed run continues from its own checkpoints.
    """
    import ultralytics.cfg as cfg
    from ultralytics.utils import DEFAULT_CFG_DICT, yaml_load

    from ultralytics_prune_plugin.engine.cli_checks import check_command
    from ultralytics_prune_plugin.engine.inputs import check_model_file
    from ultralytics_prune_plugin.engine.resume import find_run, resume_requested

    tokens = cfg.merge_equals_args(list(argv))
    pairs = dict(t.split("=", 1) for t in tokens if "=" in t)
    mode = next((t for t in tokens if t in PLUGIN_MODES), pairs.get("mode"))
    resumed = mode == "prune" and ("resume" in tokens or resume_requested(cfg.smart_value(pairs.get("resume", ""))))
    check_command(mode, tokens, DEFAULT_CFG_DICT, {*cfg.TASKS, *cfg.MODES, "resume"}, yaml_load, resumed)
    if resumed:
        given = {"resume": True} if "resume" in tokens else {}
        for token in tokens:
            if "=" in token:
                try:
                    key, value = cfg.parse_key_value_pair(token)
                except Exception:
                    continue  # Ultralytics' own parsing reports it
                given[key] = value
        run_dir, _ = find_run(given["resume"], given)
        kept = [t for t in tokens if t != "resume" and not t.startswith(("resume=", "model="))]
        return mode, [*kept, f"resume={run_dir}", f"model={run_dir / 'weights' / 'baseline.pt'}"]
    if mode in PLUGIN_MODES and pairs.get("model"):
        check_model_file(pairs["model"])
    cfg_tokens = [t for t in tokens if t.startswith("cfg=")]
    if mode in PLUGIN_MODES and cfg_tokens and tokens[: len(cfg_tokens)] != cfg_tokens:
        # Ultralytics 8.1 replaces every key given before `cfg=` with the file's content, so the seed's
        # `yolo prune model=last.pt cfg=default.yaml ...` would lose its model: read the file first instead, so its
        # keys apply and the command line's keys win.
        return mode, cfg_tokens + [t for t in tokens if not t.startswith("cfg=")]
    return mode, None


def _register_model_methods() -> None:
    """Give ``ultralytics.engine.model.Model`` the methods ``prune()`` and ``sparse()``."""
    from ultralytics.engine.model import Model

    from ultralytics_prune_plugin.engine.api import prune, sparse

    Model.prune = prune
    Model.sparse = sparse


def _register_trainer() -> None:
    """Train detectors with the plugin's trainer, which keeps pruned models intact and knows sparse training."""
    from ultralytics.models.yolo.model import YOLO

    original = YOLO.task_map

    @functools.wraps(original.fget)
    def task_map(self):
        from ultralytics_prune_plugin.engine.trainer import PruneAwareDetectionTrainer

        tasks = original.fget(self)
        tasks["detect"]["trainer"] = PruneAwareDetectionTrainer
        return tasks

    YOLO.task_map = property(task_map)


def apply() -> None:
    """Apply the compatibility fixes, then register the plugin. Called once per process by ``activate()``."""
    _fix_torch_load()
    _fix_numpy_trapz()
    _fix_onnx_export()
    _register_keys()
    _register_checks()
    _register_cli()
    _register_model_methods()
    _register_trainer()
    _register_fast_dfl_export()
