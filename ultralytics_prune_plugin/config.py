"""The plugin's own configuration keys: their defaults, their documentation and their checks.

Defaults and a one-line description of every key live in ``cfg/default.yaml``, which ships inside the installed
package as ``ultralytics_prune_plugin/cfg/default.yaml``. This module reads that file and checks values the way
Ultralytics checks its own keys, but with messages that name the key and the values it accepts.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Dict, Tuple

import yaml

METHODS = ("depgraph", "slim")
SPARSE_METHODS = ("group",)  # methods of sparse training only: `yolo sparse method=group`
IMPORTANCES = ("l2", "l1", "lamp", "taylor", "bn", "random")
ALLOCATIONS = ("uniform", "latency")  # allocation= of `yolo prune`: how much each prunable group loses
EXPORT_FORMATS = ("onnx", "openvino")  # formats= of `yolo prune`: what Ultralytics' exporter writes for the run
RUNTIME_NAMES = ("onnxruntime", "openvino", "tensorrt")  # runtime= of `yolo prune`: what times the ONNX artefacts


class PluginArgumentError(ValueError):
    """A plugin key has a value that is not allowed. Its message is one line that names the key."""


def default_cfg_path() -> Path:
    """Return the path of the plugin's default configuration YAML.

    The file is installed inside the package (``ultralytics_prune_plugin/cfg/default.yaml``); in a source checkout
    that was not installed it sits in the top-level ``cfg/`` folder.
    """
    try:
        path = Path(str(resources.files("ultralytics_prune_plugin.cfg").joinpath("default.yaml")))
        if path.is_file():
            return path
    except ModuleNotFoundError:
        pass
    return Path(__file__).resolve().parents[1] / "cfg" / "default.yaml"


@lru_cache(maxsize=None)
def plugin_defaults() -> Dict[str, Any]:
    """Return the plugin keys and their default values, as read from the default YAML."""
    with open(default_cfg_path(), encoding="utf-8") as f:
        return dict(yaml.safe_load(f))


@lru_cache(maxsize=None)
def plugin_docs() -> Dict[str, str]:
    """Return the one-line description of every plugin key, taken from the comments of the default YAML."""
    docs = {}
    for line in default_cfg_path().read_text(encoding="utf-8").splitlines():
        match = re.match(r"^(\w+):[^#]*#\s*(.*)$", line)
        if match:
            docs[match.group(1)] = match.group(2).strip()
    return docs


@dataclass(frozen=True)
class _Rule:
    """How one key is checked: the converter for its type and the condition on its value."""

    kind: str  # 'float', 'int', 'int_or_auto', 'bool', 'choice', 'str', 'formats' ('a,b'), 'layer_rates' ({index: rate}), 'layers' ([index, ...])
    allowed: str  # the allowed values, as the error message words them
    check: Callable[[Any], bool] = lambda v: True
    optional: bool = False  # None (an empty YAML value or 'key=None') is allowed


_RULES: Dict[str, _Rule] = {
    "method": _Rule(
        "choice",
        "one of " + ", ".join(f"'{m}'" for m in METHODS + SPARSE_METHODS) + " ('group': sparse training only)",
        lambda v: v in METHODS + SPARSE_METHODS,
    ),
    "rate": _Rule("float", "a number with 0 < rate < 1", lambda v: 0.0 < v < 1.0),
    "iterative_steps": _Rule("int", "an integer >= 1", lambda v: v >= 1),
    "max_map_drop": _Rule("float", "a number >= 0", lambda v: v >= 0.0),
    "round_to": _Rule("int_or_auto", "an integer >= 1, 'auto' (measured on 'runtime' where the run measures latency) "
                      "or None", lambda v: v == "auto" or v >= 1, optional=True),
    "min_channels": _Rule("int", "an integer >= 1", lambda v: v >= 1),
    "target_macs": _Rule(
        "float", "a fraction of the input's MACs, 0 < target_macs < 1 (for an absolute target use target_gmacs), or None",
        lambda v: 0.0 < v < 1.0, True,
    ),
    "target_gmacs": _Rule("float", "a number of GMACs > 0, or None", lambda v: v > 0.0, True),
    "target_speedup": _Rule(
        "float", "a speed-up > 1 measured on 'runtime', e.g. 2.0, or None", lambda v: v > 1.0, True,
    ),
    "target_latency": _Rule("float", "a latency in milliseconds > 0 measured on 'runtime', or None", lambda v: v > 0.0, True),
    "importance": _Rule("choice", "one of " + ", ".join(f"'{m}'" for m in IMPORTANCES), lambda v: v in IMPORTANCES),
    "global_pruning": _Rule("bool", "True or False"),
    "allocation": _Rule("choice", "one of " + ", ".join(f"'{a}'" for a in ALLOCATIONS), lambda v: v in ALLOCATIONS),
    "max_layer_rate": _Rule("float", "a number with 0 < max_layer_rate < 1", lambda v: 0.0 < v < 1.0),
    "isomorphic": _Rule("bool", "True or False"),
    "layer_rates": _Rule(
        "layer_rates", "a dict of layer index (int >= 0) to rate (0 <= rate < 1), e.g. {2: 0.3, 8: 0.7}, or None",
        lambda v: all(k >= 0 and 0.0 <= r < 1.0 for k, r in v.items()), True,
    ),
    "ignore_layers": _Rule(
        "layers", "a list of layer indices (ints >= 0), e.g. [0, 1], or None", lambda v: all(i >= 0 for i in v), True
    ),
    "prune_head": _Rule("bool", "True or False"),
    "recalibrate_bn": _Rule("bool", "True or False"),
    "distill": _Rule("bool", "True or False"),
    "teacher": _Rule("str", "the path of a .pt checkpoint, or None", lambda v: bool(v), True),
    "distill_weight": _Rule("float", "a number >= 0", lambda v: v >= 0.0),
    "sparse": _Rule("bool", "True or False"),
    "sr": _Rule("float", "a number >= 0", lambda v: v >= 0.0),
    "sr_final": _Rule("float", "a number >= 0, or None", lambda v: v >= 0.0, optional=True),
    "fast_dfl": _Rule("bool", "True or False"),
    "formats": _Rule(
        "formats", "a comma-separated list of " + ", ".join(f"'{f}'" for f in EXPORT_FORMATS) + ", e.g. onnx,openvino",
        lambda v: bool(v) and all(f in EXPORT_FORMATS for f in parse_formats(v)),
    ),
    "runtime": _Rule(
        "choice", "one of " + ", ".join(f"'{r}'" for r in RUNTIME_NAMES), lambda v: v in RUNTIME_NAMES
    ),
    "threads": _Rule("int", "an integer >= 1, or None (the runtime's default)", lambda v: v >= 1, optional=True),
}


def parse_formats(value: Any) -> Tuple[str, ...]:
    """``"onnx,openvino"`` (or a list) -> ``("onnx", "openvino")``: lower case, in order, each once."""
    items = value.split(",") if isinstance(value, str) else list(value or [])
    seen: list = []
    for item in (str(i).strip().lower() for i in items):
        if item and item not in seen:
            seen.append(item)
    return tuple(seen)


def _convert(key: str, value: Any, rule: _Rule) -> Any:
    """Convert ``value`` to the type ``rule`` asks for, raising PluginArgumentError when it cannot be."""
    bad = PluginArgumentError(f"'{key}={value}' is not valid: '{key}' must be {rule.allowed}.")
    if rule.kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {"true", "false"}:
            return value.lower() == "true"
        raise bad
    if rule.kind == "choice":
        return value.lower() if isinstance(value, str) else value
    if rule.kind == "formats":
        if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            return ",".join(parse_formats(value))
        if isinstance(value, str):
            return ",".join(parse_formats(value))
        raise bad
    if rule.kind == "str":
        if isinstance(value, (str, Path)):
            return str(value)
        raise bad
    if rule.kind in ("layer_rates", "layers"):
        return _convert_layers(rule.kind, _literal(value), bad)
    if isinstance(value, bool):
        raise bad
    if rule.kind == "int_or_auto" and isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    if rule.kind in ("int", "int_or_auto"):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, int):
            return value
        raise bad
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    raise bad


def _literal(value: Any) -> Any:
    """Parse a dict or list given as text (a ``cfg=`` file or Python may give the object itself)."""
    if isinstance(value, str):
        import ast

        try:
            return ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return value
    return value


def _is_index(value: Any) -> bool:
    """True for an int (or an integral float), not a bool."""
    return not isinstance(value, bool) and (isinstance(value, int) or (isinstance(value, float) and value.is_integer()))


def _convert_layers(kind: str, value: Any, bad: PluginArgumentError) -> Any:
    """Convert a ``layer_rates`` dict (``{index: rate}``) or an ``ignore_layers`` list (``[index, ...]``)."""
    if kind == "layers":
        items = [value] if _is_index(value) else value
        if not isinstance(items, (list, tuple)) or not all(_is_index(i) for i in items):
            raise bad
        return [int(i) for i in items]
    if not isinstance(value, dict) or not all(_is_index(k) for k in value):
        raise bad
    rates = {}
    for k, r in value.items():
        if isinstance(r, bool) or not isinstance(r, (int, float)) or not math.isfinite(r):
            raise bad
        rates[int(k)] = float(r)
    return rates


def check_plugin_args(cfg: Dict[str, Any]) -> Dict[str, Any]:
    """Check and normalise the plugin keys of ``cfg`` in place; other keys are left to Ultralytics.

    Args:
        cfg (dict): A configuration dictionary, as Ultralytics' ``get_cfg`` merges it.

    Returns:
        (dict): The same dictionary, with plugin values converted to their types.

    Raises:
        PluginArgumentError: A one-line message naming the first key whose value is not allowed.
    """
    for key, rule in _RULES.items():
        if key not in cfg:
            continue
        value = cfg[key]
        if value is None or (isinstance(value, str) and value.lower() == "none"):
            if rule.optional:
                cfg[key] = None
                continue
            raise PluginArgumentError(f"'{key}={value}' is not valid: '{key}' must be {rule.allowed}.")
        converted = _convert(key, value, rule)
        if not rule.check(converted):
            raise PluginArgumentError(f"'{key}={value}' is not valid: '{key}' must be {rule.allowed}.")
        cfg[key] = converted
    if cfg.get("mode") == "prune" and "epochs" in cfg:
        cfg["epochs"] = _check_prune_epochs(cfg["epochs"])
    return cfg


def _check_prune_epochs(value: Any) -> int:
    """Check ``epochs`` in prune mode, where 0 is valid (prune only) and Ultralytics' own check asks for >= 1."""
    epochs = value
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        epochs = int(value)
    if isinstance(epochs, float) and epochs.is_integer():
        epochs = int(epochs)
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise PluginArgumentError(
            f"'epochs={value}' is not valid: in prune mode 'epochs' is each step's fine-tune length, an integer >= 0 "
            "(0: prune only, no fine-tune)."
        )
    return epochs


def plugin_keys() -> Tuple[str, ...]:
    """Return the names of all plugin keys."""
    return tuple(plugin_defaults())


def plugin_help() -> str:
    """Return the plugin's keys with their defaults and descriptions, formatted for ``yolo help``."""
    defaults, docs = plugin_defaults(), plugin_docs()
    width = max(len(f"{k}={v}") for k, v in defaults.items())
    return "\n".join(f"        {f'{k}={v}':<{width}}  {docs.get(k, '')}" for k, v in defaults.items())
