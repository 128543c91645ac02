"""One ``yolo prune`` run: the loop. Baseline, then prune → validate → fine-tune → validate per step, the mAP budget
and ``target_macs`` stops, the record, and the finish.

The parts live in modules of their own: the arguments in :mod:`.run_config`, the methods (DepGraph, slim) in
:mod:`.methods`, measuring and fine-tuning in :mod:`.evaluation`, the report's shape and files in
:mod:`ultralytics_prune_plugin.report.record`, the summary table in :mod:`ultralytics_prune_plugin.report.summary`,
the ONNX check in :mod:`ultralytics_prune_plugin.deploy.deployment`.

The run directory follows Ultralytics' conventions (``runs/detect/prune``, ``prune2``, ... or ``project``/``name``)::

    prune/
      weights/baseline.pt        the input model, copied (the input file itself is never written)
      weights/step_k.pt          the model after step k (fine-tuned when epochs > 0)
      weights/step_k_pruned.pt   step k's model before its fine-tune, the fine-tune's start (only when epochs > 0)
      weights/pruned.pt          the kept step's model: the result
      weights/pruned.onnx        the result exported with Ultralytics' exporter (also baseline.onnx, for timing)
      weights/pruned_*           the other artefacts of formats= and int8= (pruned_openvino_model/, pruned_int8.onnx,
                                 ...) and the stock references they are timed against (baseline_openvino_model/)
      step_k/                    step k's fine-tune: an ordinary Ultralytics training run (results.csv, plots)
      val/                       the validation runs behind every mAP in the report
      prune_steps.csv            one row per step (MACs and the measured latency_ms / speedup beside them: .step_latency)
      prune_report.json          everything: arguments, baseline, steps, kept step, ONNX check, summary
      prune_curve.png            mAP before/after fine-tune against the remaining size, redrawn after each step, with
                                 each step's MACs cut and measured speed-up above it
      slim_layers.csv            method=slim: every layer's channels before → after

Every file gets the permissions of a plain ``open()`` (0666 less the umask).

Resume: ``yolo prune resume=runs/detect/prune3`` (or ``resume=True``, see :mod:`.resume`) continues an interrupted run
in its own folder after its last completed step, with the arguments it was started with (kept in the report under
``run_overrides``), and records ``resumed`` in the report. Ctrl-C prints the command that does it.
"""

from __future__ import annotations

import json
import shlex
import shutil
from copy import deepcopy
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, Optional

from torch import nn
from ultralytics.cfg import get_save_dir
from ultralytics.utils import LOGGER, colorstr

from ultralytics_prune_plugin.config import parse_formats
from ultralytics_prune_plugin.deploy.deployment import artefact_records, deployment_record
from ultralytics_prune_plugin.engine import resume as resuming
from ultralytics_prune_plugin.engine.alignment import AUTO, DEFAULT, finer_alignment, resolve_round_to
from ultralytics_prune_plugin.engine.checkpoint import load_model, save_checkpoint
from ultralytics_prune_plugin.engine.evaluation import Evaluator
from ultralytics_prune_plugin.engine.latency_target import latency_request, request_text, search_macs_fraction
from ultralytics_prune_plugin.engine.methods import METHODS, MethodInputs, PrunedStep
from ultralytics_prune_plugin.engine.run_config import PREFIX, finetune_defaults, resolve_run_config
from ultralytics_prune_plugin.engine.step_latency import StepTimer
from ultralytics_prune_plugin.nn.structure import mark_restructured
from ultralytics_prune_plugin.report.console import run_log, warn
from ultralytics_prune_plugin.report.files import write_atomic, write_csv_atomic
from ultralytics_prune_plugin.report.record import PruneReport, final_record, write_record
from ultralytics_prune_plugin.report.summary import fmt_value, summary_table
from ultralytics_prune_plugin.tasks import metric_names


# A fine-tune "fell" when its best epoch ends this far below the pruned model it started from: both a fraction of that
# model's main metric and an absolute amount, so that validation noise on a small val split (or a model still near
# zero) does not count. See PruneRun._fine_tune.
FALL_FRACTION = 0.05
FALL_ABSOLUTE = 0.005


class PruneRun:
    """Prune a YOLO model, fine-tune it step by step within an mAP budget, and write the record.

    Args:
        yolo (ultralytics.engine.model.Model): The loaded model; its file is never written. Not used when
            ``overrides`` holds ``resume``: the run continues from its own checkpoints.
        overrides (dict): The keyword arguments of ``YOLO.prune()`` / the ``yolo prune`` command line.
    """

    def __init__(self, yolo, overrides: Dict[str, Any]):
        """Resolve and check the arguments and the model; nothing is written until :meth:`run`."""
        self.yolo = yolo
        self.config = resolve_run_config(yolo, overrides)
        self.args = self.config.args
        self.method = METHODS[self.args.method]()
        self.metric = metric_names(self.config.task)[1]  # the main metric: max_map_drop applies to it
        self.save_dir: Optional[Path] = None
        self.weights_dir: Optional[Path] = None
        self.evaluator: Optional[Evaluator] = None
        self.step_timer: Optional[StepTimer] = None
        self.report: PruneReport = {}
        self.finetune_lr0: Optional[float] = None  # lowered when a step's fine-tune fell (see _fine_tune)

    # The run -----------------------------------------------------------------------------------------------------------
    def run(self) -> Dict[str, Any]:
        """Run the whole flow and return the report (the same content as ``prune_report.json``).

        On KeyboardInterrupt, log where the results are and how to resume, then re-raise it.
        """
        with run_log(verbose=bool(self.args.verbose)):  # Ultralytics' repeated lines once; verbose=False: short
            try:
                return self._run()
            except KeyboardInterrupt:
                self._log_interrupted()
                raise
            finally:
                if self.evaluator is not None:  # None until the run has its folder (a run can fail before)
                    self.evaluator.close()  # the training batches' temporary folder, whatever ended the run
                if self.step_timer is not None:
                    self.step_timer.close()  # the steps' temporary ONNX files

    def _run(self) -> Dict[str, Any]:
        """Start (or resume) the run, prune step by step, finish."""
        if self.config.resume_dir is not None:
            model, first_step = self._restore()
        else:
            model, first_step = self._start(), 1
        self._log_plan(first_step)
        if self.report["stop_reason"] is None:  # else a resumed run that had already stopped: only the finish is left
            self._prune(model, first_step)
        self._finish()
        return self.report

    def _prune(self, model: nn.Module, first_step: int) -> None:
        """Run the method's steps from ``first_step``: each model it prunes goes through :meth:`after_prune`, which
        returns the model the method goes on with; a stop closes the method."""
        steps = self.method.steps(self._method_inputs(), model, first_step)
        try:
            pruned = next(steps, None)
            while pruned is not None:
                model, stop = self.after_prune(pruned)
                if stop:
                    break
                try:
                    pruned = steps.send(model)
                except StopIteration:
                    pruned = None
        finally:
            steps.close()

    def _method_inputs(self) -> MethodInputs:
        """What the method reads of this run."""
        return MethodInputs(
            args=self.args,
            input_train_args=self.config.input_train_args,
            baseline_weights=self.weights_dir / "baseline.pt",
            baseline_macs=self.report["baseline"]["macs"],
            macs_goal=self.macs_goal(),
            target_text=self.target_text() if self.has_target() else None,
            evaluator=self.evaluator,
        )

    def _search_latency_target(self, model: nn.Module) -> None:
        """``target_speedup``/``target_latency``: find the MACs fraction that meets it by timing pruned candidates
        (:mod:`.latency_target`), record the search, and prune to that fraction as ``target_macs`` would."""
        key, value = latency_request(self.args)
        LOGGER.info(
            f"{PREFIX}{request_text(key, value)}: timing pruned candidates in {self.args.runtime} at "
            f"imgsz={self.args.imgsz}, batch 1, threads={self.args.threads} to find the MACs fraction that meets it"
        )
        while True:
            try:
                record = search_macs_fraction(model, self.method, self._method_inputs(), self.save_dir,
                                              fast_dfl=bool(self.args.fast_dfl))
            except Exception as error:
                record = getattr(error, "record", None)
                if record is not None and self._finer_alignment(record):
                    continue
                if record is not None:
                    self.report["latency_target"] = record
                    self.report["stop_reason"] = str(error)
                    self._write_record()
                raise
            if record["met"] or not self._finer_alignment(record):
                break
        self.report["latency_target"] = record
        self.args.target_macs = record["chosen_macs_fraction"]
        if not record["met"]:
            warn(
                f"{PREFIX}{request_text(key, value)}: no candidate within {record['tolerance']:.0%} of the goal after "
                f"{len(record['candidates'])} candidates; pruning to the closest, target_macs="
                f"{record['chosen_macs_fraction']:.3f} ({record['chosen_speedup']:.2f}× measured)"
            )
        self._write_record()

    def _finer_alignment(self, search: Dict[str, Any]) -> bool:
        """After a search that missed its target: where ``round_to=auto`` chose the alignment, switch to the next finer
        one (a coarse multiple can stop the widths short of the target), record the switch; False when there is none."""
        alignment, rows = self.report.get("round_to"), search.get("candidates")
        finer = finer_alignment(alignment)
        if finer is None or not rows:  # no candidate timed: the input already meets it, not a matter of widths
            return False
        given_up = {"round_to": alignment["chosen"], "met": False, "candidates": len(rows),
                    "most_pruned_macs_fraction": min(r["macs_fraction"] for r in rows),
                    "best_speedup": max(r["speedup"] for r in rows)}
        alignment.setdefault("fallbacks", []).append(given_up)
        alignment["chosen"] = self.args.round_to = finer
        self._write_record()
        LOGGER.info(f"{PREFIX}round_to={given_up['round_to']} cannot reach the target here (best "
                    f"{given_up['best_speedup']:.2f}× at {given_up['most_pruned_macs_fraction']:.3f} of the MACs); "
                    f"searching again with round_to={finer}")
        return True

    def _open(self, save_dir: Path) -> None:
        """Use ``save_dir`` as the run folder."""
        self.save_dir = Path(save_dir)
        self.weights_dir = self.save_dir / "weights"
        self.evaluator = Evaluator(self.config, self.yolo.task_map[self.config.task]["validator"], self.save_dir)
        self.step_timer = StepTimer(self._load_input, self.args.runtime, self.args.imgsz, threads=self.args.threads,
                                    fast_dfl=bool(self.args.fast_dfl))

    def _load_input(self) -> nn.Module:
        """The run's input as the steps' models are built from it: ``weights/baseline.pt``, prepared for pruning."""
        from ultralytics_prune_plugin.pruning.depgraph import prepare_for_pruning

        return prepare_for_pruning(load_model(self.weights_dir / "baseline.pt"))

    def _start(self) -> nn.Module:
        """Create the run folder, save and measure the baseline, write the first record; return the model to prune."""
        from ultralytics_prune_plugin.pruning.depgraph import prepare_for_pruning
        from ultralytics_prune_plugin.pruning.policy import kept_whole

        self._open(get_save_dir(self.args))
        self.weights_dir.mkdir(parents=True, exist_ok=True)
        amount = self.target_text() if self.has_target() else f"rate={self.args.rate:g}"  # the key that sets the amount
        LOGGER.info(f"{PREFIX}method={self.args.method} {amount}, results in {colorstr('bold', self.save_dir)}")
        if self.has_target() and "rate" in self.config.user_overrides:
            warn(f"{PREFIX}rate={self.args.rate:g} is not used: {self.target_text()} sets how much is pruned")
        original = deepcopy(self.yolo.model).float()  # the input model itself is never changed
        baseline = self.weights_dir / "baseline.pt"
        save_checkpoint(original, baseline, self.config.train_args(), {"stage": "baseline"})
        model = prepare_for_pruning(original)
        whole = kept_whole(model)
        if whole:
            LOGGER.info(f"{PREFIX}kept whole and unpruned (attention; architecture policy): {', '.join(whole)}")
        self.report = {
            "args": self.config.public_args(),
            "metrics": dict(zip(("map50", "map50_95"), metric_names(self.config.task))),  # what the columns hold
            "save_dir": str(self.save_dir),
            "baseline": self.evaluator.measure(model, "baseline", weights=baseline),
            "steps": [],
            "kept_step": 0,
            "stop_reason": None,
            "kept_whole": whole,  # modules the architecture policy never prunes
            "step_latency": self.step_timer.settings(),  # how the steps' latency_ms and speedup were measured
            "run_overrides": {  # what a resume needs to go on with the same arguments
                "checkpoint": resuming.jsonable_overrides(self.config.checkpoint_overrides),
                "given": resuming.jsonable_overrides(self.config.user_overrides),
                "input_train_args": resuming.jsonable_overrides(self.config.input_train_args),
            },
        }
        alignment = resolve_round_to(self.args, model, self.report["baseline"]["macs"], self.save_dir)
        if alignment is not None:
            self.report["round_to"] = alignment
        self._write_record()
        if latency_request(self.args) is not None:
            self._search_latency_target(model)
        return model

    def _restore(self):
        """Reopen an interrupted run: its report, its last completed step's model, a clean folder after that step."""
        from ultralytics_prune_plugin.pruning.depgraph import prepare_for_pruning
        from ultralytics_prune_plugin.pruning.policy import prunable_convs

        self._open(self.config.resume_dir)
        self.report = self.config.resume_report
        self.finetune_lr0 = self.report.get("finetune_lr0")  # lowered by an earlier step's retry
        # what the columns hold, for a report written before it was recorded
        self.report.setdefault("metrics", dict(zip(("map50", "map50_95"), metric_names(self.config.task))))
        self.report["save_dir"] = str(self.save_dir)  # the folder may have been moved since
        self.report.setdefault("step_latency", self.step_timer.settings())  # a report written before it was recorded
        if self.args.round_to == AUTO:  # chosen when the run started: the resumed steps keep its widths' alignment
            self.args.round_to = (self.report.get("round_to") or {}).get("chosen", DEFAULT)
        chosen = (self.report.get("latency_target") or {}).get("chosen_macs_fraction")
        if latency_request(self.args) is not None and chosen is not None:
            self.args.target_macs = chosen  # found when the run started: the resumed steps prune to it too
        self.report["baseline"]["weights"] = str(self.weights_dir / "baseline.pt")
        for row in self.report["steps"]:
            row["weights"] = str(self.weights_dir / f"step_{row['step']}.pt")
        done = len(self.report["steps"])
        resuming.clean_unfinished(self.save_dir, done)
        baseline = prepare_for_pruning(load_model(self.weights_dir / "baseline.pt"))
        self.evaluator.baseline_channels = sum(conv.out_channels for _, conv in prunable_convs(baseline))
        if done:
            model = prepare_for_pruning(load_model(self.weights_dir / f"step_{done}.pt"))
            self.evaluator.last_macs = self.report["steps"][-1]["macs"]
        else:
            model = baseline
            self.evaluator.last_macs = self.report["baseline"]["macs"]
        k = done + 1
        self.report.setdefault("resumed", []).append(
            {"at_step": k, "steps_done": done, "time": datetime.now().isoformat(timespec="seconds")}
        )
        self._write_record()
        total = self.config.steps
        finished = done >= total or self.report["stop_reason"]
        left = "only the finish is left" if finished else f"continuing at step {k}/{total}"
        LOGGER.info(
            f"{PREFIX}resuming {colorstr('bold', self.save_dir)} from step {k}: "
            + (f"step {done} was the last completed step (weights/step_{done}.pt)" if done else "no step was completed")
            + f"; {left}"
        )
        return model, k

    def _log_plan(self, first_step: int) -> None:
        """Say in one line what the run will do: steps × epochs = total fine-tune epochs, data, imgsz."""
        steps, epochs = self.config.steps, self.args.epochs
        left = steps - first_step + 1
        if left <= 0 or self.report.get("stop_reason") is not None:
            return
        data = self.args.data if self.config.data is not None else "no data (no mAP)"
        note = f" ({self.config.epochs_note})" if self.config.epochs_note else ""
        LOGGER.info(
            f"{PREFIX}plan: {left} step(s) × {epochs} epochs = {left * epochs} fine-tune epochs{note}, on {data}, "
            f"at imgsz={self.args.imgsz}" + self._latency_plan()
        )
        if epochs > 0:
            given = self.config.user_overrides
            kept = {k: v for k, v in finetune_defaults(epochs, self.args.batch).items() if k not in given}
            teacher = self.args.teacher or "weights/baseline.pt (the input)"
            LOGGER.info(
                f"{PREFIX}fine-tunes: " + ", ".join(f"{k}={v}" for k, v in kept.items())
                + (" (defaults for pruned models; give a key to override it)" if kept else "")
                + (f"; distilled from {teacher} (distill_weight={self.args.distill_weight:g})" if self.args.distill
                   else "; no distillation (distill=False)")
            )
        if epochs == 0 and self.config.data is not None:
            if self.config.budget_applies:
                LOGGER.info(
                    f"{PREFIX}epochs=0: max_map_drop={self.args.max_map_drop} was set, so it is compared against mAP "
                    "without fine-tuning"
                )
            else:
                LOGGER.info(
                    f"{PREFIX}epochs=0: pruning to the requested "
                    + (self.target_text() if self.macs_goal() is not None else f"rate={self.args.rate}")
                    + "; max_map_drop is not applied (mAP without fine-tuning always collapses; set it to apply it)"
                )

    def _latency_plan(self) -> str:
        """The plan line's words on a latency target: the request and the MACs fraction found for it."""
        record = self.report.get("latency_target")
        if not record or record.get("chosen_macs_fraction") is None:
            return ""
        return (
            f"; {request_text(record['key'], record['requested'])} in {record['runtime']} → "
            f"target_macs={record['chosen_macs_fraction']:.3f} (measured {record['chosen_speedup']:.2f}× on a "
            f"candidate, {len(record['candidates'])} timed)"
        )

    def _log_interrupted(self) -> None:
        """Say where the results of an interrupted run are, which step was completed last, and how to resume."""
        report_file = self.save_dir / "prune_report.json" if self.save_dir is not None else None
        if report_file is None or not report_file.is_file():
            where = f" ({self.save_dir} can be deleted)" if self.save_dir is not None else ""
            warn(f"\n{PREFIX}interrupted before the baseline was recorded; nothing to resume, start the run again{where}")
            return
        try:
            on_disk = json.loads(report_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            on_disk = self.report
        if "final" in on_disk:
            warn(f"\n{PREFIX}interrupted after the run finished; results in {self.save_dir}")
            return
        done = len(on_disk.get("steps", []))
        last = f"step {done} (weights/step_{done}.pt)" if done else "none (the baseline is recorded)"
        warn(
            f"\n{PREFIX}interrupted. Results so far are in {self.save_dir}: last completed step: {last}; "
            f"prune_steps.csv and prune_report.json hold every completed step.\n"
            f"{PREFIX}resume with: yolo prune {shlex.quote(f'resume={Path(self.save_dir).resolve()}')}"
        )

    # One step ------------------------------------------------------------------------------------------------------------
    def after_prune(self, pruned_step: PrunedStep):
        """Validate the freshly pruned model, fine-tune it, validate again, record the step, apply the stops.

        Called for each step the method yields, after writing the step's tables and report entries. Returns
        ``(model, stop)``: the model to go on with (the fine-tune's best) and whether the loop must stop (mAP budget
        exceeded, or ``target_macs`` reached).
        """
        model, k = pruned_step.model, pruned_step.step
        for name, (rows, columns) in pruned_step.tables.items():
            write_csv_atomic(self.save_dir / name, rows, columns)
        self.report.update(pruned_step.report)
        mark_restructured(model, method=self.args.method, step=k)
        row = {"step": k, **pruned_step.extra}
        if self.evaluator.recalibrate(model):
            row["bn_recalibrated"] = True
        pruned = self.evaluator.measure(model, f"step_{k}_pruned")
        row.update({key: pruned[key] for key in ("channels_kept", "macs", "params")})
        row["pruned_map50"], row["pruned_map50_95"] = pruned.get("map50"), pruned.get("map50_95")
        row.update(self.step_timer.time_step(model, k))  # widths are final now: the fine-tune changes weights only
        macs_cut = self.report["baseline"]["macs"] / row["macs"]
        measured = (f" ({macs_cut:.2f}× fewer MACs, {row['speedup']:.2f}× faster measured in {self.args.runtime}: "
                    f"{row['latency_ms']:.2f} ms vs {row['input_latency_ms']:.2f} ms)" if row["speedup"] else
                    f" ({macs_cut:.2f}× fewer MACs)")
        LOGGER.info(
            f"{PREFIX}step {k}: MACs {row['macs'] / 1e9:.3f} G{measured}, params {row['params']:,}, "
            f"channels kept {row['channels_kept']:.1%}, {self.metric} before fine-tune {fmt_value(row['pruned_map50_95'])}"
        )
        if self.args.epochs > 0:
            model = self._fine_tune(model, k, row)
        step_weights = self.weights_dir / f"step_{k}.pt"
        save_checkpoint(model, step_weights, self.config.train_args(fine_tuned=True), {"stage": f"step {k}", **row})
        row["weights"] = str(step_weights)
        stop = self._apply_budget(row)
        self.report["steps"].append(row)
        self._write_record()
        if not stop and self._macs_target_met(row["macs"]):
            self.report["stop_reason"] = f"target_macs reached at step {k}"
            LOGGER.info(f"{PREFIX}{self.report['stop_reason']}")
            stop = True
        return model, stop

    def _fine_tune(self, model: nn.Module, k: int, row: Dict[str, Any]) -> nn.Module:
        """Fine-tune step ``k``'s pruned ``model``, record the result in ``row`` and return the step's model.

        A fine-tune whose best epoch ends below the pruned model it started from (by more than ``FALL_FRACTION`` of
        its metric and ``FALL_ABSOLUTE``: not validation noise) has lost what pruning left: the step
        is fine-tuned once more from the pruned weights at a tenth of the learning rate (in ``step_k_retry/``), and
        the later steps keep that rate. The step keeps the better of the retry and the pruned model
        (``row['step_model']``); one warning says what happened. Measured on real aerial photographs (yolov8n,
        converged input, 2 steps × 6 epochs at ``lr0=0.01``): step 1 fell 0.138 → 0.101 and step 2 0.100 → 0.034,
        while 2 × 26 epochs at the same rate ended above the input, so a fall, not the rate, triggers the retry.
        """
        tuned, row["finetune_s"] = self.evaluator.fine_tune(model, k, self.weights_dir, lr0=self.finetune_lr0)
        result = self.evaluator.validate(tuned, f"step_{k}_recovered")
        row["finetune_map50"], row["finetune_map50_95"] = result.get("map50"), result.get("map50_95")
        start = row.get("pruned_map50_95")
        if start is None or start - result["map50_95"] <= max(FALL_ABSOLUTE, FALL_FRACTION * start):
            row["step_model"] = "fine-tune"
            row["recovered_map50"], row["recovered_map50_95"] = result["map50"], result["map50_95"]
            LOGGER.info(f"{PREFIX}step {k}: {self.metric} after fine-tune {fmt_value(row['recovered_map50_95'])}")
            return tuned
        lr0 = (self.finetune_lr0 or self.args.lr0) / 10
        warn(
            f"{PREFIX}step {k}: the fine-tune ended below the pruned model it started from ({self.metric} "
            f"{fmt_value(result['map50_95'])} < {fmt_value(start)}): its learning rate is too high for this data. "
            f"Fine-tuning step {k} again from the pruned weights at lr0={lr0:g} (step_{k}_retry/), and the later "
            f"steps at that rate"
        )
        self.finetune_lr0 = self.report["finetune_lr0"] = lr0
        pruned_weights = self.weights_dir / f"step_{k}_pruned.pt"
        retried, seconds = self.evaluator.fine_tune(load_model(pruned_weights), k, self.weights_dir, lr0=lr0,
                                                    name=f"step_{k}_retry")
        row["finetune_s"] += seconds
        retry = self.evaluator.validate(retried, f"step_{k}_retry")
        row["retry_lr0"], row["retry_map50"], row["retry_map50_95"] = lr0, retry.get("map50"), retry.get("map50_95")
        kept_retry = retry["map50_95"] >= start  # the first fine-tune fell below start: it is never the best
        row["step_model"] = "retry" if kept_retry else "pruned"
        row["recovered_map50"], row["recovered_map50_95"] = ((retry["map50"], retry["map50_95"]) if kept_retry
                                                             else (row["pruned_map50"], start))
        LOGGER.info(
            f"{PREFIX}step {k}: {self.metric} after the retry at lr0={lr0:g} {fmt_value(retry['map50_95'])}; the step "
            f"keeps the {row['step_model']} model ({fmt_value(row['recovered_map50_95'])})"
        )
        return retried if kept_retry else load_model(pruned_weights)

    def _apply_budget(self, row: Dict[str, Any]) -> bool:
        """Mark the step within or beyond ``max_map_drop``; return True when the loop must stop."""
        base = self.report["baseline"].get("map50_95")
        score = row.get("recovered_map50_95", row.get("pruned_map50_95"))
        if base is None or score is None or not self.config.budget_applies:
            row["within_budget"] = None  # no data, or epochs=0 without an explicit max_map_drop: no budget
            self.report["kept_step"] = row["step"]
            return False
        drop = base - score
        row["within_budget"] = drop <= self.args.max_map_drop
        if row["within_budget"]:
            self.report["kept_step"] = row["step"]
            return False
        kept = self.report["kept_step"]
        self.report["stop_reason"] = (
            f"step {row['step']} lost {drop:.4f} {self.metric} (baseline {base:.4f} → {score:.4f}), more than "
            f"max_map_drop={self.args.max_map_drop}; keeping "
            + (f"step {kept}, the last step within the budget" if kept else "the unpruned model: no step stayed within it")
        )
        warn(f"{PREFIX}{self.report['stop_reason']}")
        return True

    def macs_goal(self) -> Optional[float]:
        """The MACs that ``target_macs`` (a fraction of the baseline's) or ``target_gmacs`` asks for; None when unset."""
        if self.args.target_macs is not None:
            return self.args.target_macs * self.report["baseline"]["macs"]
        if self.args.target_gmacs is not None:
            return self.args.target_gmacs * 1e9
        return None

    def has_target(self) -> bool:
        """Return True when a target (``target_macs``, ``target_gmacs``, ``target_speedup``, ``target_latency``) sets how
        much is pruned."""
        return (self.args.target_macs is not None or self.args.target_gmacs is not None
                or latency_request(self.args) is not None)

    def target_text(self) -> str:
        """The target as the user gave it, e.g. ``target_macs=0.43``; a latency target with the MACs fraction found for
        it once it is known, e.g. ``target_speedup=2 (target_macs=0.412)``."""
        request = latency_request(self.args)
        if request is not None:
            found = f" (target_macs={self.args.target_macs:.3f})" if self.args.target_macs is not None else ""
            return request_text(*request) + found
        key = "target_macs" if self.args.target_macs is not None else "target_gmacs"
        return f"{key}={getattr(self.args, key):g}"

    def _macs_target_met(self, macs: float) -> bool:
        """Return True when ``target_macs`` is set and ``macs`` reaches it."""
        goal = self.macs_goal()
        return goal is not None and macs <= goal

    # Record and finish ---------------------------------------------------------------------------------------------------
    def _write_record(self) -> None:
        """Write the step CSV, the JSON report and the plot (each atomically)."""
        write_record(self.save_dir, self.report, budget=self._budget())

    def _final_speedup(self) -> Dict[str, Any]:
        """The kept model's speed-up over the input as the run measured it at the end, in ``runtime=``: the pruned
        FP32 ONNX artefact's row (timed there with ``threads=``), else the ONNX Runtime check's."""
        for row in self.report.get("artefacts") or []:
            if (row["model"], row["format"], row["precision"], row["runtime"]) == ("pruned", "onnx", "fp32",
                                                                                   self.args.runtime):
                return {"final_speedup": row.get("speedup"), "final_latency_ms": row.get("latency_ms"),
                        "final_measured_in": self.args.runtime}
        onnx = self.report.get("onnx") or {}
        return {"final_speedup": onnx.get("speedup"),
                "final_latency_ms": (onnx.get("latency_ms") or {}).get("pruned", {}).get("median_ms"),
                "final_measured_in": "onnxruntime"}

    def _budget(self) -> Optional[float]:
        """The least main metric within ``max_map_drop``; None without data or when no budget applies."""
        base = self.report["baseline"].get("map50_95")
        return base - self.args.max_map_drop if base is not None and self.config.budget_applies else None

    def _finish(self) -> None:
        """Save the kept model as ``pruned.pt``, export and check it in ONNX Runtime, print the summary."""
        self.evaluator.close()
        kept = self.report["kept_step"]
        source = self.weights_dir / ("baseline.pt" if kept == 0 else f"step_{kept}.pt")
        final = self.weights_dir / "pruned.pt"
        write_atomic(final, lambda tmp: shutil.copyfile(source, tmp))
        self.report["final"] = final_record(self.report, final, self.args.rate if self.macs_goal() is None else None)
        if self.macs_goal() is not None:  # set against the kept model, which a budget stop may make earlier
            reached = self.report["final"]["macs"]
            key = "target_macs" if self.args.target_macs is not None else "target_gmacs"
            self.report["target_macs"] = {
                "key": key, "requested": getattr(self.args, key), "goal_macs": self.macs_goal(), "reached_macs": reached,
                "met": self._macs_target_met(reached),
            }
        if self.report["stop_reason"] is None:  # a stop was logged when it happened
            self.report["stop_reason"] = f"all steps done; keeping step {kept}"
            LOGGER.info(f"\n{PREFIX}{self.report['stop_reason']}")
        self.report["onnx"] = deployment_record(
            self.weights_dir,
            self.args.imgsz,
            fast_dfl=bool(self.args.fast_dfl),
            macs_cut=self.report["baseline"]["macs"] / self.report["final"]["macs"],
            data=self.args.data if self.config.data is not None else None,
            task=self.config.task,
            validate_pytorch=lambda pt: self.evaluator.validate(load_model(pt), "pruned_pytorch_b1", batch=1, rect=False),
            val_dir=self.save_dir / "val",
        )
        self.report["artefacts"] = artefact_records(
            self.weights_dir,
            self.args.imgsz,
            self.report["onnx"],
            formats=parse_formats(self.args.formats),
            int8=self.config.int8,
            runtime=self.args.runtime,
            threads=self.args.threads,
            data=self.args.data if self.config.data is not None else None,
            task=self.config.task,
            val_dir=self.save_dir / "val",
            fast_dfl=bool(self.args.fast_dfl),
        )
        self.report["artefact_budget"] = self._budget()  # the least main metric the artefact line accepts
        if self.report.get("latency_target"):
            self.report["latency_target"].update(self._final_speedup())
        self._write_record()
        LOGGER.info(summary_table(self.report, self.args.imgsz))
        LOGGER.info(f"{PREFIX}results saved to {colorstr('bold', self.save_dir)}")
