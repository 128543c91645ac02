"""The pruning methods of ``yolo prune``, one strategy each: how a run removes channels, step by step.

A method reads what it needs of its run from :class:`MethodInputs` and is a generator: it prunes the model in place
and yields every pruned model as a :class:`PrunedStep`. The run (:class:`~.prune_run.PruneRun`) validates,
fine-tunes and records each step, and sends back the model to go on with (the fine-tune's best); when the run stops
(mAP budget, ``target_macs``) it closes the generator. A method never writes the run's report or files: what it has
to record travels in its :class:`PrunedStep`. Adding a method means adding a class here and naming it in
:data:`METHODS` (and in ``config.METHODS``).
"""

from __future__ import annotations

from copy import deepcopy
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Dict, Generator, List, Optional, Tuple

from torch import nn
from ultralytics.utils import DEFAULT_CFG, LOGGER

from ultralytics_prune_plugin.engine.allocation import latency_allocation
from ultralytics_prune_plugin.engine.run_config import PREFIX
from ultralytics_prune_plugin.report.console import quiet, warn


@dataclass(frozen=True)
class MethodInputs:
    """What a method reads of its run; the method changes none of it.

    Attributes:
        args: The run's resolved arguments (``get_cfg``, plugin keys included).
        input_train_args: The input checkpoint's training arguments (``sparse``, ``sr``, ...).
        baseline_weights: The run's copy of its input model (``weights/baseline.pt``).
        baseline_macs: The input model's MACs.
        macs_goal: The MACs that ``target_macs``/``target_gmacs`` ask for, or None without a target.
        target_text: The target as the user gave it (e.g. ``target_macs=0.43``), or None without a target.
        evaluator: The run's evaluator: its training batches (Taylor importance) and ``last_macs``, the MACs of the
            model it measured last.
    """

    args: Any
    input_train_args: Dict[str, Any]
    baseline_weights: Path
    baseline_macs: float
    macs_goal: Optional[float]
    target_text: Optional[str]
    evaluator: Any


@dataclass
class PrunedStep:
    """A model a method has just pruned, handed to the run.

    Attributes:
        model: The pruned model.
        step: The step's number, from 1.
        extra: Fields of the step's row in the report (``step_ratio``, ``clamped_layers``, ...).
        report: Entries the run adds to the top level of its report before it records the step (slim: ``slim``).
        tables: CSV files the run writes into its folder before it records the step: file name to
            ``(rows, columns)`` (slim: ``slim_layers.csv``).
    """

    model: nn.Module
    step: int
    extra: Dict[str, Any] = field(default_factory=dict)
    report: Dict[str, Any] = field(default_factory=dict)
    tables: Dict[str, Tuple[List[Dict[str, Any]], List[str]]] = field(default_factory=dict)


# What a method's ``steps`` returns: it yields pruned steps and is sent the model to go on with.
Steps = Generator[PrunedStep, nn.Module, None]


class DepGraphMethod:
    """Iterative DepGraph pruning: ``iterative_steps`` rounds whose ratios compound to ``rate``, or, with a MACs target
    (``target_macs``/``target_gmacs``), rounds that each reach their share of the target. With ``allocation=latency``
    each group's ratio follows its latency weight (:mod:`.allocation`); the first step reports the weights.

    With a target, step ``k`` of ``n`` aims at ``baseline * (goal / baseline) ** (k / n)`` MACs (equal factors per
    step); its ratio is the smallest one that reaches that, found by bisection on copies of the model.

    A resumed run starts at ``first_step`` with the same per-step ratio; the model carries its ideal widths
    (``pruning_ideal_widths``), so it ends with the same channel counts as an uninterrupted run.
    """

    name = "depgraph"

    def steps(self, run: MethodInputs, model: nn.Module, first_step: int) -> Steps:
        """Prune ``model`` step by step from ``first_step``, yielding each step, until the last step or a stop."""
        from ultralytics_prune_plugin.deploy.machine_load import BUSY
        from ultralytics_prune_plugin.pruning.depgraph import cap_width, prune_once, step_ratio

        args = run.args
        steps = args.iterative_steps
        gradients = quietly(run.evaluator.training_batches().fill_gradients) if args.importance == "taylor" else None
        options = prune_options(args, steps, gradients)
        weights, allocation = latency_allocation(args, run.baseline_weights, options)
        if weights:
            options = replace(options, latency_weights=weights)
            LOGGER.info(
                f"{PREFIX}allocation=latency: layer weights {min(weights.values()):.2f}-{max(weights.values()):.2f} "
                f"from the input's per-layer latency in {args.runtime} at imgsz={args.imgsz}, threads={args.threads} "
                f"and of a copy pruned uniformly at rate {allocation['reference_rate']:g} "
                f"({'cached' if allocation['tables_from_cache'] else 'measured now'}: {allocation['tables'][0]})"
            )
            busy = max((x for x in allocation["tables_other_load"] if x is not None), default=0.0)
            if busy >= BUSY:
                warn(f"{PREFIX}the per-layer latency was measured while other processes used {busy:.0%} of the CPUs; "
                     "on a quieter machine the layers may weigh differently (the table is measured again then)")
        # global pruning: max_layer_rate caps each layer against the input's widths, reached after the last step
        inputs = self.input_widths(run.baseline_weights, args.prune_head) if options.global_pruning else {}
        goal, base = run.macs_goal, run.baseline_macs
        ratio = step_ratio(args.rate, steps)
        for k in range(first_step, steps + 1):
            extra = {}
            caps = {name: cap_width(width, 1.0 - (1.0 - args.max_layer_rate) ** (k / steps), args.round_to)
                    for name, width in inputs.items()}
            options_k = replace(options, min_widths=caps) if caps else options
            if goal is not None:
                step_goal = base * (goal / base) ** (k / steps)
                ratio, trials = self.ratio_for(model, step_goal, args, options_k)
                extra.update({"step_goal_macs": step_goal, "ratio_trials": trials})
                what = f"{ratio:.1%} of the channels to reach {step_goal / 1e9:.3f} GMACs ({run.target_text})"
            else:
                what = f"{ratio:.1%} of the channels of each prunable group"
            if options.global_pruning and goal is None:
                what = f"{ratio:.1%} of all prunable channels, ranked globally"
            LOGGER.info(
                f"\n{PREFIX}step {k}/{steps}: pruning {what} (MACs now {run.evaluator.last_macs / 1e9:.3f} G, "
                f"importance={args.importance})"
            )
            # with a target, ratio_for has filled the gradients already: the step need not compute them again
            step_options = replace(options_k, gradients=None) if goal is not None else options_k
            prune_once(model, args.imgsz, ratio, round_to=args.round_to, options=step_options)
            extra["step_ratio"] = ratio
            clamped = self.clamped_layers(model, args.round_to, caps)
            if clamped:
                extra["clamped_layers"] = clamped
            if clamped and caps:
                LOGGER.info(f"{PREFIX}{clamped} layer(s) at the per-layer cap max_layer_rate={args.max_layer_rate:g}")
            elif clamped:
                warn(
                    f"{PREFIX}rate={args.rate} would leave {clamped} layers without channels; each "
                    f"keeps {args.round_to or 1} channel(s), or its current width where that is smaller (clamped)"
                )
            report = {"allocation": allocation} if allocation and k == first_step else {}
            model = yield PrunedStep(model, k, extra, report=report)

    @staticmethod
    def ratio_for(model: nn.Module, goal: float, args, options) -> tuple:
        """The smallest step ratio whose pruned copy of ``model`` has at most ``goal`` MACs (bisection on copies).

        Returns:
            ``(ratio, trials)``; the largest ratio tried (0.95) when even that cannot reach the goal.
        """
        from ultralytics_prune_plugin.engine.training_batches import copy_gradients
        from ultralytics_prune_plugin.pruning.depgraph import prepare_for_pruning, prune_once

        prepare_for_pruning(model)
        if options.gradients is not None:
            options.gradients(model)  # once for all trials; each copy gets them
        trial_options = replace(options, gradients=None)

        def macs_at(r: float) -> float:
            trial = deepcopy(model)
            copy_gradients(model, trial)
            return prune_once(trial, args.imgsz, r, round_to=args.round_to, options=trial_options)["macs_after"]

        low, high, trials = 0.0, 0.95, 1
        if macs_at(high) > goal:
            warn(f"{PREFIX}a step cannot reach {goal / 1e9:.3f} GMACs; pruning at ratio {high}")
            return high, trials
        while high - low > 2e-3:
            mid = (low + high) / 2
            trials += 1
            low, high = (low, mid) if macs_at(mid) <= goal else (mid, high)
        return high, trials

    @staticmethod
    def input_widths(baseline_weights: Path, prune_head: bool) -> dict:
        """The output width of every prunable convolution of the run's input (``weights/baseline.pt``), by unsplit
        name."""
        from ultralytics_prune_plugin.engine.checkpoint import load_model
        from ultralytics_prune_plugin.pruning.depgraph import channel_counts, prepare_for_pruning
        from ultralytics_prune_plugin.pruning.policy import prunable_convs

        baseline = prepare_for_pruning(load_model(baseline_weights))
        widths = channel_counts(baseline)
        return {name: widths[name] for name, _ in prunable_convs(baseline, prune_head)}

    @staticmethod
    def clamped_layers(model: nn.Module, round_to, caps=None) -> int:
        """Count the prunable convolutions that the pruned ``model`` holds at a limit, measured on its widths.

        With ``caps`` (global pruning: the fewest channels ``max_layer_rate`` lets each convolution keep, by unsplit
        name), those whose width is at their cap. Without (uniform pruning), those at the minimum width (one
        ``round_to`` multiple) because their ideal width rounds to nothing.
        """
        from ultralytics_prune_plugin.pruning import depgraph

        # measured on an unsplit copy: its names are those of the caps and ideal widths
        widths = depgraph.channel_counts(depgraph.prepare_for_pruning(deepcopy(model)))
        if caps:
            return sum(1 for name, cap in caps.items() if name in widths and widths[name] <= cap)
        unit = round_to or 1
        ideal = getattr(model, depgraph.IDEAL_WIDTHS_ATTRIBUTE, None) or {}
        return sum(1 for name, width in ideal.items() if width < unit / 2 and widths.get(name, unit + 1) <= unit)


# With a MACs target, slim searches its rate up to this.
SLIM_MAX_RATE = 0.95


class SlimMethod:
    """Network Slimming: one global BatchNorm-γ threshold, then fine-tuning (a single step)."""

    name = "slim"

    def steps(self, run: MethodInputs, model: nn.Module, first_step: int) -> Steps:
        """Slim-prune ``model`` once (at the ``target_macs`` rate when one is set) and yield it."""
        from ultralytics_prune_plugin.pruning.slim import gamma_sparsity_report, slim_prune

        if first_step != 1:
            return  # its one step is done
        args = run.args
        sparse_args = run.input_train_args  # the input checkpoint's train_args (kept for a resume)
        gamma = gamma_sparsity_report(model, train_args=sparse_args)
        LOGGER.info(
            f"{PREFIX}BatchNorm γ before slim pruning: {gamma['fraction_below']:.1%} of {gamma['count']} prunable |γ| "
            f"< 1e-2, median {gamma['median']:.3g}, 10th percentile {gamma['p10']:.3g} "
            + ("(sparse-trained input)" if sparse_args.get("sparse") else "(input not sparse-trained)")
        )
        if args.iterative_steps != DEFAULT_CFG.iterative_steps:
            warn(f"{PREFIX}'iterative_steps' does not apply to method=slim (one threshold).")

        def slim(target: nn.Module, rate: float, verbose: bool = True):
            """Slim-prune ``target`` in place at ``rate`` with the run's settings."""
            kwargs = dict(min_channels=args.min_channels, imgsz=args.imgsz, round_to=args.round_to)
            return slim_prune(target, rate, verbose=verbose, train_args=sparse_args, **kwargs)

        rate, target_search = args.rate, None
        goal = run.macs_goal
        if goal is not None:
            # One threshold, so no loop to stop: take the smallest rate whose MACs meet the target, found by bisection
            # on copies (MACs never grow with the rate: a higher rate removes a superset of the channels).
            rate = SLIM_MAX_RATE
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
                f"{PREFIX}{run.target_text}: slim rate {rate:.3f} "
                + (f"meets {goal / 1e9:.3f} GMACs" if trials[rate] <= goal else f"cannot reach {goal / 1e9:.3f} GMACs")
                + f" ({len(trials)} trial prunes on copies)"
            )
        result = slim(model, rate)
        if result.applied_rate < rate - 1e-6:
            warn(
                f"{PREFIX}rate={rate:g} would empty layers; the rate applied is "
                f"{result.applied_rate:.3f} (min_channels={args.min_channels})."
            )
        table = [{"layer": r.name, "channels_before": r.before, "channels_after": r.after} for r in result.layers]
        record = {
            "requested_rate": result.requested_rate,
            "applied_rate": result.applied_rate,
            "clamped": result.clamped,
            "threshold": result.threshold,
            "gamma_before": gamma,
            "sparse_trained": bool(sparse_args.get("sparse")),
            "sr": sparse_args.get("sr") if sparse_args.get("sparse") else None,
        }
        if target_search is not None:
            record["target_macs_search"] = target_search
        yield PrunedStep(
            model,
            1,
            {"step_ratio": result.applied_rate},
            report={"slim": record},
            tables={"slim_layers.csv": (table, ["layer", "channels_before", "channels_after"])},
        )


def quietly(function):
    """``function`` with Ultralytics' lines and progress bars hidden while it runs (internal work)."""

    def run_quietly(*args, **kwargs):
        with quiet():
            return function(*args, **kwargs)

    return run_quietly


def prune_options(args, steps: int, gradients=None):
    """The :class:`~ultralytics_prune_plugin.pruning.depgraph.PruneOptions` of one step, from the run's arguments.

    Totals over the run (``max_layer_rate``, ``layer_rates``) become per-step ratios that compound to them.
    """
    from ultralytics_prune_plugin.pruning.depgraph import PruneOptions, step_ratio

    return PruneOptions(
        importance=args.importance,
        global_pruning=bool(args.global_pruning),
        max_step_ratio=step_ratio(args.max_layer_rate, steps),
        isomorphic=bool(args.isomorphic),
        layer_ratios={i: step_ratio(r, steps) for i, r in (args.layer_rates or {}).items()},
        ignore_layers=tuple(args.ignore_layers or ()),
        prune_head=bool(args.prune_head),
        gradients=gradients,
    )


# The strategy behind each value of the 'method' key.
METHODS = {method.name: method for method in (DepGraphMethod, SlimMethod)}
