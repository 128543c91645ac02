"""Command-line checks for ``yolo prune`` / ``yolo sparse`` that run before Ultralytics parses the command.

Nothing here depends on one Ultralytics version: the command line (:mod:`.cli`) passes in what the installed series
knows (the valid keys, the bare words its entrypoint accepts, its help text). The checks turn the two ways a new user
most often starts wrong into one line each, with no traceback:

* a key Ultralytics does not know (``ratee=0.5``): one line per key, with the similar keys that Ultralytics' own
  ``check_dict_alignment`` would suggest (the same ``difflib.get_close_matches`` matching);
* no ``model=``: Ultralytics would fall back to ``yolov8n.pt`` and try to download it; the plugin never downloads
  checkpoints, so the model is required.
"""

from __future__ import annotations

import sys
from difflib import get_close_matches
from typing import Any, Callable, Iterable, List, Mapping, Optional

from ultralytics_prune_plugin.config import PluginArgumentError

ERROR_PREFIX = "ERROR ❌ "
# Ultralytics' special commands (``yolo help``, ``yolo -h``, ...): valid without '=', whatever the mode.
SPECIAL_WORDS = ("help", "h", "checks", "check", "c", "version", "v", "settings", "setting", "s", "cfg", "hub", "login",
                 "l", "copy-cfg", "explorer", "e")


class PluginArgumentErrors(PluginArgumentError):
    """Several bad arguments at once; each message is one line (see :func:`print_error`)."""

    def __init__(self, lines: List[str]):
        """Keep ``lines``, one message per bad argument."""
        super().__init__("\n".join(lines))
        self.lines = list(lines)


def print_error(error: PluginArgumentError, file=None) -> None:
    """Print a plugin argument error to stderr: one ``ERROR ❌`` line per bad argument, no traceback."""
    lines = getattr(error, "lines", None) or [str(error)]
    for line in lines:
        print(f"{ERROR_PREFIX}{line}", file=file or sys.stderr)


def unknown_key_lines(tokens: Iterable[str], known: Mapping[str, Any], bare_words: Iterable[str] = ()) -> List[str]:
    """Return one message per argument that is not a valid key, each with Ultralytics' similar-argument suggestion.

    Args:
        tokens: The command-line arguments after ``yolo``, with spaces around ``=`` already merged.
        known: The valid keys and their defaults (Ultralytics' defaults plus the plugin's).
        bare_words: Words that are valid without ``=`` (tasks, modes, special commands, ``resume``).

    Returns:
        (list[str]): The messages, in the order of the command line; empty when every key is known.
    """
    bare = {*bare_words, *SPECIAL_WORDS}
    lines, seen = [], set()
    for token in tokens:
        token = token[2:] if token.startswith("--") else token
        token = token[:-1] if token.endswith(",") else token
        if "=" in token:
            key = token.split("=", 1)[0]
        elif token in bare or token.lstrip("-").lower() in bare or isinstance(known.get(token), bool):
            continue
        else:
            key = token
        if key in known or key in seen:
            continue
        seen.add(key)
        # Ultralytics' check_dict_alignment matches alike but raises one multi-line SyntaxError for all keys, with
        # its help text; the plugin's modes need one line per key and no traceback
        matches = [f"{k}={known[k]}" if known.get(k) is not None else k for k in get_close_matches(key, list(known))]
        hint = f" Similar arguments are i.e. {matches}." if matches else " See all keys with 'yolo cfg'."
        lines.append(f"'{key}' is not a valid YOLO argument.{hint}")
    return lines


def require_model(mode: str, given: Mapping[str, Any], resumed: bool) -> None:
    """Refuse a plugin command without ``model=`` (Ultralytics would try to download ``yolov8n.pt``).

    Args:
        mode: ``'prune'`` or ``'sparse'``.
        given: The keys of the command line, and of its ``cfg=`` file when it has one.
        resumed: The command resumes a run, which knows its own model.

    Raises:
        PluginArgumentError: When no model is named.
    """
    if resumed or given.get("model"):
        return
    if mode == "sparse":
        raise PluginArgumentError(
            "'model' is missing: name a checkpoint to sparse-train (model=best.pt) or a model YAML to train from "
            "scratch (model=yolov8n.yaml); checkpoints are never downloaded"
        )
    raise PluginArgumentError(
        "'model' is missing: 'yolo prune' needs the checkpoint to prune, e.g. model=runs/detect/train/weights/best.pt "
        "(checkpoints are never downloaded)"
    )


def check_command(
    mode: Optional[str],
    tokens: List[str],
    known: Mapping[str, Any],
    bare_words: Iterable[str],
    read_cfg: Callable[[str], Mapping[str, Any]],
    resumed: bool = False,
) -> None:
    """Check a ``yolo prune`` / ``yolo sparse`` command line: unknown keys first, then the model.

    Args:
        mode: The command's mode; other modes are left entirely to Ultralytics.
        tokens: The arguments after ``yolo`` with ``=`` merged.
        known: Valid keys and their defaults.
        bare_words: Words valid without ``=``.
        read_cfg: Reads a ``cfg=`` file into a dict (its keys count as given, a model among them).
        resumed: The command resumes a run.

    Raises:
        PluginArgumentError: One line per unknown key (:class:`PluginArgumentErrors`), or a missing model.
    """
    if mode not in ("prune", "sparse"):
        return
    lines = unknown_key_lines(tokens, known, bare_words)
    if lines:
        raise PluginArgumentErrors(lines)
    from ultralytics_prune_plugin.engine.run_config import note_cfg_epochs

    given = dict(t.split("=", 1) for t in tokens if "=" in t)
    note_cfg_epochs(None)
    if given.get("cfg"):
        import yaml  # Ultralytics' own dependency

        try:
            from_file = read_cfg(given["cfg"]) or {}
        except (OSError, AssertionError, ValueError, yaml.YAMLError):
            # missing, not a .yaml name (AssertionError) or not valid YAML: Ultralytics' own parsing reports it
            from_file = {}
        if not isinstance(from_file, Mapping):  # YAML that is not a mapping: likewise left to Ultralytics
            from_file = {}
        if mode == "prune" and "epochs" in from_file and "epochs" not in {k.lstrip("-") for k in given}:
            note_cfg_epochs((given["cfg"], from_file["epochs"]))
        given = {**from_file, **given}
    require_model(mode, given, resumed)


def help_with_modes(help_text: str, old_modes: str, modes: Iterable[str]) -> str:
    """Return Ultralytics' help text with its list of modes (``old_modes``, as printed) extended by ``modes``."""
    ordered = sorted(set(modes))
    return help_text.replace(old_modes, str(ordered), 1) if old_modes in help_text else help_text
