"""Network Slimming sparse training: an L1 penalty on the prunable BatchNorm scale factors (γ).

Liu et al., "Learning Efficient Convolutional Networks through Network Slimming" (ICCV 2017), add ``sr * |γ|`` to
the loss for every BatchNorm whose channels pruning may remove. Its subgradient, ``sr * sign(γ)``, is added here to
``γ.grad`` of exactly the BatchNorms that :func:`ultralytics_prune_plugin.pruning.policy.prunable_batchnorms`
returns: the same set the slim pruner thresholds, so training and pruning never disagree.

When the penalty is added
    Ultralytics 8.1's ``BaseTrainer.optimizer_step`` runs ``scaler.unscale_(optimizer)`` →
    ``clip_grad_norm_(max_norm=10)`` → ``scaler.step(optimizer)`` → ``scaler.update()`` → ``zero_grad()`` → EMA
    update, once every ``trainer.accumulate`` batches. The penalty is an optimizer *step pre-hook*
    (``optimizer.register_step_pre_hook``), which ``torch.optim.Optimizer.step`` runs before its update. Hence:

    * it is added once per optimizer step, not once per batch, so its strength does not grow with the gradient
      accumulation factor ``nbs / batch``;
    * it is added to unscaled gradients: with AMP, ``scaler.step`` calls ``optimizer.step`` only after
      ``unscale_``, so the term is not divided by the loss scale (about 65536) as it is when it is added right after
      ``backward()``; and when the scaler finds inf/NaN gradients it skips ``optimizer.step`` and the hook with it;
    * it is added after gradient clipping, so clipping never shrinks it: the effective penalty is exactly
      ``sr * sign(γ)``, whatever the norm of the loss gradients.

Where the settings live
    Everything is read from ``trainer.args`` (``sparse``, ``sr``, ``sr_final``) and the trainer's epoch counters, so
    Ultralytics' multi-GPU launcher, which rebuilds the trainer from its arguments in every rank, and ``resume=True``,
    which restores the arguments from the checkpoint (``train_args``, kept by ``strip_optimizer`` because the plugin
    keys are registered in ``DEFAULT_CFG_DICT``), get the same penalty and the same ``sr`` schedule.

What is reported
    After every epoch the |γ| of the EMA model (the weights that are saved) are summarised in ``results.csv``
    (columns ``sparsity/gamma_lt_1e-2``, ``sparsity/gamma_p10``, ``sparsity/gamma_p50``, ``sparsity/sr``) and in the
    log. Their histogram is kept in ``gamma_histogram.json`` in the run folder (so a resumed run continues it), and
    ``gamma_histogram.png`` is drawn from it when training ends.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.hooks import RemovableHandle
from ultralytics.utils import LOGGER

from ultralytics_prune_plugin.report.console import warn
from ultralytics_prune_plugin.adapters import internals
from ultralytics_prune_plugin.pruning.policy import prunable_batchnorms

SPARSE_THRESHOLD = 1e-2  # |γ| below this counts as "near zero" in the reports
HISTOGRAM_EDGES = np.logspace(-6, 1, 71)  # |γ| bin edges; values outside are counted in the first / last bin
HISTOGRAM_JSON = "gamma_histogram.json"
HISTOGRAM_PNG = "gamma_histogram.png"
PREFIX = "sparsity/"


# Penalty --------------------------------------------------------------------------------------------------------------
def sr_at_epoch(sr: float, sr_final: Optional[float], epoch: int, epochs: int) -> float:
    """Return the sparsity rate for one epoch: constant, or linear from ``sr`` to ``sr_final`` over the run.

    Args:
        sr: Rate of the first epoch.
        sr_final: Rate of the last epoch, or None for a constant rate.
        epoch: Zero-based epoch index.
        epochs: Total number of epochs of the run.

    Returns:
        The rate for ``epoch``; the first epoch gets ``sr`` and the last one ``sr_final``.
    """
    if sr_final is None or epochs <= 1:
        return float(sr)
    t = min(max(epoch, 0), epochs - 1) / (epochs - 1)
    return float(sr + (sr_final - sr) * t)


def prunable_gammas(model: nn.Module) -> List[nn.Parameter]:
    """Return the scale factors (``weight``) of the prunable BatchNorms of ``model`` (de-parallelised first)."""
    return [bn.weight for _, bn in prunable_batchnorms(internals().unwrap_model(model)) if bn.weight is not None]


@torch.no_grad()
def add_l1_subgradient(params: Sequence[nn.Parameter], sr: float) -> None:
    """Add ``sr * sign(p)`` to the gradient of each parameter that has one (frozen or unused ones are skipped).

    torch-pruning's ``BNScalePruner.regularize`` adds the same term, but to every BatchNorm not in its ignore list, and
    needs a pruner (a traced dependency graph) per model; here the term goes to exactly the γ that pruning may cut
    (``prunable_gammas``, the same policy as the pruners), from an optimizer hook, with no graph to build per rank.
    """
    if sr == 0:
        return
    for p in params:
        if p.grad is not None:
            p.grad.add_(torch.sign(p.detach()).to(p.grad.dtype), alpha=sr)


def register_l1_penalty(
    optimizer: torch.optim.Optimizer, params: Sequence[nn.Parameter], sr_fn: Callable[[], float]
) -> RemovableHandle:
    """Add ``sr_fn() * sign(p)`` to the gradients of ``params`` inside every ``optimizer.step()`` call.

    The hook runs before the update, after whatever the caller did between ``backward()`` and ``step()`` (AMP
    unscaling, gradient clipping). A ``GradScaler`` that skips a step with inf/NaN gradients skips the hook as well.

    Args:
        optimizer: The optimizer that updates ``params``.
        params: The BatchNorm scales to penalise.
        sr_fn: Returns the sparsity rate to use at the time of the step.

    Returns:
        The hook handle; ``handle.remove()`` stops the penalty.
    """
    params = list(params)

    def l1_pre_step_hook(opt, args, kwargs):
        add_l1_subgradient(params, sr_fn())

    return optimizer.register_step_pre_hook(l1_pre_step_hook)


# Statistics and histograms ------------------------------------------------------------------------------------------
@torch.no_grad()
def gamma_magnitudes(model: nn.Module) -> torch.Tensor:
    """Return |γ| of all prunable BatchNorms of ``model`` as one flat float32 CPU tensor."""
    gammas = prunable_gammas(model)
    if not gammas:
        return torch.zeros(0)
    return torch.cat([g.detach().abs().float().flatten().cpu() for g in gammas])


def gamma_statistics(model: nn.Module, threshold: float = SPARSE_THRESHOLD) -> Dict[str, float]:
    """Summarise the prunable |γ| of ``model``.

    Args:
        model: An Ultralytics detection model.
        threshold: |γ| below this counts as near zero.

    Returns:
        ``{"fraction_below": ..., "p10": ..., "p50": ..., "count": ...}``; NaNs when there is no prunable BatchNorm.
    """
    g = gamma_magnitudes(model)
    if g.numel() == 0:
        return {"fraction_below": float("nan"), "p10": float("nan"), "p50": float("nan"), "count": 0}
    q = torch.quantile(g.double(), torch.tensor([0.1, 0.5], dtype=torch.float64))
    return {
        "fraction_below": float((g < threshold).float().mean()),
        "p10": float(q[0]),
        "p50": float(q[1]),
        "count": int(g.numel()),
    }


def gamma_histogram(magnitudes: torch.Tensor) -> List[int]:
    """Count |γ| values in the bins of :data:`HISTOGRAM_EDGES` (values outside go to the first / last bin)."""
    values = np.clip(magnitudes.numpy(), HISTOGRAM_EDGES[0], HISTOGRAM_EDGES[-1])
    counts, _ = np.histogram(values, bins=HISTOGRAM_EDGES)
    return [int(c) for c in counts]


def load_histograms(path: Path) -> Dict[int, List[int]]:
    """Read the per-epoch histograms that :func:`save_histograms` wrote; empty when the file does not exist."""
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    if not np.allclose(data.get("bin_edges", []), HISTOGRAM_EDGES):
        return {}
    return {int(epoch): counts for epoch, counts in data["epochs"].items()}


def save_histograms(histograms: Dict[int, List[int]], path: Path) -> None:
    """Write the per-epoch |γ| histograms (keys: 1-based epochs) and their bin edges as JSON."""
    data = {"bin_edges": HISTOGRAM_EDGES.tolist(), "epochs": {str(k): v for k, v in sorted(histograms.items())}}
    path.write_text(json.dumps(data), encoding="utf-8")


def plot_histograms(histograms: Dict[int, List[int]], path: Path, threshold: float = SPARSE_THRESHOLD) -> Path:
    """Draw one |γ| distribution curve per epoch on a log-scaled |γ| axis and save it as an image.

    Uses matplotlib's Agg canvas directly, so no pyplot backend is switched.

    Args:
        histograms: Bin counts per 1-based epoch, over :data:`HISTOGRAM_EDGES`.
        path: Where to save the image.
        threshold: Drawn as a dashed vertical line.

    Returns:
        ``path``.
    """
    gamma_histogram_figure(histograms, threshold).savefig(path)
    return path


def gamma_histogram_figure(histograms: Dict[int, List[int]], threshold: float = SPARSE_THRESHOLD):
    """Build the figure of :func:`plot_histograms` (arguments as there) on its own Agg canvas and return it.

    The legend sits below the axes; the epoch colour bar is drawn only when some epochs are unlabelled thin curves
    (runs of more than 3 epochs); the |γ| axis is labelled with plain numbers, in 1-2-5 steps (every step within a
    decade) for the narrow ranges of short runs.
    """
    from matplotlib import cm
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure
    from matplotlib.ticker import LogLocator, MaxNLocator, NullFormatter

    fig = Figure(figsize=(8, 5.5), dpi=150, constrained_layout=True)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    centers = np.sqrt(HISTOGRAM_EDGES[:-1] * HISTOGRAM_EDGES[1:])
    epochs = sorted(histograms)
    norm = Normalize(vmin=min(epochs, default=1), vmax=max(max(epochs, default=1), min(epochs, default=1) + 1))
    # The first, middle and last epochs stand out (labelled, thick); the others are thin, coloured by epoch.
    marked = {}
    if epochs:
        picks = zip((epochs[-1], epochs[len(epochs) // 2], epochs[0]), ("last", "middle", "first"))
        marked = {epoch: name for epoch, name in picks}  # with fewer than 3 epochs, 'first' wins a shared epoch
    styles = {"first": ("tab:blue", "-"), "middle": ("tab:orange", "--"), "last": ("tab:red", "-")}
    for epoch in epochs:
        counts = np.asarray(histograms[epoch], dtype=float)
        fraction = counts / max(counts.sum(), 1.0)
        if epoch in marked:
            color, style = styles[marked[epoch]]
            ax.plot(centers, fraction, style, color=color, lw=2.2, label=f"epoch {epoch} ({marked[epoch]})", zorder=3)
        else:
            ax.plot(centers, fraction, color=cm.viridis(norm(epoch)), lw=0.8, alpha=0.45)
    used = np.flatnonzero(np.sum([histograms[e] for e in epochs], axis=0)) if epochs else np.array([])
    low, high = HISTOGRAM_EDGES[0], HISTOGRAM_EDGES[-1]
    if used.size:  # the x range follows the data, one bin of margin on each side
        low = HISTOGRAM_EDGES[max(used[0] - 1, 0)]
        high = HISTOGRAM_EDGES[min(used[-1] + 2, len(HISTOGRAM_EDGES) - 1)]
    ax.set_xscale("log")
    ax.set_xlim(low, high)
    decades = np.log10(high / low)  # short runs span a decade or two: label 1-2-5 (or 1..9) steps, not 10^k only
    subs = tuple(range(1, 10)) if decades <= 1 else (1.0, 2.0, 5.0) if decades <= 2.5 else (1.0,)
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=subs, numticks=12))
    ax.xaxis.set_major_formatter(lambda value, _: f"{value:g}")
    ax.xaxis.set_minor_formatter(NullFormatter())
    if low <= threshold <= high:
        ax.axvline(threshold, color="red", ls=":", lw=1, label=f"|γ| = {threshold:g}")
    else:
        ax.plot([], [], " ", label=f"no |γ| near {threshold:g} (the sparsity threshold is off this range)")
    ax.set_xlabel(f"|γ| of prunable BatchNorm channels (values < {HISTOGRAM_EDGES[0]:g} in the first bin)")
    ax.set_ylabel("fraction of channels")
    ax.set_title("BatchNorm scale factors during sparse training")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, fontsize=8, frameon=False)  # off the curves
    if any(epoch not in marked for epoch in epochs):  # thin curves coloured by epoch: the colour bar explains them
        colorbar = fig.colorbar(cm.ScalarMappable(norm=norm, cmap="viridis"), ax=ax, label="epoch")
        colorbar.ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    return fig


# Trainer integration --------------------------------------------------------------------------------------------------
def _optimizer_description(optimizer: torch.optim.Optimizer) -> str:
    """Return e.g. ``AdamW(lr=0.00125, momentum=0.9)`` for the optimizer Ultralytics built."""
    defaults = optimizer.defaults
    momentum = defaults.get("momentum", (defaults.get("betas") or (None,))[0])
    return f"{type(optimizer).__name__}(lr={defaults.get('lr')}, momentum={momentum})"


def choose_sparse_optimizer(args) -> None:
    """Before the optimizer is built: a sparse run with ``optimizer=auto`` uses SGD at ``lr0``, and says so.

    Network Slimming's L1 term ``sr * sign(γ)`` is designed for SGD, where each step moves γ by ``lr * sr``; Ultralytics'
    ``auto`` would usually pick AdamW with a learning rate of its own, which rescales the term per parameter. An
    optimizer the user names is kept (see :func:`warn_adaptive_optimizer`).

    Args:
        args: The trainer's arguments (``optimizer``, ``lr0``, ``momentum``); ``optimizer`` is set to ``'SGD'``.
    """
    if str(args.optimizer).lower() != "auto":
        return
    args.optimizer = "SGD"
    LOGGER.info(
        f"sparsity: 'optimizer=auto' → SGD(lr0={args.lr0}, momentum={args.momentum}) for sparse training, the setting "
        "the L1 penalty is designed for; name another optimizer to use it instead"
    )


def warn_adaptive_optimizer(trainer) -> None:
    """In a sparse run with an adaptive optimizer that the user named, warn how it changes the L1 term."""
    if isinstance(trainer.optimizer, torch.optim.SGD):
        return
    warn(
        f"sparse training with {_optimizer_description(trainer.optimizer)}: an adaptive optimizer rescales "
        "the L1 term sr*sign(γ) per parameter like any gradient, unlike the SGD setting of Network Slimming. "
        f"Pass 'optimizer=SGD lr0=...' (or 'optimizer=auto', which picks SGD for sparse runs) to follow it."
    )


class SparseTraining:
    """The sparse-training helper of one trainer: the L1 step hook, the per-epoch report and the |γ| plot.

    It keeps no settings of its own: the rate comes from ``trainer.args`` and ``trainer.epoch`` at every step, so
    a trainer rebuilt from its arguments (multi-GPU ranks, ``resume=True``) behaves identically.

    Attributes:
        trainer: The Ultralytics trainer being helped.
        params: The prunable BatchNorm scales of ``trainer.model`` that receive the penalty.
        handle: The optimizer step pre-hook handle.
    """

    def __init__(self, trainer):
        """Register the penalty on ``trainer.optimizer`` and the end-of-training plot; see the module docstring."""
        self.trainer = trainer
        self.params = prunable_gammas(trainer.model)
        self.groups = 0
        if trainer.args.method == "group":  # group sparse learning (DepGraph); the model holds unsplit blocks
            from ultralytics_prune_plugin.pruning.group_sparsity import (
                build_group_regularizer,
                group_count,
                register_group_penalty,
            )

            model = internals().unwrap_model(trainer.model)
            regularizer = build_group_regularizer(model, self.current_sr())
            self.groups = group_count(regularizer)
            self.handle = register_group_penalty(trainer.optimizer, model, regularizer, self.current_sr)
        else:
            if not self.params:
                warn("sparse training: the model has no prunable BatchNorm; the penalty does nothing")
            self.handle = register_l1_penalty(trainer.optimizer, self.params, self.current_sr)
        trainer.add_callback("on_train_end", self.on_train_end)

    @property
    def epoch(self) -> int:
        """The trainer's current zero-based epoch (its start epoch before the first one begins)."""
        epoch = getattr(self.trainer, "epoch", None)
        return int(epoch if epoch is not None else getattr(self.trainer, "start_epoch", 0))

    def current_sr(self) -> float:
        """Return the sparsity rate of the current epoch, from ``trainer.args``."""
        args = self.trainer.args
        return sr_at_epoch(args.sr, args.sr_final, self.epoch, self.trainer.epochs)

    @property
    def histogram_path(self) -> Path:
        """Where the per-epoch histograms are kept: ``gamma_histogram.json`` in the run folder."""
        return Path(self.trainer.save_dir) / HISTOGRAM_JSON

    def _record_histogram(self, magnitudes: torch.Tensor) -> None:
        """Store this epoch's |γ| histogram, keeping earlier epochs of a resumed run and dropping later ones."""
        histograms = load_histograms(self.histogram_path) if self._continues_file() else {}
        histograms = {e: c for e, c in histograms.items() if e <= self.epoch}
        histograms[self.epoch + 1] = gamma_histogram(magnitudes)
        save_histograms(histograms, self.histogram_path)

    def _continues_file(self) -> bool:
        """Whether an existing histogram file belongs to this run: a resumed run, or an epoch after its first."""
        return bool(self.trainer.resume) or self.epoch > getattr(self.trainer, "start_epoch", 0)

    def epoch_metrics(self) -> Dict[str, float]:
        """Measure the EMA model's prunable |γ|, record the histogram, log a line and return the results.csv columns.

        Returns:
            ``sparsity/gamma_lt_1e-2``, ``sparsity/gamma_p10``, ``sparsity/gamma_p50`` and ``sparsity/sr``.
        """
        ema = getattr(self.trainer, "ema", None)
        model = ema.ema if ema is not None else self.trainer.model
        magnitudes = gamma_magnitudes(model)
        stats = gamma_statistics(model)
        self._record_histogram(magnitudes)
        sr = self.current_sr()
        LOGGER.info(
            f"sparsity: epoch {self.epoch + 1} sr={sr:.4g}, {stats['fraction_below']:.1%} of {stats['count']} "
            f"prunable |γ| < {SPARSE_THRESHOLD:g}, median |γ| {stats['p50']:.4g}, 10th percentile {stats['p10']:.4g}"
        )
        return {
            f"{PREFIX}gamma_lt_1e-2": stats["fraction_below"],
            f"{PREFIX}gamma_p10": stats["p10"],
            f"{PREFIX}gamma_p50": stats["p50"],
            f"{PREFIX}sr": sr,
        }

    def on_train_end(self, trainer) -> None:
        """Callback: draw ``gamma_histogram.png`` in the run folder from the recorded histograms."""
        histograms = load_histograms(self.histogram_path)
        if histograms:
            path = plot_histograms(histograms, Path(trainer.save_dir) / HISTOGRAM_PNG)
            LOGGER.info(f"sparsity: |γ| distribution per epoch saved to {path}")

    def remove(self) -> None:
        """Stop adding the penalty (the end-of-training plot callback stays registered)."""
        self.handle.remove()


def attach_sparse_training(trainer) -> SparseTraining:
    """Attach Network Slimming sparse training to a trainer whose ``_setup_train`` has run.

    Args:
        trainer: An Ultralytics ``BaseTrainer`` with ``model``, ``optimizer``, ``args`` (``sr``, ``sr_final``) set.

    Returns:
        The helper; call its :meth:`SparseTraining.epoch_metrics` once per epoch (in ``save_metrics``).
    """
    args = trainer.args
    helper = SparseTraining(trainer)
    schedule = "constant"
    if args.sr_final is not None:
        schedule = f"decaying linearly to {args.sr_final:g} by epoch {trainer.epochs}"
    penalty = (
        f"group penalty (Torch-Pruning GroupNormPruner) sr={args.sr:g} ({schedule}) on {helper.groups} prunable groups"
        if helper.groups
        else f"L1 penalty sr={args.sr:g} ({schedule}) on {len(helper.params)} prunable BatchNorm scales"
    )
    LOGGER.info(f"sparsity: {penalty}, added once per optimizer step after AMP unscaling and gradient clipping")
    warn_adaptive_optimizer(trainer)
    return helper
