"""``allocation=``: how much each prunable group of a DepGraph run loses, from the run's arguments.

``uniform`` (the default) prunes every group at the same rate and needs nothing here. ``latency`` weighs every group
by the time its channels cost where the model will run (:mod:`ultralytics_prune_plugin.pruning.latency_allocation`):
the run's input (``weights/baseline.pt``, unsplit as pruning sees it) and a copy of it pruned uniformly at
``REFERENCE_RATE`` get their per-layer latency tables in ``runtime=`` at ``imgsz``, batch 1, ``threads=``
(:func:`~ultralytics_prune_plugin.deploy.layer_latency.layer_latency_table`, measured once per machine, runtime and
model, then read from the cache); what each group's channels save between the two sets its weight, which goes into
every step's :class:`~ultralytics_prune_plugin.pruning.depgraph.PruneOptions`. The weights come from the input, not
from the model being pruned, so every step, every latency-target candidate and a resumed run use the same ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional, Tuple

LATENCY = "latency"


def latency_allocation(args, baseline_weights: Path, options) -> Tuple[Dict[str, float], Optional[Dict[str, Any]]]:
    """The latency weight of every prunable convolution, and the report's ``allocation`` record.

    Args:
        args: The run's arguments (``allocation``, ``runtime``, ``threads``, ``imgsz``, ``fast_dfl``).
        baseline_weights: The run's input checkpoint.
        options: The run's :class:`~ultralytics_prune_plugin.pruning.depgraph.PruneOptions` (which groups exist).

    Returns:
        ``(weights, record)``; ``({}, None)`` unless ``allocation=latency``.
    """
    if getattr(args, "allocation", "uniform") != LATENCY:
        return {}, None
    from ultralytics_prune_plugin.deploy.layer_latency import layer_latency_table
    from ultralytics_prune_plugin.engine.checkpoint import load_model
    from ultralytics_prune_plugin.pruning import latency_allocation as rule
    from ultralytics_prune_plugin.pruning.depgraph import prepare_for_pruning

    model = prepare_for_pruning(load_model(baseline_weights))
    reference = rule.reference_model(model, int(args.imgsz), args.round_to, options)
    tables = [layer_latency_table(m, int(args.imgsz), args.runtime, threads=args.threads,
                                  fast_dfl=bool(getattr(args, "fast_dfl", False))) for m in (model, reference)]
    costs = rule.group_costs(model, reference, tables[0].ms_within, tables[1].ms_within, options)
    weights = rule.latency_weights(model, costs)
    cost_of = {name: cost for members, cost in costs for name in members}
    record = {
        "allocation": LATENCY,
        "runtime": args.runtime,
        "threads": args.threads,
        "imgsz": int(args.imgsz),
        "tables": [str(t.path) for t in tables],
        "tables_from_cache": all(t.from_cache for t in tables),
        "tables_total_ms": [t.total_ms for t in tables],
        "tables_other_load": [t.other_load for t in tables],
        "reference_rate": rule.REFERENCE_RATE,
        "strength": rule.STRENGTH,
        "max_weight": rule.MAX_WEIGHT,
        "layers": {name: {"ms_per_channel": cost_of[name], "weight": weights[name]} for name in weights},
    }
    return weights, record
