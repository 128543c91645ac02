"""Finding and checking the prune run that ``yolo prune resume=...`` continues.

Ultralytics' own ``resume`` key is reused:

* ``resume=path/to/run`` (the run folder, or any file inside it such as ``prune_report.json``) continues that run.
* ``resume=True`` (or a bare ``resume``) continues the most recent *unfinished* prune run whose recorded arguments
  agree with the ones given: prune run folders (any folder holding a ``prune_report.json``) under ``project``
  (default ``runs/<task>`` for every task, as for a new run), restricted to ``name``, ``name2``, ... when ``name`` is given, newest
  report first. Finished runs and runs whose arguments differ from the given ones are skipped.

A run continues with the arguments it was started with, which its report keeps under ``run_overrides``. Arguments
given again must agree with them; only :data:`MAY_CHANGE` may differ. Only files inside the named run folder are
read: its report and its own checkpoints.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from ultralytics_prune_plugin.config import PluginArgumentError

REPORT = "prune_report.json"
# Keys that only say where the run is: never a conflict when resuming.
LOCATION_KEYS = {"resume", "mode", "task", "project", "name", "exist_ok", "save_dir", "cfg"}
# Keys that may differ on resume (they do not change what the run computes), as Ultralytics allows 'device'.
MAY_CHANGE = {"device", "workers", "verbose"}


def resume_requested(value: Any) -> bool:
    """Return True when ``resume`` asks to continue a run (True or a path), False for False/None/'' ."""
    if value is None or value is False:
        return False
    if isinstance(value, str) and value.strip().lower() in {"", "false", "none"}:
        return False
    return True


def find_run(resume: Any, given: Dict[str, Any]) -> Tuple[Path, Dict[str, Any]]:
    """Return the run folder to continue and its report, checked against the arguments given now.

    Args:
        resume: The value of ``resume``: True, or the path of a prune run folder (or of a file inside it).
        given: The other arguments given now (``model``, ``rate``, ...).

    Returns:
        The run folder as an absolute path, and its report. Absolute, because every path the resumed run writes is
        built from it: Ultralytics 8.4 puts a relative ``project`` (the fine-tunes' ``step_k/``, the training batches'
        ``.batches/``) under ``runs_dir/<task>/``, which would split a run resumed as ``resume=runs/detect/prune3``.

    Raises:
        PluginArgumentError: A one-line message when there is no such run, it cannot be resumed, or ``given``
            contradicts the arguments it was started with.
    """
    if resume is True or (isinstance(resume, str) and resume.strip().lower() == "true"):
        run_dir, report = _latest_run(given)
        return run_dir.resolve(), report
    run_dir = _run_folder(Path(str(resume))).resolve()
    report = read_report(run_dir, f"resume={resume}")
    conflict = conflicts(report, given, run_dir)
    if conflict:
        key, now, before = conflict[0]
        raise PluginArgumentError(
            f"'{key}={now}' conflicts with the run being resumed ({run_dir} was started with {key}={before}): "
            f"leave '{key}' out to resume it, or start a new run without 'resume'"
        )
    return run_dir, report


def _run_folder(path: Path) -> Path:
    """Return the run folder for a path to it or to a file inside it."""
    if path.is_file():
        path = path.parent.parent if path.parent.name == "weights" else path.parent
    if not path.is_dir():
        raise PluginArgumentError(
            f"'resume={path}' is not a folder: pass the folder of an interrupted prune run, e.g. "
            "'resume=runs/detect/prune3', or 'resume=True' for the latest one"
        )
    return path


def read_report(run_dir: Path, what: str) -> Dict[str, Any]:
    """Read a run's report and check that the run can be resumed (``what`` names the argument in messages)."""
    path = run_dir / REPORT
    if not path.is_file():
        raise PluginArgumentError(
            f"'{what}' has no {REPORT}: it is not a 'yolo prune' run folder, or the run stopped before its baseline "
            "was recorded (start it again instead)"
        )
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise PluginArgumentError(f"'{what}': {path} cannot be read ({type(e).__name__}: {e})") from None
    if not isinstance(report, dict) or "run_overrides" not in report or "steps" not in report:
        raise PluginArgumentError(
            f"'{what}': {path} does not hold what a resume needs ('run_overrides'); it was written by another "
            "version of the plugin"
        )
    if "final" in report:
        raise PluginArgumentError(
            f"'{what}' is a finished run ({report['final'].get('weights', 'weights/pruned.pt')}); nothing to resume"
        )
    return report


def _latest_run(given: Dict[str, Any]) -> Tuple[Path, Dict[str, Any]]:
    """The newest unfinished prune run under ``project`` whose arguments agree with ``given``.

    Ultralytics' ``get_latest_run`` returns the newest ``last*.pt`` of any run; a prune run is found by its report,
    must still be unfinished and must have been started with the same arguments, so the search is the plugin's own.
    """
    from ultralytics.utils import ROOT, RUNS_DIR, TESTS_RUNNING

    runs = ROOT.parent / "tests/tmp/runs" if TESTS_RUNNING else RUNS_DIR
    # a run folder is runs/<task>/<name>: look under every task unless 'project' names the folder
    project, pattern_dirs = (Path(given["project"]), "*") if given.get("project") else (Path(runs), "*/*")
    name = given.get("name")
    pattern = re.compile(re.escape(str(name)) + r"\d*$") if name else None
    reports = [p for p in project.glob(f"{pattern_dirs}/{REPORT}") if pattern is None or pattern.match(p.parent.name)]
    for path in sorted(reports, key=lambda p: p.stat().st_mtime, reverse=True):
        try:
            report = read_report(path.parent, "resume=True")
        except PluginArgumentError:
            continue  # finished, or not resumable
        if not conflicts(report, given, path.parent):
            return path.parent, report
    where = f"{project}/{name}*" if name else str(project)
    raise PluginArgumentError(
        f"'resume=True' found no unfinished prune run in {where} started with these arguments; pass its folder "
        "instead, e.g. 'resume=runs/detect/prune3'"
    )


def conflicts(report: Dict[str, Any], given: Dict[str, Any], run_dir: Path) -> List[Tuple[str, Any, Any]]:
    """Return ``(key, given value, original value)`` for every argument in ``given`` that differs from the run's."""
    from ultralytics.cfg import get_cfg
    from ultralytics.utils import DEFAULT_CFG

    stored = report["run_overrides"]
    original = {**stored.get("checkpoint", {}), **stored.get("given", {}), "mode": "prune"}
    found = []
    model = given.get("model")
    if model is not None and not _same_file(model, original.get("model"), run_dir):
        found.append(("model", model, original.get("model")))
    keys = [k for k in given if k not in LOCATION_KEYS | MAY_CHANGE | {"model"}]
    if keys:
        before = get_cfg(DEFAULT_CFG, {k: v for k, v in original.items() if k != "cfg"})
        now = get_cfg(DEFAULT_CFG, {**{k: v for k, v in original.items() if k != "cfg"}, **{k: given[k] for k in keys}})
        for k in keys:
            a, b = getattr(now, k, None), getattr(before, k, None)
            if a != b and not (k == "data" and _same_file(a, b, run_dir)):
                found.append((k, given[k], b))
    return found


def _same_file(a: Any, b: Any, run_dir: Path) -> bool:
    """True when ``a`` and ``b`` name the same file (or ``a`` is the run's own baseline checkpoint)."""
    if a is None or b is None:
        return a == b
    if str(a) == str(b):
        return True
    pa = Path(str(a)).expanduser().resolve()
    if pa == (run_dir / "weights" / "baseline.pt").resolve():
        return True  # the run's own copy of its input model
    return pa == Path(str(b)).expanduser().resolve()


def clean_unfinished(run_dir: Path, steps_done: int) -> List[str]:
    """Remove what an interrupted run left after its last completed step; return the removed paths.

    That is: the training folders ``step_k/``, the validation folders ``val/step_k_*`` and the checkpoints
    ``weights/step_k*.pt`` of every step after ``steps_done``; the final artefacts (``pruned.pt``, ``*.onnx`` and their
    validation folders), which are made again; and temporary files of atomic writes and export staging folders.
    """
    removed = []

    def step_of(name: str, prefix: str) -> Optional[int]:
        match = re.match(re.escape(prefix) + r"(\d+)(?:_|\.pt$|$)", name)
        return int(match.group(1)) if match else None

    candidates = []
    for path in run_dir.iterdir():
        k = step_of(path.name, "step_")
        if path.is_dir() and k is not None and k > steps_done:
            candidates.append(path)
    val = run_dir / "val"
    if val.is_dir():
        for path in val.iterdir():
            k = step_of(path.name, "step_")
            if (k is not None and k > steps_done) or path.name.startswith("pruned_"):
                candidates.append(path)
    weights = run_dir / "weights"
    if weights.is_dir():
        for path in weights.iterdir():
            k = step_of(path.name, "step_")
            stale_final = path.name in {"pruned.pt", "pruned.onnx", "baseline.onnx"}
            temporary = path.name.startswith(".") or path.name.endswith(".tmp")
            if (k is not None and k > steps_done) or stale_final or temporary:
                candidates.append(path)
    candidates += [p for p in run_dir.glob(".*.tmp")]
    for path in candidates:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(str(path))
    return removed


def jsonable_overrides(overrides: Dict[str, Any]) -> Dict[str, Any]:
    """Keep the overrides as JSON values (paths and other objects as strings), for the report."""
    out = {}
    for k, v in overrides.items():
        try:
            json.dumps(v)
            out[k] = v
        except (TypeError, ValueError):
            out[k] = str(v)
    return out
