"""The arguments of one ``yolo prune`` run, resolved once before anything is written.

:func:`resolve_run_config` merges, in this order: the input checkpoint's own arguments, a ``cfg=`` file, the keys
given now. A resumed run (``resume=...``) instead takes the arguments it was started with from its report; only
:data:`ultralytics_prune_plugin.engine.resume.MAY_CHANGE` keys may differ. It then fills in the default fine-tune
length, checks the model and the dataset, and returns a :class:`RunConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional

from torch import nn
from ultralytics.cfg import get_cfg
from ultralytics.utils import DEFAULT_CFG, LOGGER, colorstr
from ultralytics.utils.checks import check_imgsz, check_yaml

from ultralytics_prune_plugin.adapters import internals
from ultralytics_prune_plugin.config import PluginArgumentError, plugin_keys
from ultralytics_prune_plugin.report.console import warn
from ultralytics_prune_plugin.engine import resume as resuming
from ultralytics_prune_plugin.engine.inputs import check_task_data
from ultralytics_prune_plugin.tasks import TASKS

PREFIX = colorstr("prune: ")
# The input checkpoint's training arguments that the run keeps (slim's messages, the default fine-tune length).
INPUT_TRAIN_KEYS = ("sparse", "sr", "sr_final", "optimizer", "epochs")
# Keys that only DepGraph pruning reads.
DEPGRAPH_ONLY_KEYS = ("importance", "global_pruning", "allocation", "isomorphic", "layer_rates", "prune_head")
# Without 'epochs', all fine-tunes together get this fraction of the input's own training epochs (see README).
DEFAULT_FINETUNE_FRACTION = 0.3


@dataclass
class RunConfig:
    """Everything a prune run needs to know about its arguments.

    Attributes:
        args: Ultralytics' resolved arguments (``get_cfg``), plugin keys included, ``mode='prune'``.
        task: The model's Ultralytics task.
        checkpoint_overrides: The input model's own arguments (``YOLO.overrides``).
        user_overrides: The keys given now (or, when resuming, those the run was started with).
        input_train_args: The input checkpoint's training arguments named in :data:`INPUT_TRAIN_KEYS`.
        data: The checked dataset dict, or None when the run has no data (pruning only, no mAP).
        epochs_note: How the default fine-tune length was chosen, or None when ``epochs`` was given.
        resume_dir: The run folder being resumed, or None for a new run.
        resume_report: The resumed run's report as read from disk.
    """

    args: Any
    task: str
    checkpoint_overrides: Dict[str, Any]
    user_overrides: Dict[str, Any]
    input_train_args: Dict[str, Any]
    data: Optional[dict] = None
    epochs_note: Optional[str] = None
    resume_dir: Optional[Path] = None
    resume_report: Dict[str, Any] = field(default_factory=dict)
    int8: bool = False  # INT8 artefacts too: Ultralytics' int8=True (quantize=8 on 8.4)

    @property
    def steps(self) -> int:
        """The number of prune steps: ``iterative_steps`` for DepGraph, one for slim."""
        return 1 if self.args.method == "slim" else self.args.iterative_steps

    @property
    def budget_applies(self) -> bool:
        """``max_map_drop`` stops the run after fine-tuning, and with ``epochs=0`` only when it was set explicitly."""
        return self.args.epochs > 0 or "max_map_drop" in self.user_overrides

    def train_args(self, fine_tuned: bool = False) -> Dict[str, Any]:
        """The arguments stored in the checkpoints the run saves (Ultralytics keeps the keys it knows).

        With ``fine_tuned`` (a step's model after its fine-tune), the training keys are those the fine-tune ran with:
        :func:`finetune_defaults` where they were not given (``optimizer=SGD``, ``warmup_epochs=0``, ...).
        """
        args = {**vars(self.args), "mode": "train", "model": str(self.args.model)}
        if fine_tuned and self.args.epochs > 0:
            defaults = finetune_defaults(self.args.epochs, self.args.batch)
            args.update({k: v for k, v in defaults.items() if k not in self.user_overrides})
        return args

    def run_keys(self) -> Dict[str, Any]:
        """The plugin's keys with this run's values (``rate``, ``iterative_steps``, ...). Every fine-tune is given them,
        so that its ``args.yaml`` and its argument dump show the run's values, not the plugin's defaults; the keys that
        change training (``sparse``, the distillation keys) are set by the fine-tune itself after these."""
        return {key: getattr(self.args, key) for key in plugin_keys()}

    def public_args(self) -> Dict[str, Any]:
        """The arguments that define this run, for the report."""
        keys = ("task", "model", "data", "imgsz", "epochs", "batch", "device", "method", "rate", "iterative_steps")
        keys += ("max_map_drop", "round_to", "min_channels", "target_macs", "target_gmacs", "importance", "global_pruning")
        keys += ("target_speedup", "target_latency", "allocation")
        keys += ("max_layer_rate", "isomorphic", "layer_rates", "ignore_layers", "prune_head", "distill", "teacher")
        keys += ("formats", "runtime", "threads")
        return {**{k: getattr(self.args, k) for k in keys}, "int8": self.int8}


def finetune_defaults(epochs: int, batch: Any = None) -> Dict[str, Any]:
    """Training keys a fine-tune gets unless they were given: a pruned model is not trained from scratch.

    ``close_mosaic``: at most the fine-tune's length, so that the last ``close_mosaic`` epochs (all of a short
    fine-tune) train without mosaic on every series. Ultralytics 8.4 already closes mosaic when
    ``epochs <= close_mosaic``; 8.1-8.3 close it only at epoch ``epochs - close_mosaic`` and so never do in a
    fine-tune shorter than ``close_mosaic`` (10).

    ``warmup_epochs=0``: Ultralytics' warm-up (3 epochs, the bias learning rate starting at 0.1) suits a network
    trained from scratch; a pruned network keeps most of its trained weights. Measured on yolov8n (generated hard
    data, target_macs 0.43, 2 steps × 5 epochs, no distillation): mAP50-95 0.513 with the warm-up, 0.549 without
    (``benchmarks/results_equal_macs.md``).

    ``nbs`` = ``batch``: one optimizer step per batch. Ultralytics accumulates gradients up to a nominal batch of 64,
    which leaves a short fine-tune very few updates (10 per epoch on 600 images at batch 16). Measured the same way,
    with distillation: mAP50-95 0.557 with accumulation, 0.642 without (the input had 0.639). The weight decay
    Ultralytics scales by ``batch * accumulate / nbs`` is unchanged.

    ``optimizer=SGD`` (at ``lr0``, 0.01 unless given): ``optimizer=auto`` picks SGD at 0.01 only for runs of more
    than 10,000 iterations; a shorter one gets AdamW at ``0.002 * 5 / (4 + nc)``, 0.001 for 6 classes and 0.00012
    for COCO's 80, and ignores ``lr0``. Measured the same way, with distillation and one step per batch: mAP50-95
    0.642 with AdamW at 0.001, 0.491 at 0.0002, 0.690 with SGD at 0.01; at target_macs 0.3, 0.564 against 0.640.
    """
    defaults = {"close_mosaic": min(DEFAULT_CFG.close_mosaic, epochs), "warmup_epochs": 0, "optimizer": "SGD"}
    if isinstance(batch, int) and batch > 0:  # not AutoBatch (-1) nor a memory fraction
        defaults["nbs"] = batch
    return defaults


def resolve_run_config(yolo, overrides: Dict[str, Any]) -> RunConfig:
    """Resolve and check the arguments of a prune run; nothing is written.

    Args:
        yolo (ultralytics.engine.model.Model): The loaded input model.
        overrides (dict): The keyword arguments of ``YOLO.prune()`` / the ``yolo prune`` command line.

    Raises:
        PluginArgumentError: A one-line message for a model or dataset the run cannot use.
    """
    file_overrides = internals().load_yaml(check_yaml(overrides["cfg"])) if overrides.get("cfg") else {}
    overrides, file_overrides = _without_cfg_epochs(overrides, file_overrides)
    given = {**file_overrides, **overrides}
    given.pop("cfg", None)
    resume_dir, resume_report = None, {}
    if resuming.resume_requested(given.get("resume")):
        resume_dir, resume_report = resuming.find_run(given["resume"], given)
        stored = resume_report["run_overrides"]
        checkpoint_overrides = dict(stored.get("checkpoint", {}))
        changed = {k: given[k] for k in resuming.MAY_CHANGE if k in given}
        user_overrides = {**stored.get("given", {}), **changed}
        input_train_args = dict(stored.get("input_train_args", {}))
    else:
        checkpoint_overrides = dict(yolo.overrides)
        user_overrides = given
        train_args = (getattr(yolo, "ckpt", None) or {}).get("train_args", {})
        input_train_args = {k: v for k, v in train_args.items() if k in INPUT_TRAIN_KEYS}
    args = get_cfg(DEFAULT_CFG, {**checkpoint_overrides, **user_overrides, "mode": "prune"})
    if args.method == "group":
        raise PluginArgumentError(
            "'method=group' is group sparse learning, a training method: run 'yolo sparse method=group ...' first, "
            "then prune its result with method=depgraph"
        )
    if args.target_macs is not None and args.target_gmacs is not None:
        raise PluginArgumentError(
            f"'target_macs={args.target_macs}' and 'target_gmacs={args.target_gmacs}' were both given: give one MACs "
            "target, a fraction of the input's MACs (target_macs) or a number of GMACs (target_gmacs)"
        )
    _check_one_target(args)
    config = RunConfig(args, yolo.task, checkpoint_overrides, user_overrides, input_train_args,
                       resume_dir=resume_dir, resume_report=resume_report)
    config.epochs_note = _default_epochs(config)
    args.resume = False  # not passed on: each fine-tune is a new training run
    args.imgsz = check_imgsz(args.imgsz, stride=32, max_dim=1)  # as training and export will round it
    _check_teacher(args, yolo.model if resume_dir is None else None)
    if resume_dir is None:
        _check_model(yolo, args)  # a resumed run was checked when it started
    config.data = _resolve_data(config, yolo.model)
    if args.importance == "taylor" and args.method == "depgraph" and config.data is None:
        raise PluginArgumentError("'importance=taylor' needs the training loss, hence 'data': give 'data=...'")
    _check_deployment(config)
    return config


def _check_one_target(args) -> None:
    """Refuse, in one line, a MACs target and a latency target, or two latency targets, given together."""
    given = [k for k in ("target_macs", "target_gmacs", "target_speedup", "target_latency") if getattr(args, k) is not None]
    if len(given) > 1:
        named = " and ".join(f"'{k}={getattr(args, k)}'" for k in given)
        raise PluginArgumentError(
            f"{named} were {'both' if len(given) == 2 else 'all'} given: give one target, a MACs target (target_macs or target_gmacs) or a latency "
            "measured on 'runtime' (target_speedup or target_latency)"
        )


def _check_deployment(config: RunConfig) -> None:
    """Read the INT8 request and refuse, in one line, artefacts or a runtime that cannot be made or run here.

    INT8 is Ultralytics' own key: ``int8`` on 8.1-8.3; on 8.4 ``quantize`` (Ultralytics itself turns ``int8=True``
    into ``quantize=8``). A run's artefacts are FP32, plus INT8 when asked: other precisions are refused.
    """
    from ultralytics_prune_plugin.config import parse_formats
    from ultralytics_prune_plugin.deploy.artefacts import check_deployment_request

    args = config.args
    key, value = internals().precision_request(args)
    if key == "quantize":  # 8.4
        quantize = value
        if quantize not in (None, 8, 32, "int8", "fp32"):
            raise PluginArgumentError(
                f"'quantize={quantize}' is not valid in prune mode: the artefacts are FP32, and INT8 too with "
                "quantize=8 (int8=True); other precisions are not made by 'yolo prune'"
            )
        config.int8, key = quantize in (8, "int8"), f"quantize={quantize}"  # int8=True arrives as quantize=8
    else:
        config.int8, key = bool(value), "int8=True"
    check_deployment_request(parse_formats(args.formats), config.int8, args.runtime, config.data is not None, key)


# `yolo prune`: the 'epochs' of a cfg= file when the command line gives none. Ultralytics merges the file into the
# command line's keys before the run sees them; the command-line check notes it (note_cfg_epochs) and the run takes
# the note (take_cfg_epochs) to tell the two apart.
_CFG_EPOCHS: dict = {}


def note_cfg_epochs(noted: Optional[tuple]) -> None:
    """Note ``(cfg, epochs)`` of the ``yolo prune`` command being checked, or forget the note (None)."""
    _CFG_EPOCHS.clear()
    if noted is not None:
        _CFG_EPOCHS["noted"] = noted


def take_cfg_epochs() -> Optional[tuple]:
    """Return ``(cfg, epochs)`` when the checked ``yolo prune`` command's ``cfg=`` file set ``epochs`` and its command
    line did not (else None), and forget it: a ``yolo prune`` run does not take ``epochs`` from a ``cfg=`` file."""
    return _CFG_EPOCHS.pop("noted", None)


def _without_cfg_epochs(overrides: Dict[str, Any], file_overrides: Dict[str, Any]):
    """Leave out an ``epochs`` that only a ``cfg=`` file gives, and say so in one warning line.

    In ``yolo prune``, ``epochs`` is each step's fine-tune length, and only ``epochs=`` itself sets it (the seed's
    ``--epochs``; its ``--cfg`` file's ``epochs`` was never used). A file from ``yolo copy-cfg`` holds Ultralytics'
    ``epochs: 100``, meant for training from scratch, which would fine-tune every one of 16 steps for 100 epochs. On
    the command line Ultralytics has merged the file already; :func:`take_cfg_epochs` says whether its ``epochs`` came
    from the file. ``YOLO.prune(cfg=...)`` passes the file itself.

    Returns:
        ``overrides`` and ``file_overrides`` without that ``epochs``.
    """
    from ultralytics_prune_plugin.report.console import warn

    noted = take_cfg_epochs()  # the command line's cfg= file, merged by Ultralytics
    if "epochs" in file_overrides and "epochs" not in overrides:
        cfg, epochs = overrides["cfg"], file_overrides["epochs"]
        file_overrides = {k: v for k, v in file_overrides.items() if k != "epochs"}
    elif noted is not None and "epochs" in overrides and overrides["epochs"] == noted[1]:
        cfg, epochs = noted
        overrides = {k: v for k, v in overrides.items() if k != "epochs"}
    else:
        return overrides, file_overrides
    warn(  # one line, starting 'WARNING ⚠️' on every series
        f"'epochs={epochs}' in cfg={cfg} is not used: 'yolo prune' takes each step's fine-tune length only from "
        f"'epochs=' itself; without it, all fine-tunes together get {DEFAULT_FINETUNE_FRACTION:.0%} of the input's "
        "training epochs (see the plan line)"
    )
    return overrides, file_overrides


def _check_model(yolo, args) -> None:
    """Refuse models the plugin cannot prune, with a one-line message."""
    from ultralytics_prune_plugin.pruning.policy import check_supported

    if not isinstance(yolo.model, nn.Module):
        raise PluginArgumentError(f"'model={args.model}' is not a PyTorch model: only .pt and .yaml prune.")
    if yolo.task not in TASKS:
        raise PluginArgumentError(
            f"'model={args.model}' is a '{yolo.task}' model: task {yolo.task} is not supported; supported: "
            + ", ".join(TASKS)
        )
    check_supported(yolo.model, f"model={args.model}")
    layers = len(yolo.model.model)
    for key, indices in (("layer_rates", args.layer_rates or {}), ("ignore_layers", args.ignore_layers or [])):
        outside = [i for i in indices if i >= layers]
        if outside:
            raise PluginArgumentError(
                f"'{key}' names layer {outside[0]}, but 'model={args.model}' has layers 0-{layers - 1} only"
            )
    if args.method == "slim":
        given = [k for k in DEPGRAPH_ONLY_KEYS if getattr(args, k) != getattr(DEFAULT_CFG, k)]
        if given:
            warn(f"{PREFIX}{', '.join(given)} apply to method=depgraph only; method=slim ignores them")


def _default_epochs(config: RunConfig) -> Optional[str]:
    """Without ``epochs``, give each step's fine-tune a share of a modest total; return how it was chosen.

    Ultralytics' ``epochs=100`` would mean 100 fine-tune epochs per step (1,600 with 16 steps). Instead all
    fine-tunes together get ``DEFAULT_FINETUNE_FRACTION`` of the input's own training epochs (of 100 when the input
    does not record them), spread evenly over the steps, at least one each. Without any dataset (none given, none
    recorded in the checkpoint) the run prunes only (``epochs=0``).

    Returns:
        (str | None): The explanation for the plan line, or None when ``epochs`` was given.
    """
    args = config.args
    if "epochs" in config.user_overrides:
        return None
    if not config.user_overrides.get("data") and not args.data:
        args.epochs = 0
        return "epochs not given and no dataset: pruning only"
    trained = config.input_train_args.get("epochs")
    source = f"the input's {trained} training epochs" if trained else f"{DEFAULT_CFG.epochs} epochs (the input records none)"
    trained = trained or DEFAULT_CFG.epochs
    total = max(1, round(DEFAULT_FINETUNE_FRACTION * trained))
    args.epochs = max(1, round(total / config.steps))
    return f"epochs not given: {DEFAULT_FINETUNE_FRACTION:.0%} of {source}, spread over the steps"


def _resolve_data(config: RunConfig, model: nn.Module) -> Optional[dict]:
    """Return the dataset dict checked for the model's task, or None when no dataset is given and none is needed."""
    args = config.args
    data = config.user_overrides.get("data")
    inherited = False
    if not data and args.data:  # a trained checkpoint remembers its dataset
        data, inherited = args.data, True
    missing = (
        f"'data' is missing: 'epochs={args.epochs}' fine-tunes after pruning and needs a dataset "
        "(or use 'epochs=0' to prune only)"
    )
    if not data:
        if args.epochs > 0:
            raise PluginArgumentError(missing)
        return None
    try:
        checked = check_task_data(config.task, data, model=model, need_train=args.epochs > 0)
    except PluginArgumentError as e:
        if not inherited:
            raise
        if args.epochs == 0:
            warn(f"{PREFIX}the model's dataset '{data}' is not usable here; skipping mAP.")
            return None
        recorded = str(e).split(": ", 1)[-1]
        raise PluginArgumentError(f"{missing}; the checkpoint's training arguments name '{data}', but {recorded}") from None
    if inherited:
        LOGGER.info(f"{PREFIX}data: {data} (from the checkpoint's training arguments)")
    args.data = str(data)
    return checked


def _check_teacher(args, model: Optional[nn.Module]) -> None:
    """When the fine-tunes distill from a given ``teacher``: check it now, before anything is written, and make its
    path absolute. It must load and, when ``model`` is given (a new run), predict the model's task and classes with
    the same head outputs. Without ``teacher`` the fine-tunes learn from the run's own ``weights/baseline.pt``."""
    if not (args.distill and args.teacher and args.epochs > 0):
        return
    from ultralytics_prune_plugin.distill.teacher import check_teacher_matches, load_teacher

    teacher = load_teacher(args.teacher)
    if isinstance(model, nn.Module):
        check_teacher_matches(teacher, model, args.teacher)
    args.teacher = str(Path(args.teacher).expanduser().resolve())
