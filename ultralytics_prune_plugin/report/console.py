"""What a prune run prints: warnings with one prefix, Ultralytics' repeated lines once per run, a short log with
``verbose=False``.

A prune run drives many Ultralytics runs (validations, one training run per fine-tune, exports), and each prints its
own start-up lines. :func:`run_log` keeps, for the whole run, the first of each such repeat (the version banner,
``Fast image access``, the trainer's argument dump, lines each fine-tune prints identically); the progress bars and
each fine-tune's epoch table are kept, and so is each Python warning (torch's, for instance), once. With ``verbose=False`` only the plugin's own lines (``prune: ...``), warnings
and errors are printed, without progress bars. :func:`quiet` hides Ultralytics' lines and bars of internal work
(the training batches behind BatchNorm recalibration and Taylor importance, the baseline's export for timing), and
:func:`hidden` the lines of the run's own validations that the run reports itself (model summary, speed).

:func:`warn` logs a warning with exactly one ``WARNING ⚠️`` at the start of its line: Ultralytics 8.4 adds that
prefix in its log formatter, 8.1 does not.
"""

from __future__ import annotations

import logging
import re
import warnings
from contextlib import contextmanager
from typing import Iterator, Pattern

from ultralytics.utils import LOGGER, colorstr

PREFIX = colorstr("prune: ")
WARNING_PREFIX = "WARNING ⚠️ "
ANSI = re.compile(r"\x1b\[[0-9;]*m")
# A record the plugin logs without its prefix (e.g. a blank line) carries this attribute, so verbose=False keeps it.
PLUGIN_RECORD = "prune_plugin"
# Lines printed once per run whatever their details (timings, throughput): the first one stands for all.
ONCE_PER_RUN = (
    re.compile(r"🚀 Python-"),  # 'Ultralytics 8.4.190 🚀 Python-3.11 torch-2.14 CPU ...' (8.1: 'Ultralytics YOLOv8.1.47')
    re.compile(r"Fast image access"),
    re.compile(r"^engine/trainer: "),  # the fine-tune's arguments: the same for every step but for its name and model
)
# Lines printed once per run when they repeat word for word (each fine-tune prints them again).
ONCE_PER_TEXT = (
    re.compile(r"^Freezing layer "),
    re.compile(r"^optimizer: "),
    re.compile(r"^distillation: "),
    re.compile(r"^AMP: "),
)
# The lines of the run's own validations that it reports itself: the model summary (it logs MACs and params) and
# the speed line.
MODEL_SUMMARY = re.compile(r"summary( \(fused\))?: [\d,]+ layers")
SPEED = re.compile(r"^Speed: ")


def plain(message) -> str:
    """``message`` as text without colour codes or leading newlines."""
    return ANSI.sub("", str(message)).lstrip("\n")


def formatter_adds_warning_prefix() -> bool:
    """Return True when Ultralytics' log handler writes 'WARNING' before a warning itself (8.4 does, 8.1 does not)."""
    record = logging.LogRecord(LOGGER.name, logging.WARNING, __file__, 0, "", None, None)
    return any(
        h.formatter is not None and h.formatter.format(record).lstrip().startswith("WARNING") for h in LOGGER.handlers
    )


def warn(message: str) -> None:
    """Log ``message`` as a warning, with exactly one ``WARNING ⚠️`` at the start of its line.

    Leading newlines become a blank line before the warning (a warning must not start with a newline: Ultralytics
    8.4 would print its prefix alone on the line before).
    """
    body = message.lstrip("\n")
    if len(body) < len(message):
        LOGGER.info("", extra={PLUGIN_RECORD: True})
    LOGGER.warning(body if formatter_adds_warning_prefix() else WARNING_PREFIX + body)


class RunLogFilter(logging.Filter):
    """Drop the repeats of a prune run's log (see the module docstring); with ``verbose=False`` everything but the
    plugin's own lines, warnings and errors."""

    def __init__(self, verbose: bool = True):
        super().__init__()
        self.verbose = verbose
        self.seen = set()

    def filter(self, record: logging.LogRecord) -> bool:
        """Return False for a record that must not be printed."""
        if record.levelno != logging.INFO or not isinstance(record.msg, str):
            return True
        text = plain(record.msg)
        if getattr(record, PLUGIN_RECORD, False) or text.startswith(plain(PREFIX)):
            return True
        if not self.verbose:
            return False
        key = next((p.pattern for p in ONCE_PER_RUN if p.search(text)), None)
        if key is None and any(p.search(text) for p in ONCE_PER_TEXT):
            key = text
        if key is None:
            return True
        if key in self.seen:
            return False
        self.seen.add(key)
        return True


@contextmanager
def run_log(verbose: bool = True) -> Iterator[RunLogFilter]:
    """While a prune run runs: its repeats printed once; with ``verbose=False`` only its own lines, no progress bars.

    Python warnings (e.g. torch's) are shown once per run too: Python's own once-per-place rule is undone each time a
    library changes the warning filters, which Ultralytics 8.1 and its dependencies do in every training run.
    """
    import ultralytics.utils as ultralytics_utils

    log_filter = RunLogFilter(verbose)
    bars = ultralytics_utils.VERBOSE  # Ultralytics' progress bars read it when they start (8.1 to 8.4)
    show = warnings.showwarning
    shown = set()

    def show_once(message, category, filename, lineno, file=None, line=None):
        key = (str(message), category, filename, lineno)
        if key not in shown:
            shown.add(key)
            show(message, category, filename, lineno, file, line)

    LOGGER.addFilter(log_filter)
    warnings.showwarning = show_once
    if not verbose:
        ultralytics_utils.VERBOSE = False
    try:
        yield log_filter
    finally:
        LOGGER.removeFilter(log_filter)
        if warnings.showwarning is show_once:
            warnings.showwarning = show
        ultralytics_utils.VERBOSE = bars


@contextmanager
def quiet() -> Iterator[None]:
    """Hide Ultralytics' lines and progress bars of internal work; warnings and errors still show."""
    import ultralytics.utils as ultralytics_utils

    level, bars = LOGGER.level, ultralytics_utils.VERBOSE
    LOGGER.setLevel(max(level, logging.WARNING))
    ultralytics_utils.VERBOSE = False
    try:
        yield
    finally:
        LOGGER.setLevel(level)
        ultralytics_utils.VERBOSE = bars


class _Hide(logging.Filter):
    """Drop informational records whose text matches one of the patterns."""

    def __init__(self, patterns):
        super().__init__()
        self.patterns = patterns

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or not isinstance(record.msg, str):
            return True
        text = plain(record.msg)
        return not any(p.search(text) for p in self.patterns)


@contextmanager
def hidden(*patterns: Pattern) -> Iterator[None]:
    """Hide the informational lines that match any of ``patterns`` while the block runs."""
    hide = _Hide(patterns)
    LOGGER.addFilter(hide)
    try:
        yield
    finally:
        LOGGER.removeFilter(hide)
