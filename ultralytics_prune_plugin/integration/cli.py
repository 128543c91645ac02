"""The ``yolo`` command line of the plugin's modes, shared by every supported series.

:func:`register_cli` adds the ``prune`` and ``sparse`` modes, the help text, the ``yolo cfg`` output and one-line
errors for bad plugin arguments, and wraps Ultralytics' entrypoint so that a plugin command's inputs are checked
before Ultralytics loads anything (:func:`_check_plugin_mode_inputs`), including the arguments of
``yolo prune resume=...``.
"""

from __future__ import annotations

import functools
from contextlib import contextmanager
from pathlib import Path

from ultralytics_prune_plugin.adapters.patching import patch_attr, patch_set_add

PLUGIN_MODES = ("prune", "sparse")


def register_cli(series) -> None:
    """Add the modes, the help text, ``yolo cfg`` output and one-line CLI errors for bad plugin arguments."""
    import ultralytics.cfg as cfg
    from ultralytics.utils import DEFAULT_CFG_PATH, LOGGER

    from ultralytics_prune_plugin.config import PluginArgumentError, default_cfg_path, plugin_help
    from ultralytics_prune_plugin.integration.cli_checks import help_with_modes, print_error

    printed_modes = (str(cfg.MODES), str(list(cfg.MODES)))  # how the help text shows them: 8.1-8.3 / 8.4
    if isinstance(cfg.MODES, set):
        patch_set_add(cfg.MODES, PLUGIN_MODES)  # 8.1/8.2: the entrypoint reads this very set
    else:
        modes = type(cfg.MODES)((*cfg.MODES, *(m for m in PLUGIN_MODES if m not in cfg.MODES)))  # tuple, frozenset
        patch_attr(cfg, "MODES", modes)
    help_text = cfg.CLI_HELP_MSG
    for old_modes in printed_modes:
        help_text = help_with_modes(help_text, old_modes, cfg.MODES)
    help_text = help_text.rstrip() + (
        "\n\n    ultralytics-prune-plugin adds the modes 'prune' and 'sparse':\n"
        "        yolo prune model=best.pt data=data.yaml rate=0.5 iterative_steps=16 max_map_drop=0.2 epochs=30\n"
        "        yolo prune model=sparse.pt data=data.yaml method=slim rate=0.5 epochs=30\n"
        "        yolo prune resume=runs/detect/prune3   (continue an interrupted run after its last completed step)\n"
        "        yolo sparse model=best.pt data=data.yaml sr=0.01 epochs=50   (= yolo train sparse=True ...)\n"
        "    and these keys:\n" + plugin_help() + "\n"
    )
    patch_attr(cfg, "CLI_HELP_MSG", help_text)

    def print_plugin_cfg(yaml_file):
        """After Ultralytics prints its defaults (`yolo cfg`), print the plugin keys with their documentation."""
        if Path(yaml_file) == Path(DEFAULT_CFG_PATH):
            path = default_cfg_path()
            LOGGER.info(f"\nPrinting '{path}' (ultralytics-prune-plugin)\n\n{path.read_text(encoding='utf-8')}")

    series.after_cfg_print(print_plugin_cfg)

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

    patch_attr(cfg, "entrypoint", entrypoint)


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

    from ultralytics.utils import DEFAULT_CFG_DICT

    from ultralytics_prune_plugin.adapters import internals
    from ultralytics_prune_plugin.engine.inputs import check_model_file
    from ultralytics_prune_plugin.engine.resume import find_run, resume_requested
    from ultralytics_prune_plugin.integration.cli_checks import check_command

    tokens = cfg.merge_equals_args(list(argv))
    pairs = dict(t.split("=", 1) for t in tokens if "=" in t)
    mode = next((t for t in tokens if t in PLUGIN_MODES), pairs.get("mode"))
    resumed = mode == "prune" and ("resume" in tokens or resume_requested(cfg.smart_value(pairs.get("resume", ""))))
    known = {"int8": False, **DEFAULT_CFG_DICT}  # 8.4: Ultralytics' deprecated alias of quantize=8 (INT8 artefacts)
    check_command(mode, tokens, known, {*cfg.TASKS, *cfg.MODES, "resume"}, internals().load_yaml, resumed)
    if resumed:
        given = {"resume": True} if "resume" in tokens else {}
        for token in tokens:
            if "=" in token:
                try:
                    key, value = cfg.parse_key_value_pair(token)
                except AssertionError:  # 'key=' without a value: Ultralytics' own parsing reports it
                    continue
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
