"""One ``yolo prune`` run: baseline, prune → validate → fine-tune → validate per step, the mAP budget, the record.

The run directory follows Ultralytics' conventions (``runs/detect/prune``, ``prune2``, ... or ``project``/``name``)::

    prune/
      weights/baseline.pt        the input model, copied (the input file itself is never written)
      weights/step_k.pt          the model after step k (fine-tuned when epochs > 0)
      weights/step_k_pruned.pt   step k's model before its fine-tune, the fine-tune's start (only when epochs > 0)
      weights/pruned.pt          the kept step's model: the result
      weights/pruned.onnx        the result exported with Ultralytics' exporter (also baseline.onnx, for timing)
      step_k/                    step k's fine-tune: an ordinary Ultralytics training run (results.csv, plots)
      val/                       the validation runs behind every mAP in the report
      prune_steps.csv            one row per step
      prune_report.json          everything: arguments, baseline, steps, kept step, ONNX check, summary
      prune_curve.png            mAP before/after fine-tune against the remaining size, redrawn after each step
      slim_layers.csv            method=slim: every layer's channels before → after

Every file gets the permissions of a plain ``open()`` (0666 less the umask).

Resume: ``yolo prune resume=runs/detect/prune3`` (or ``resume=True``, see :mod:`.resume`) continues an interrupted run
in its own folder after its last completed step, with the arguments it was started with (kept in the report under
``run_overrides``), and records ``resumed`` in the report. Ctrl-C prints the command that does it.
"""

from __future__ import annotations

import shlex
import shutil
import time
from copy import deepcopy
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, Optional

from torch import nn
from ultralytics.cfg import get_cfg, get_save_dir
from ultralytics.utils import DEFAULT_CFG, LOGGER, colorstr
from ultralytics.utils.checks import check_imgsz, check_yaml

from ultralytics_prune_plugin.adapters import internals
from ultralytics_prune_plugin.config import PluginArgumentError, plugin_keys
from ultralytics_prune_plugin.engine import resume as resuming
from ultralytics_prune_plugin.engine.checkpoint import load_model, save_checkpoint
from ultralytics_prune_plugin.nn.structure import mark_restructured
from ultralytics_prune_plugin.report.files import write_atomic, write_csv_atomic, write_json_atomic
from ultralytics_prune_plugin.report.plots import plot_prune_curve

PREFIX = colorstr("prune: ")
STEP_COLUMNS = [
    "step",
    "step_ratio",
    "channels_kept",
    "macs",
    "params",
    "pruned_map50",
    "pruned_map50_95",
    "recovered_map50",
    "recovered_map50_95",
    "finetune_s",
    "within_budget",
]
# The validator's metric keys behind the report's mAP50 and mAP50-95, per task.
TASK_METRICS = {"detect": ("metrics/mAP50(B)", "metrics/mAP50-95(B)")}
# The input checkpoint's training arguments that the run keeps (slim's messages, the default fine-tune length).
INPUT_TRAIN_KEYS = ("sparse", "sr", "sr_final", "optimizer", "epochs")
# Without 'epochs', all fine-tunes together get this fraction of the input's own training epochs (see README).
DEFAULT_FINETUNE_FRACTION = 0.3
# Keys that describe the prune run itself and are not passed on to the fine-tunes.
RUN_ONLY_KEYS = {"mode", "model", "resume", "project", "name", "exist_ok", "save_dir", "cfg", *plugin_keys()}


class PruneRun:
    """Prune a YOLO detector, fine-tune it step by step within an mAP budget, and write the record.

    Args:
        yolo (ultralytics.engine.model.Model): The loaded model; its file is never written. Not used when
            ``overrides`` holds ``resume``: the run continues from its own checkpoints.
        overrides (dict): The keyword arguments of ``YOLO.prune()`` / the ``yolo prune`` command line.
    """

    def __init__(self, yolo, overrides: Dict[str, Any]):
        """Check the arguments and the model; nothing is written until :meth:`run`."""
        self.yolo = yolo
        self.task = yolo.task
        self._task_classes = yolo.task_map[self.task]  # Ultralytics' model, trainer, validator of the task
        file_overrides = internals().load_yaml(check_yaml(overrides["cfg"])) if overrides.get("cfg") else {}
        given = {**file_overrides, **overrides}
        given.pop("cfg", None)
        self.resume_dir: Optional[Path] = None
        self._resume_report: Dict[str, Any] = {}
        if resuming.resume_requested(given.get("resume")):
            # The run goes on with the arguments it was started with; only resuming.MAY_CHANGE keys may differ.
            self.resume_dir, self._resume_report = resuming.find_run(given["resume"], given)
            stored = self._resume_report["run_overrides"]
            self.checkpoint_overrides = dict(stored.get("checkpoint", {}))
            changed = {k: given[k] for k in resuming.MAY_CHANGE if k in given}
            self.user_overrides = {**stored.get("given", {}), **changed}
            self._sparse_args = dict(stored.get("input_train_args", {}))
        else:
            self.checkpoint_overrides = dict(yolo.overrides)
            self.user_overrides = given
            train_args = (getattr(yolo, "ckpt", None) or {}).get("train_args", {})
            self._sparse_args = {k: v for k, v in train_args.items() if k in INPUT_TRAIN_KEYS}
        self.args = get_cfg(DEFAULT_CFG, {**self.checkpoint_overrides, **self.user_overrides, "mode": "prune"})
        self.epochs_note = self._default_epochs()
        self.args.resume = False  # not passed on: each fine-tune is a new training run
        self.args.imgsz = check_imgsz(self.args.imgsz, stride=32, max_dim=1)  # as training and export will round it
        if self.resume_dir is None:
            self._check_model()  # a resumed run was checked when it started
        self.data = self._resolve_data()
        self.save_dir: Optional[Path] = None
        self.report: Dict[str, Any] = {}

    # Checks ------------------------------------------------------------------------------------------------------------
    def _check_model(self) -> None:
        """Refuse models the plugin cannot prune, with a one-line message."""
        if not isinstance(self.yolo.model, nn.Module):
            raise PluginArgumentError(f"'model={self.args.model}' is not a PyTorch model: only .pt and .yaml prune.")
        if self.yolo.task != "detect":
            raise PluginArgumentError(
                f"'model={self.args.model}' is a '{self.yolo.task}' model: task {self.yolo.task} is not supported "
                "yet, only task=detect"
            )

    def _steps(self) -> int:
        """The number of prune steps: ``iterative_steps`` for DepGraph, one for slim."""
        return 1 if self.args.method == "slim" else self.args.iterative_steps

    def _default_epochs(self) -> Optional[str]:
        """Without ``epochs``, give each step's fine-tune a share of a modest total; return how it was chosen.

        Ultralytics' ``epochs=100`` would mean 100 fine-tune epochs per step (1,600 with 16 steps). Instead all
        fine-tunes together get ``DEFAULT_FINETUNE_FRACTION`` of the input's own training epochs (of 100 when the
        input does not record them), spread evenly over the steps, at least one each. Without any dataset (none
        given, none recorded in the checkpoint) the run prunes only (``epochs=0``).

        Returns:
            (str | None): The explanation for the plan line, or None when ``epochs`` was given.
        """
        if "epochs" in self.user_overrides:
            return None
        if not self.user_overrides.get("data") and not self.args.data:
            self.args.epochs = 0
            return "epochs not given and no dataset: pruning only"
        trained = self._sparse_args.get("epochs")
        source = f"the input's {trained} training epochs" if trained else f"{DEFAULT_CFG.epochs} epochs (the input records none)"
        trained = trained or DEFAULT_CFG.epochs
        total = max(1, round(DEFAULT_FINETUNE_FRACTION * trained))
        self.args.epochs = max(1, round(total / self._steps()))
        return f"epochs not given: {DEFAULT_FINETUNE_FRACTION:.0%} of {source}, spread over the steps"

    def _resolve_data(self) -> Optional[dict]:
        """Return the checked dataset dict, or None when no dataset is given and none is needed."""
        from ultralytics_prune_plugin.engine.inputs import check_detection_data

        data = self.user_overrides.get("data")
        inherited = False
        if not data and self.args.data:  # a trained checkpoint remembers its dataset
            data, inherited = self.args.data, True
        missing = (
            f"'data' is missing: 'epochs={self.args.epochs}' fine-tunes after pruning and needs a dataset "
            "(or use 'epochs=0' to prune only)"
        )
        if not data:
            if self.args.epochs > 0:
                raise PluginArgumentError(missing)
            return None
        try:
            checked = check_detection_data(data, need_train=self.args.epochs > 0)
        except PluginArgumentError as e:
            if not inherited:
                raise
            if self.args.epochs == 0:
                LOGGER.warning(f"{PREFIX}WARNING ⚠️ the model's dataset '{data}' is not usable here; skipping mAP.")
                return None
            recorded = str(e).split(": ", 1)[-1]
            raise PluginArgumentError(f"{missing}; the checkpoint's training arguments name '{data}', but {recorded}") from None
        if inherited:
            LOGGER.info(f"{PREFIX}data: {data} (from the checkpoint's training arguments)")
        self.args.data = str(data)
        return checked

    # The run -----------------------------------------------------------------------------------------------------------
    def run(self) -> Dict[str, Any]:
        """Run the whole flow and return the report (the same content as ``prune_report.json``).

        On KeyboardInterrupt, log where the results are and how to resume, then re-raise it.
        """
        try:
            return self._run()
        except KeyboardInterrupt:
            self._log_interrupted()
            raise

    def _run(self) -> Dict[str, Any]:
        """Start (or resume) the run, prune step by step, finish."""
        if self.resume_dir is not None:
            model, first_step = self._restore()
        else:
            self.save_dir = Path(get_save_dir(self.args))
            self.weights_dir = self.save_dir / "weights"
            self.weights_dir.mkdir(parents=True, exist_ok=True)
            LOGGER.info(
                f"{PREFIX}method={self.args.method} rate={self.args.rate} results in {colorstr('bold', self.save_dir)}"
            )
            model = self._baseline_model()
            self.report = {
                "args": self._public_args(),
                "save_dir": str(self.save_dir),
                "baseline": self._measure(model, "baseline", weights=self.weights_dir / "baseline.pt"),
                "steps": [],
                "kept_step": 0,
                "stop_reason": None,
                "run_overrides": {  # what a resume needs to go on with the same arguments
                    "checkpoint": resuming.jsonable_overrides(self.checkpoint_overrides),
                    "given": resuming.jsonable_overrides(self.user_overrides),
                    "input_train_args": resuming.jsonable_overrides(self._sparse_args),
                },
            }
            self._write_record()
            first_step = 1
        self._log_plan(first_step)

        if self.report["stop_reason"] is not None:
            pass  # a resumed run that had already stopped (mAP budget or target_macs): only the finish is left
        elif self.args.method == "slim":
            if first_step == 1:
                self._run_slim(model)
        else:
            self._run_depgraph(model, first_step)
        self._finish()
        return self.report

    def _log_plan(self, first_step: int) -> None:
        """Say in one line what the run will do: steps × epochs = total fine-tune epochs, data, imgsz."""
        steps, epochs = self._steps(), self.args.epochs
        left = steps - first_step + 1
        if left <= 0 or self.report.get("stop_reason") is not None:
            return
        data = self.args.data if self.data is not None else "no data (no mAP)"
        note = f" ({self.epochs_note})" if self.epochs_note else ""
        LOGGER.info(
            f"{PREFIX}plan: {left} step(s) × {epochs} epochs = {left * epochs} fine-tune epochs{note}, on {data}, "
            f"at imgsz={self.args.imgsz}"
        )
        if epochs == 0 and self.data is not None:
            if self._budget_applies():
                LOGGER.info(
                    f"{PREFIX}epochs=0: max_map_drop={self.args.max_map_drop} was set, so it is compared against mAP "
                    "without fine-tuning"
                )
            else:
                LOGGER.info(
                    f"{PREFIX}epochs=0: pruning to the requested "
                    + (f"target_macs={self.args.target_macs}" if self.args.target_macs is not None else f"rate={self.args.rate}")
                    + "; max_map_drop is not applied (mAP without fine-tuning always collapses; set it to apply it)"
                )

    def _budget_applies(self) -> bool:
        """``max_map_drop`` stops the run after fine-tuning, and with ``epochs=0`` only when it was set explicitly."""
        return self.args.epochs > 0 or "max_map_drop" in self.user_overrides

    def _restore(self):
        """Reopen an interrupted run: its report, its last completed step's model, a clean folder after that step."""
        from ultralytics_prune_plugin.pruning.depgraph import prepare_for_pruning
        from ultralytics_prune_plugin.pruning.policy import prunable_convs

        self.save_dir = self.resume_dir
        self.weights_dir = self.save_dir / "weights"
        self.report = self._resume_report
        self.report["save_dir"] = str(self.save_dir)  # the folder may have been moved since
        self.report["baseline"]["weights"] = str(self.weights_dir / "baseline.pt")
        for row in self.report["steps"]:
            row["weights"] = str(self.weights_dir / f"step_{row['step']}.pt")
        done = len(self.report["steps"])
        resuming.clean_unfinished(self.save_dir, done)
        baseline = prepare_for_pruning(load_model(self.weights_dir / "baseline.pt"))
        self._baseline_channels = sum(conv.out_channels for _, conv in prunable_convs(baseline))
        if done:
            model = prepare_for_pruning(load_model(self.weights_dir / f"step_{done}.pt"))
            self._macs = self.report["steps"][-1]["macs"]
        else:
            model = baseline
            self._macs = self.report["baseline"]["macs"]
        k = done + 1
        self.report.setdefault("resumed", []).append(
            {"at_step": k, "steps_done": done, "time": datetime.now().isoformat(timespec="seconds")}
        )
        self._write_record()
        total = 1 if self.args.method == "slim" else self.args.iterative_steps
        finished = done >= total or self.report["stop_reason"]
        left = "only the finish is left" if finished else f"continuing at step {k}/{total}"
        LOGGER.info(
            f"{PREFIX}resuming {colorstr('bold', self.save_dir)} from step {k}: "
            + (f"step {done} was the last completed step (weights/step_{done}.pt)" if done else "no step was completed")
            + f"; {left}"
        )
        return model, k

    def _log_interrupted(self) -> None:
        """Say where the results of an interrupted run are, which step was completed last, and how to resume."""
        report_file = self.save_dir / "prune_report.json" if self.save_dir is not None else None
        if report_file is None or not report_file.is_file():
            where = f" ({self.save_dir} can be deleted)" if self.save_dir is not None else ""
            LOGGER.warning(
                f"\n{PREFIX}interrupted before the baseline was recorded; nothing to resume, start the run again{where}"
            )
            return
        try:
            import json

            on_disk = json.loads(report_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            on_disk = self.report
        if "final" in on_disk:
            LOGGER.warning(f"\n{PREFIX}interrupted after the run finished; results in {self.save_dir}")
            return
        done = len(on_disk.get("steps", []))
        last = f"step {done} (weights/step_{done}.pt)" if done else "none (the baseline is recorded)"
        LOGGER.warning(
            f"\n{PREFIX}interrupted. Results so far are in {self.save_dir}: last completed step: {last}; "
            f"prune_steps.csv and prune_report.json hold every completed step.\n"
            f"{PREFIX}resume with: yolo prune {shlex.quote(f'resume={Path(self.save_dir).resolve()}')}"
        )

    def _baseline_model(self) -> nn.Module:
        """Copy the input model, save the copy as ``baseline.pt`` and return it ready for pruning."""
        from ultralytics_prune_plugin.pruning.depgraph import prepare_for_pruning

        original = deepcopy(self.yolo.model).float()
        save_checkpoint(original, self.weights_dir / "baseline.pt", self._train_args(), {"stage": "baseline"})
        model = prepare_for_pruning(original)
        return model

    def _run_depgraph(self, model: nn.Module, first_step: int = 1) -> None:
        """Iterative DepGraph pruning: ``iterative_steps`` rounds whose ratios compound to ``rate``.

        A resumed run starts at ``first_step`` with the same per-step ratio; the model carries its ideal widths
        (``pruning_ideal_widths``), so it ends with the same channel counts as an uninterrupted run.
        """
        from ultralytics_prune_plugin.pruning.depgraph import prune_once, step_ratio

        steps = self.args.iterative_steps
        ratio = step_ratio(self.args.rate, steps)
        for k in range(first_step, steps + 1):
            LOGGER.info(
                f"\n{PREFIX}step {k}/{steps}: pruning {ratio:.1%} of the channels of each prunable group "
                f"(MACs now {self._current_macs() / 1e9:.3f} G)"
            )
            prune_once(model, self.args.imgsz, ratio, round_to=self.args.round_to)
            extra = {"step_ratio": ratio}
            clamped = self._clamped_layers(model)
            if clamped:
                extra["clamped_layers"] = clamped
                LOGGER.warning(
                    f"{PREFIX}WARNING ⚠️ rate={self.args.rate} would leave {clamped} layers without channels; each "
                    f"keeps {self.args.round_to or 1} channel(s), or its current width where that is smaller (clamped)"
                )
            model, stop = self._after_prune(model, k, extra)
            if stop:
                break

    def _clamped_layers(self, model: nn.Module) -> int:
        """Count prunable convolutions whose ideal width rounds to nothing and that keep the minimum width instead."""
        from ultralytics_prune_plugin.pruning.depgraph import IDEAL_WIDTHS_ATTRIBUTE

        unit = self.args.round_to or 1
        ideal = getattr(model, IDEAL_WIDTHS_ATTRIBUTE, None) or {}  # keyed by the unsplit names: count them all
        return sum(1 for width in ideal.values() if width < unit / 2)

    def _run_slim(self, model: nn.Module) -> None:
        """Network Slimming: one global BatchNorm-γ threshold, then fine-tuning."""
        from ultralytics_prune_plugin.pruning.slim import gamma_sparsity_report, slim_prune

        sparse_args = self._sparse_args  # the input checkpoint's train_args (kept in the report for a resume)
        gamma = gamma_sparsity_report(model, train_args=sparse_args)
        LOGGER.info(
            f"{PREFIX}BatchNorm γ before slim pruning: {gamma['fraction_below']:.1%} of {gamma['count']} prunable |γ| "
            f"< 1e-2, median {gamma['median']:.3g}, 10th percentile {gamma['p10']:.3g} "
            + ("(sparse-trained input)" if sparse_args.get("sparse") else "(input not sparse-trained)")
        )
        if self.args.iterative_steps != DEFAULT_CFG.iterative_steps:
            LOGGER.warning(f"{PREFIX}WARNING ⚠️ 'iterative_steps' does not apply to method=slim (one threshold).")

        def slim(target: nn.Module, rate: float, verbose: bool = True):
            """Slim-prune ``target`` in place at ``rate`` with the run's settings."""
            kwargs = dict(min_channels=self.args.min_channels, imgsz=self.args.imgsz, round_to=self.args.round_to)
            return slim_prune(target, rate, verbose=verbose, train_args=sparse_args, **kwargs)

        rate, target_search = self.args.rate, None
        if self.args.target_macs is not None:
            # One threshold, so no loop to stop: take the smallest rate <= 'rate' whose MACs meet the target, found by
            # bisection on copies (MACs never grow with the rate: a higher rate removes a superset of the channels).
            target, goal = self.args.target_macs, self._macs_goal()
            trials = {rate: slim(deepcopy(model), rate, verbose=False).macs_after}
            if trials[rate] <= goal:
                low, high = 0.0, rate
                while high - low > 2e-3:
                    mid = (low + high) / 2
                    trials[mid] = slim(deepcopy(model), mid, verbose=False).macs_after
                    low, high = (low, mid) if trials[mid] <= goal else (mid, high)
                rate = high
            target_search = {"goal_macs": goal, "rate": rate, "trials": len(trials)}
            LOGGER.info(
                f"{PREFIX}target_macs={target}: slim rate {rate:.3f} of at most {self.args.rate} "
                + (f"meets {goal / 1e9:.3f} GMACs" if trials[rate] <= goal else f"cannot reach {goal / 1e9:.3f} GMACs")
                + f" ({len(trials)} trial prunes on copies)"
            )
        result = slim(model, rate)
        if result.applied_rate < rate - 1e-6:
            LOGGER.warning(
                f"{PREFIX}WARNING ⚠️ rate={rate:g} would empty layers; the rate applied is "
                f"{result.applied_rate:.3f} (min_channels={self.args.min_channels})."
            )
        table = [{"layer": r.name, "channels_before": r.before, "channels_after": r.after} for r in result.layers]
        write_csv_atomic(self.save_dir / "slim_layers.csv", table, ["layer", "channels_before", "channels_after"])
        self.report["slim"] = {
            "requested_rate": result.requested_rate,
            "applied_rate": result.applied_rate,
            "clamped": result.clamped,
            "threshold": result.threshold,
            "gamma_before": gamma,
            "sparse_trained": bool(sparse_args.get("sparse")),
            "sr": sparse_args.get("sr") if sparse_args.get("sparse") else None,
        }
        if target_search is not None:
            self.report["slim"]["target_macs_search"] = target_search
        self._after_prune(model, 1, {"step_ratio": result.applied_rate})

    def _after_prune(self, model: nn.Module, k: int, extra: Dict[str, Any]):
        """Validate the freshly pruned model, fine-tune it, validate again, record the step, apply the budget."""
        mark_restructured(model, method=self.args.method, step=k)
        row = {"step": k, **extra}
        pruned = self._measure(model, f"step_{k}_pruned")
        row.update({key: pruned[key] for key in ("channels_kept", "macs", "params")})
        row["pruned_map50"], row["pruned_map50_95"] = pruned.get("map50"), pruned.get("map50_95")
        LOGGER.info(
            f"{PREFIX}step {k}: MACs {row['macs'] / 1e9:.3f} G, params {row['params']:,}, "
            f"channels kept {row['channels_kept']:.1%}, mAP50-95 before fine-tune {_fmt(row['pruned_map50_95'])}"
        )
        if self.args.epochs > 0:
            model, row["finetune_s"] = self._fine_tune(model, k)
            recovered = self._validate(model, f"step_{k}_recovered")
            row["recovered_map50"], row["recovered_map50_95"] = recovered["map50"], recovered["map50_95"]
            LOGGER.info(f"{PREFIX}step {k}: mAP50-95 after fine-tune {_fmt(row['recovered_map50_95'])}")
        step_weights = self.weights_dir / f"step_{k}.pt"
        save_checkpoint(model, step_weights, self._train_args(), {"stage": f"step {k}", **row})
        row["weights"] = str(step_weights)
        stop = self._apply_budget(row)
        self.report["steps"].append(row)
        self._write_record()
        if not stop and self._macs_target_met(row["macs"]):
            self.report["stop_reason"] = f"target_macs reached at step {k}"
            LOGGER.info(f"{PREFIX}{self.report['stop_reason']}")
            stop = True
        return model, stop

    def _apply_budget(self, row: Dict[str, Any]) -> bool:
        """Mark the step within or beyond ``max_map_drop``; return True when the loop must stop."""
        base = self.report["baseline"].get("map50_95")
        score = row.get("recovered_map50_95", row.get("pruned_map50_95"))
        if base is None or score is None:
            row["within_budget"] = None  # no data: nothing to budget against
            self.report["kept_step"] = row["step"]
            return False
        drop = base - score
        if not self._budget_applies():
            row["within_budget"] = None  # epochs=0 without an explicit max_map_drop: no budget
            self.report["kept_step"] = row["step"]
            return False
        row["within_budget"] = drop <= self.args.max_map_drop
        if row["within_budget"]:
            self.report["kept_step"] = row["step"]
            return False
        kept = self.report["kept_step"]
        self.report["stop_reason"] = (
            f"step {row['step']} lost {drop:.4f} mAP50-95 (baseline {base:.4f} → {score:.4f}), more than "
            f"max_map_drop={self.args.max_map_drop}; keeping "
            + (f"step {kept}, the last step within the budget" if kept else "the unpruned model: no step stayed within it")
        )
        LOGGER.warning(f"{PREFIX}WARNING ⚠️ {self.report['stop_reason']}")
        return True

    def _macs_goal(self) -> Optional[float]:
        """The MACs that ``target_macs`` asks for (a fraction of the baseline's, or GMACs), or None when unset."""
        target = self.args.target_macs
        if target is None:
            return None
        return target * self.report["baseline"]["macs"] if target < 1 else target * 1e9

    def _macs_target_met(self, macs: float) -> bool:
        """Return True when ``target_macs`` is set and ``macs`` reaches it."""
        goal = self._macs_goal()
        return goal is not None and macs <= goal

    # Measuring -----------------------------------------------------------------------------------------------------------
    def _measure(self, model: nn.Module, name: str, weights: Optional[Path] = None) -> Dict[str, Any]:
        """MACs, params, channel fraction and (with data) mAP of ``model``."""
        from ultralytics_prune_plugin.pruning.counting import count_macs_params
        from ultralytics_prune_plugin.pruning.policy import prunable_convs

        macs, params = count_macs_params(model, self.args.imgsz)
        channels = sum(conv.out_channels for _, conv in prunable_convs(model))
        if not hasattr(self, "_baseline_channels"):
            self._baseline_channels = channels
        self._macs = macs
        record = {"macs": macs, "params": params, "channels_kept": channels / self._baseline_channels}
        if weights is not None:
            record["weights"] = str(weights)
        record.update(self._validate(model, name))
        return record

    def _current_macs(self) -> float:
        """MACs of the model as last measured."""
        return getattr(self, "_macs", 0.0)

    def _validate(self, model: nn.Module, name: str, batch: Optional[int] = None, rect: bool = True) -> Dict[str, Any]:
        """Validate a deep copy of ``model`` (validation fuses Conv+BN in place) on the run's data."""
        if self.data is None:
            return {}
        args = {
            "task": self.task,
            "mode": "val",
            "data": self.args.data,
            "imgsz": self.args.imgsz,
            "batch": batch or self.args.batch,
            "device": self.args.device,
            "workers": self.args.workers,
            "split": self.args.split,
            "conf": self.args.conf,
            "iou": self.args.iou,
            "rect": rect,
            "plots": False,
            "verbose": False,
        }
        if "half" in vars(DEFAULT_CFG):  # a key of 8.1-8.3 only
            args["half"] = self.args.half
        validator = self._task_classes["validator"](args=args, save_dir=self.save_dir / "val" / name)
        stats = validator(model=deepcopy(model).float().eval())
        map50_key, map50_95_key = TASK_METRICS[self.task]
        return {"map50": float(stats[map50_key]), "map50_95": float(stats[map50_95_key])}

    # Fine-tuning ---------------------------------------------------------------------------------------------------------
    def _fine_tune(self, model: nn.Module, k: int):
        """Fine-tune ``model`` as an ordinary Ultralytics training run in ``step_k/``; return the best model."""
        from ultralytics_prune_plugin.engine.trainer import prune_aware_trainers

        start_weights = self.weights_dir / f"step_{k}_pruned.pt"
        save_checkpoint(model, start_weights, self._train_args(), {"stage": f"step {k} before fine-tune"})
        overrides = {
            **{k2: v for k2, v in self.user_overrides.items() if k2 not in RUN_ONLY_KEYS},
            "task": self.task,
            "mode": "train",
            "model": str(start_weights),  # a fresh process (multi-GPU) rebuilds the pruned model from this file
            "data": self.args.data,
            "epochs": self.args.epochs,
            "imgsz": self.args.imgsz,
            "project": str(self.save_dir),
            "name": f"step_{k}",
            "exist_ok": True,  # step_k/ belongs to this run
            "sparse": False,
        }
        started = time.time()
        trainer = prune_aware_trainers()[self.task](overrides=overrides)
        trainer.train()
        seconds = time.time() - started
        best = trainer.best if trainer.best.exists() else trainer.last
        return load_model(best), seconds

    # Record --------------------------------------------------------------------------------------------------------------
    def _train_args(self) -> Dict[str, Any]:
        """The arguments stored in saved checkpoints (Ultralytics keeps the keys it knows)."""
        return {**vars(self.args), "mode": "train", "model": str(self.args.model)}

    def _public_args(self) -> Dict[str, Any]:
        """The arguments that define this run, for the report."""
        keys = ("model", "data", "imgsz", "epochs", "batch", "device", "method", "rate", "iterative_steps")
        keys += ("max_map_drop", "round_to", "min_channels", "target_macs")
        return {k: getattr(self.args, k) for k in keys}

    def _write_record(self) -> None:
        """Write the step CSV, the JSON report and the plot (each atomically)."""
        write_csv_atomic(self.save_dir / "prune_steps.csv", self.report["steps"], STEP_COLUMNS)
        write_json_atomic(self.save_dir / "prune_report.json", self.report)
        if self.report["steps"]:
            base = self.report["baseline"].get("map50_95")
            budget = base - self.args.max_map_drop if base is not None and self._budget_applies() else None
            plot_prune_curve(
                self.report["baseline"], self.report["steps"], self.save_dir / "prune_curve.png",
                kept_step=self.report["kept_step"], budget=budget,
            )

    def _finish(self) -> None:
        """Save the kept model as ``pruned.pt``, export and check it in ONNX Runtime, print the summary."""
        kept = self.report["kept_step"]
        source = self.weights_dir / ("baseline.pt" if kept == 0 else f"step_{kept}.pt")
        final = self.weights_dir / "pruned.pt"
        write_atomic(final, lambda tmp: shutil.copyfile(source, tmp))
        kept_row = self.report["steps"][kept - 1] if kept else self.report["baseline"]
        self.report["final"] = {
            "weights": str(final),
            "step": kept,
            "macs": kept_row["macs"],
            "params": kept_row["params"],
            "map50": kept_row.get("recovered_map50", kept_row.get("pruned_map50", kept_row.get("map50"))),
            "map50_95": kept_row.get("recovered_map50_95", kept_row.get("pruned_map50_95", kept_row.get("map50_95"))),
            "rate_requested": self.args.rate,
            "rate_reached": 1.0 - kept_row["channels_kept"],  # fraction of the prunable channels removed
        }
        if self.args.target_macs is not None:  # set against the kept model, which a budget stop may make earlier
            reached = self.report["final"]["macs"]
            self.report["target_macs"] = {
                "requested": self.args.target_macs, "goal_macs": self._macs_goal(), "reached_macs": reached,
                "met": self._macs_target_met(reached),
            }
        if self.report["stop_reason"] is None:  # a stop was logged when it happened
            self.report["stop_reason"] = f"all steps done; keeping step {kept}"
            LOGGER.info(f"\n{PREFIX}{self.report['stop_reason']}")
        self._deploy(final)
        self._write_record()
        LOGGER.info(self.summary_table())
        LOGGER.info(f"{PREFIX}results saved to {colorstr('bold', self.save_dir)}")

    def _deploy(self, final: Path) -> None:
        """Export baseline and result to ONNX, validate the result in ONNX Runtime, and time both."""
        from ultralytics_prune_plugin.deploy.onnx import export_onnx, measure_latency, onnx_file_mb, validate_onnx

        imgsz = self.args.imgsz
        fast_dfl = bool(self.args.fast_dfl)
        onnx = {
            name: export_onnx(self.weights_dir / f"{name}.pt", imgsz, fast_dfl=fast_dfl)
            for name in ("baseline", "pruned")
        }
        record: Dict[str, Any] = {
            "pruned_onnx": str(onnx["pruned"]),
            "fast_dfl": fast_dfl,
            "file_mb": {name: onnx_file_mb(path) for name, path in onnx.items()},
            "pt_file_mb": {name: (self.weights_dir / f"{name}.pt").stat().st_size / 1e6 for name in onnx},
        }
        if self.data is not None:
            torch_map = self._validate(load_model(final), "pruned_pytorch_b1", batch=1, rect=False)
            ort_map = validate_onnx(
                onnx["pruned"], self.args.data, imgsz, project=self.save_dir / "val", name="pruned_onnx", plots=False
            )
            record.update(
                pytorch_map50=torch_map["map50"],
                pytorch_map50_95=torch_map["map50_95"],
                onnx_map50=ort_map["map50"],
                onnx_map50_95=ort_map["map50_95"],
                onnx_provider=ort_map.get("provider"),
                onnx_agrees=abs(ort_map["map50_95"] - torch_map["map50_95"]) <= 0.01,
            )
        latency = measure_latency(onnx, imgsz, runs=30, warmup=5)
        record["latency_ms"] = latency
        record["speedup"] = latency["baseline"]["median_ms"] / latency["pruned"]["median_ms"]
        macs_cut = self.report["baseline"]["macs"] / self.report["final"]["macs"]
        record["speedup_per_macs_cut"] = record["speedup"] / macs_cut  # 1.0: latency falls exactly as the MACs do
        self.report["onnx"] = record

    def summary_table(self) -> str:
        """Return the baseline-against-final table printed at the end of the run."""
        base, final, onnx = self.report["baseline"], self.report["final"], self.report.get("onnx", {})
        lat = onnx.get("latency_ms", {})
        rows = [
            ("MACs (G)", base["macs"] / 1e9, final["macs"] / 1e9, "{:.3f}"),
            ("params", base["params"], final["params"], "{:,}"),
            ("mAP50", base.get("map50"), final.get("map50"), "{:.4f}"),
            ("mAP50-95", base.get("map50_95"), final.get("map50_95"), "{:.4f}"),
            (".pt size (MB)", onnx.get("pt_file_mb", {}).get("baseline"), onnx.get("pt_file_mb", {}).get("pruned"), "{:.2f}"),
            ("ONNX size (MB)", onnx.get("file_mb", {}).get("baseline"), onnx.get("file_mb", {}).get("pruned"), "{:.2f}"),
            (
                "ORT CPU latency b1 (ms)",
                lat.get("baseline", {}).get("median_ms"),
                lat.get("pruned", {}).get("median_ms"),
                "{:.2f}",
            ),
        ]
        lines = [
            f"\n{PREFIX}summary (imgsz={self.args.imgsz}, kept step {final['step']})",
            f"{'':<24}{'baseline':>14}{'pruned':>14}  change",
        ]
        for label, a, b, fmt in rows:
            known = isinstance(a, (int, float)) and isinstance(b, (int, float))
            if known and label.startswith("mAP"):  # a score: the change itself, never a ratio
                change = f"{_signed(b - a, '{:.3f}')} ({_signed((b - a) / a * 100, '{:.1f}')} %)" if a else ""
            else:  # a cost: how many times smaller
                change = f"{a / b:.2f}x smaller" if known and b else ""
            lines.append(f"{label:<24}{_fmt(a, fmt):>14}{_fmt(b, fmt):>14}  {change}")
        if "rate_requested" in final:
            applied = self.report.get("slim", {}).get("applied_rate")
            lines.append(
                f"{'channels removed':<24}{'rate=' + format(final['rate_requested'], 'g'):>14}"
                f"{final['rate_reached']:>14.3f}  (requested; right: reached by the kept step"
                + (f", slim applied {applied:.3f}" if applied is not None else "")
                + ")"
            )
        target = self.report.get("target_macs")
        if target is not None:
            met = "met" if target["met"] else "not met"
            lines.append(
                f"{'target MACs (G)':<24}{target['goal_macs'] / 1e9:>14.3f}{target['reached_macs'] / 1e9:>14.3f}{met:>9}"
                f"  (target_macs={target['requested']:g}; right: reached)"
            )
        if "speedup" in onnx:
            dfl = "  (fast_dfl=True: both exported alike)" if onnx.get("fast_dfl") else ""
            lines.append(f"{'speed-up (ORT)':<24}{onnx['speedup']:>37.2f}x{dfl}")
            lines.append(f"{'speed-up / MACs cut':<24}{onnx['speedup_per_macs_cut']:>37.2f}   (1.00: latency follows MACs)")
        if self.report.get("resumed"):
            at = ", ".join(f"step {r['at_step']} ({r['time']})" for r in self.report["resumed"])
            lines.append(f"{'resumed at':<24}{at}")
        if "onnx_map50_95" in onnx:
            lines.append(
                f"{'ONNX vs PyTorch mAP50-95':<24}{onnx['pytorch_map50_95']:>14.4f}{onnx['onnx_map50_95']:>14.4f}"
                f"{'  (batch 1, same data)'}"
            )
        return "\n".join(lines)


def _signed(value: float, fmt: str) -> str:
    """Format ``value`` with an explicit sign, a true minus sign for negatives."""
    text = fmt.format(abs(value))
    return ("−" if value < 0 else "+") + text


def _fmt(value: Any, fmt: str = "{:.4f}") -> str:
    """Format a number, or '-' when it is unknown."""
    return "-" if value is None else fmt.format(value)
