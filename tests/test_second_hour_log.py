"""What `yolo prune` prints, through the real command (issue 20, points 5, 6, 7 and 11).

* The summary table: every number sits under the column of the model it measures (the ONNX Runtime check and the
  MACs target are lines of their own, not rows whose numbers stand under ``baseline``/``pruned``), both file sizes in
  MiB, the speed-up said once, and no timing of the unpruned model against itself when no step is kept.
* The first line names the key that sets how much is pruned (``target_macs=0.43``, not the unused ``rate``), and
  ``rate`` given together with a MACs target gets one line saying it is not used.
* Every warning has one ``WARNING ⚠️``, at the start of its line (Ultralytics 8.4 adds it in its log formatter, 8.1
  does not), none stands alone on a line, and the dense-γ warning does not advise the optimizer the input used.
* A 2-step run prints Ultralytics' start-up lines once (banner, ``Fast image access``, the trainer's arguments) and
  each ONNX path once, keeps the progress bars and each fine-tune's epoch table, and stays within a line budget
  derived below; ``verbose=False`` prints only the plugin's lines and is far shorter.

Four runs feed the tests: a 2-step distilled run (``rate`` and ``target_macs`` both given), the same run with
``verbose=False`` (target only), a slim run of a 1-epoch SGD sparse-trained input whose budget keeps the unpruned model,
and a run interrupted with Ctrl-C.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time

import pytest

from conftest import FAST, IMGSZ, YOLO, default_ctrl_c, run_yolo, subprocess_env

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
MIB = float(1 << 20)
# A row of the summary table: a label, the baseline's number, the pruned model's number, what changed.
ROW = re.compile(r"^(?P<label>\S.*?)\s{2,}(?P<a>-|[\d,]+(?:\.\d+)?)\s+(?P<b>-|[\d,]+(?:\.\d+)?)(?:\s{2}(?P<change>.*))?$")


def _yolo(*args, cwd) -> str:
    """Run the real `yolo` command as conftest's ``run_yolo`` does and return its output without colour or cursor codes.

    Unlike ``run_yolo`` (text mode, which turns every carriage return into a newline), the output is decoded as is: a
    progress bar redraws its line with carriage returns, and counted as a terminal shows it, it is one line.
    """
    proc = subprocess.run([YOLO, *map(str, args)], cwd=cwd, env=subprocess_env(), capture_output=True, timeout=900)
    out = ANSI.sub("", (proc.stdout + proc.stderr).decode("utf-8", "replace"))
    assert proc.returncode == 0, f"yolo {' '.join(map(str, args))} failed ({proc.returncode}):\n{out[-5000:]}"
    return out


def _lines(out: str) -> list:
    """The printed lines: split at newlines only (a progress bar redraws its line with carriage returns)."""
    return out.split("\n")


def _summary(out: str) -> list:
    """The summary's lines: from its title to the line that says where the results are."""
    lines = _lines(out)
    start = next(i for i, line in enumerate(lines) if line.startswith("prune: summary"))
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("prune: results saved to"))
    return lines[start:end]


def _report(run_dir) -> dict:
    return json.loads((run_dir / "prune_report.json").read_text())


def _prune(cwd, name, *args, model):
    out = _yolo("prune", f"model={model}", f"imgsz={IMGSZ}", "batch=16", "workers=0", *FAST, f"name={name}", *args,
                cwd=cwd)
    run_dir = cwd / "runs" / "detect" / name
    return {"out": out, "dir": run_dir, "report": _report(run_dir)}


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("second_hour_log")


@pytest.fixture(scope="module")
def two_step(trained, dataset, work):
    """2 steps × 1 distilled fine-tune epoch to target_macs=0.43, with rate=0.5 given too."""
    return _prune(work, "two_step", f"data={dataset}", "rate=0.5", "target_macs=0.43", "iterative_steps=2", "epochs=1",
                  model=trained["best"])


@pytest.fixture(scope="module")
def short(trained, dataset, work):
    """The same run with verbose=False and only the target."""
    return _prune(work, "short", f"data={dataset}", "target_macs=0.43", "iterative_steps=2", "epochs=1",
                  "verbose=False", model=trained["best"])


@pytest.fixture(scope="module")
def slim_kept_input(trained, dataset, work):
    """Slim pruning at rate=0.9 of a 1-epoch SGD sparse-trained input (γ still dense), without fine-tuning and with
    max_map_drop=0: the run warns (dense γ, emptied layers, budget) and keeps the unpruned model."""
    run_yolo("train", f"model={trained['best']}", f"data={dataset}", "epochs=1", f"imgsz={IMGSZ}", "batch=16",
             "workers=0", "fraction=0.25", "sparse=True", "sr=0.001", "optimizer=SGD", "lr0=0.001", "warmup_epochs=0",
             "plots=False", *FAST, "name=sparse_sgd", cwd=work)
    sparse = work / "runs" / "detect" / "sparse_sgd" / "weights" / "last.pt"
    return _prune(work, "slim_kept", f"data={dataset}", "method=slim", "rate=0.9", "epochs=0", "max_map_drop=0",
                  model=sparse)


@pytest.fixture(scope="module")
def interrupted(trained, dataset, work):
    """A run stopped with Ctrl-C once its baseline is recorded; its output."""
    run_dir = work / "runs" / "detect" / "interrupted"
    args = [YOLO, "prune", f"model={trained['best']}", f"data={dataset}", "target_macs=0.43", "iterative_steps=2",
            "epochs=1", f"imgsz={IMGSZ}", "batch=16", "workers=0", *FAST, "name=interrupted"]
    log = work / "interrupted.log"
    with open(log, "w") as sink:
        proc = subprocess.Popen(args, cwd=work, env=subprocess_env(), stdout=sink, stderr=subprocess.STDOUT,
                                preexec_fn=default_ctrl_c)
    try:
        deadline = time.time() + 600
        while not (run_dir / "prune_report.json").is_file():
            assert proc.poll() is None and time.time() < deadline, "the run ended before its baseline was recorded"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        # a Ctrl-C that lands in native code is raised when Python resumes; press again, as a user would
        while proc.poll() is None:
            try:
                proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGINT)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    return {"out": ANSI.sub("", log.read_bytes().decode("utf-8", "replace")), "rc": proc.returncode}


# 5. The summary table ------------------------------------------------------------------------------------------------
def _expected_rows(run) -> dict:
    """label -> (baseline column, pruned column) as the report and the files on disk say they must read."""
    report, weights = run["report"], run["dir"] / "weights"
    base, final, onnx = report["baseline"], report["final"], report["onnx"]
    names = report["metrics"]  # the task's metric names: e.g. box mAP50, box mAP50-95
    lat = onnx["latency_ms"]
    rows = {
        "MACs (G)": (f"{base['macs'] / 1e9:.3f}", f"{final['macs'] / 1e9:.3f}"),
        "params": (f"{base['params']:,}", f"{final['params']:,}"),
        names["map50"]: (f"{base['map50']:.4f}", f"{final['map50']:.4f}"),
        names["map50_95"]: (f"{base['map50_95']:.4f}", f"{final['map50_95']:.4f}"),
        # one unit for both files, and the one the label names
        ".pt file (MiB)": tuple(f"{(weights / f'{m}.pt').stat().st_size / MIB:.2f}" for m in ("baseline", "pruned")),
        "ONNX file (MiB)": tuple(f"{(weights / f'{m}.onnx').stat().st_size / MIB:.2f}" for m in ("baseline", "pruned")),
        "ORT CPU latency b1 (ms)": (f"{lat['baseline']['median_ms']:.2f}", f"{lat['pruned']['median_ms']:.2f}"),
    }
    if final.get("rate_requested") is not None:
        rows["channels removed"] = ("0.000", f"{final['rate_reached']:.3f}")
    return rows


def _table(run) -> dict:
    """Every line of the summary laid out as a row (label, two numbers, change), by label."""
    rows = {}
    for line in _summary(run["out"]):
        match = ROW.match(line)
        if match:
            assert match["label"] not in rows, f"two rows labelled {match['label']!r}"
            rows[match["label"]] = match
    return rows


def test_every_summary_number_is_under_the_model_it_measures(two_step):
    """Only the rows that measure the baseline and the pruned model have numbers in those columns, and each number
    is the report's (or the file's) for that model: nothing else (the ONNX check, the MACs goal) sits there."""
    expected, table = _expected_rows(two_step), _table(two_step)
    assert set(table) == set(expected), "\n".join(_summary(two_step["out"]))
    for label, (a, b) in expected.items():
        assert (table[label]["a"], table[label]["b"]) == (a, b), (label, table[label].group(0))


def test_summary_says_the_speed_up_once_and_explains_the_onnx_check(two_step):
    summary, onnx = "\n".join(_summary(two_step["out"])), two_step["report"]["onnx"]
    said = [line for line in _summary(two_step["out"]) if "faster" in line or "speed-up" in line]
    assert len(said) == 1 and said[0].startswith("ORT CPU latency b1 (ms)"), summary  # not again in rows of its own
    latency = _table(two_step)["ORT CPU latency b1 (ms)"]["change"]
    assert latency.startswith(f"{onnx['speedup']:.2f}× faster"), latency
    assert f"{onnx['speedup_per_macs_cut']:.2f}" in latency
    # the ONNX Runtime check: both back-ends' numbers of the pruned model on one line, saying how they were measured
    check = [line for line in _summary(two_step["out"]) if "ONNX Runtime check" in line]
    assert len(check) == 1 and f"{onnx['onnx_map50_95']:.4f}" in check[0] and f"{onnx['pytorch_map50_95']:.4f}" in check[0]
    assert "batch 1 without rectangular batches" in summary
    assert "MB" not in summary.replace("MiB", "")  # one unit for sizes


def test_summary_names_the_macs_goal_against_what_was_reached(two_step):
    target = two_step["report"]["target_macs"]
    line = next(line for line in _summary(two_step["out"]) if line.startswith("target_macs=0.43"))
    assert f"{target['goal_macs'] / 1e9:.3f}" in line and f"{target['reached_macs'] / 1e9:.3f}" in line
    assert line.endswith(": met" if target["met"] else ": not met"), line


def test_no_step_kept_compares_no_model_with_itself(slim_kept_input):
    """The budget keeps the unpruned model: pruned.pt is the input, timed once, and the table says it is the same
    model instead of calling one model faster or smaller than itself."""
    report = slim_kept_input["report"]
    assert report["kept_step"] == 0 and report["final"]["step"] == 0, report["stop_reason"]
    lat = report["onnx"]["latency_ms"]
    assert lat["pruned"]["median_ms"] == lat["baseline"]["median_ms"] and report["onnx"]["speedup"] == 1.0
    expected, table = _expected_rows(slim_kept_input), _table(slim_kept_input)
    assert set(table) == set(expected)
    for label, row in table.items():
        if label != "channels removed":
            assert row["a"] == row["b"] and row["change"] == "same model", row.group(0)
    summary = "\n".join(_summary(slim_kept_input["out"]))
    assert "no step kept" in summary and "faster" not in summary and "smaller" not in summary, summary


# 6. The first line ---------------------------------------------------------------------------------------------------
def _first_plugin_line(out: str) -> str:
    return next(line for line in _lines(out) if line.startswith("prune: "))


def test_first_line_names_the_target_not_the_unused_rate(two_step, short):
    for run in (two_step, short):
        first = _first_plugin_line(run["out"])
        assert first.startswith("prune: method=depgraph target_macs=0.43") and "rate" not in first, first


def test_rate_with_a_target_is_said_once_to_be_unused(two_step, short):
    said = [line for line in _lines(two_step["out"]) if "rate=0.5 is not used" in line]
    assert len(said) == 1 and "target_macs=0.43" in said[0], said
    assert not [line for line in _lines(short["out"]) if "is not used" in line]  # rate not given: nothing to say


# 7. Warnings ---------------------------------------------------------------------------------------------------------
def _check_warnings(out: str) -> list:
    """Every line that warns starts with one 'WARNING ⚠️ ' and has no other; return those lines."""
    lines = _lines(out)
    assert not [line for line in lines if line.strip() in ("WARNING ⚠️", "WARNING")], out[-3000:]
    warnings = [line for line in lines if "WARNING" in line]
    for line in warnings:
        assert line.startswith("WARNING ⚠️ ") and line.count("WARNING") == 1, line
    return warnings


def test_slim_warnings_have_one_prefix(slim_kept_input):
    warnings = "\n".join(_check_warnings(slim_kept_input["out"]))
    assert "slim pruning: the model was sparse-trained" in warnings  # the dense-γ warning
    assert "rate=0.9 would empty layers" in warnings
    assert "more than max_map_drop=0" in warnings  # the budget stop


def test_dense_gamma_warning_does_not_advise_the_optimizer_the_input_used(slim_kept_input):
    dense = next(line for line in _lines(slim_kept_input["out"]) if "γ is still dense" in line)
    assert "optimizer=SGD)" in dense  # the input's own arguments, as the warning quotes them
    assert "'optimizer=SGD'" not in dense and "adaptive optimizer" not in dense, dense


def test_two_step_warnings_have_one_prefix(two_step):
    assert any("rate=0.5 is not used" in line for line in _check_warnings(two_step["out"]))


def test_ctrl_c_warning_has_its_prefix_on_its_own_line(interrupted):
    assert interrupted["rc"] not in (0, None)
    warnings = _check_warnings(interrupted["out"])
    said = [line for line in warnings if "prune: interrupted" in line]
    assert len(said) == 1 and said[0].startswith("WARNING ⚠️ prune: interrupted."), interrupted["out"][-3000:]
    assert "resume with: yolo prune" in interrupted["out"]


# 11. The length of the log -------------------------------------------------------------------------------------------
# The line budget of a 2-step run with E=1 epoch per fine-tune on a dataset of nc=2 classes, a progress bar counted as
# one line (as a terminal shows it). Not counted: blank lines, the plugin's own lines ('prune: ...', its warnings), its
# summary, and Python warnings (torch's on 8.1, for instance), which must each be printed once. Counted, at most:
#   Ultralytics' start-up lines, once per run: the version banner and 'Fast image access'                     2
#   7 validations the run makes itself (the baseline, each step before and after its fine-tune, PyTorch and
#   ONNX Runtime at batch 1): a dataset scan, the progress bar and the 'all' row each (3 × 7), and ONNX
#   Runtime's 3 backend lines                                                                                  24
#   each fine-tune, an ordinary Ultralytics training run: its set-up (arguments, model, dataset scans, optimizer,
#   distillation, workers, where it logs, ...: 14), per epoch its table header, bar, validation bar and 'all'
#   row (4 × E), its final validation (8 lines, and one row per class): 2 × (14 + 4 + 8 + 2)                    56
#   the export of pruned.onnx: model summary, the exporter's 6 lines, Predict/Validate/Visualize                 12
#   the closing 'Learn more' line                                                                                 1
# The log before issue 20 had 146 such lines: 14 banners, 13 'Fast image access', the training batches' trainer
# and the input's export (for timing) printed in full, each fine-tune's set-up in full.
# A fine-tune that fell below its pruned model is run again at lr0 / 10 (step_k_retry/): each retry is one more
# fine-tune and one more validation of the run's own.
LINE_BUDGET = 2 + 24 + 2 * (14 + 4 * 1 + 8 + 2) + 12 + 1
RETRY_LINES = (14 + 4 * 1 + 8 + 2) + 3
PYTHON_WARNING = re.compile(r"^\S.*\.py:\d+: \w*Warning: ")


def _python_warnings(out: str) -> list:
    """The Python warnings printed (``path.py:line: SomeWarning: text``, each followed by its source line)."""
    return [line for line in _lines(out) if PYTHON_WARNING.match(line)]


def _counted(out: str) -> list:
    """The lines the budget counts: not blank, not the plugin's own, not its summary, not Python warnings (from torch,
    for instance: each printed once, see below)."""
    summary, lines = set(_summary(out)), _lines(out)
    warned = {i + k for i, line in enumerate(lines) if PYTHON_WARNING.match(line) for k in (0, 1)}
    return [line for i, line in enumerate(lines) if line.strip() and line not in summary and i not in warned
            and not line.startswith(("prune: ", "WARNING ⚠️ prune: "))]


def test_two_step_log_prints_repeats_once(two_step):
    out, lines = two_step["out"], _lines(two_step["out"])
    assert len([line for line in lines if "🚀 Python-" in line]) == 1  # the version banner
    assert len([line for line in lines if "Fast image access" in line]) <= 1  # 8.4 prints it, 8.1 does not
    assert len([line for line in lines if line.startswith("engine/trainer: ")]) == 1  # the arguments, once
    baseline_onnx = str(two_step["dir"] / "weights" / "baseline.onnx")
    assert len([line for line in lines if baseline_onnx in line]) == 1, [l for l in lines if baseline_onnx in l]
    assert "ONNX model saved to" not in out  # Ultralytics' exporter says where it saved pruned.onnx
    warned = _python_warnings(out)  # e.g. torch's on 8.1, which Python alone would repeat in every fine-tune
    assert len(warned) == len(set(warned)), warned


def test_two_step_log_keeps_progress_bars_and_epoch_tables_within_its_budget(two_step):
    out = two_step["out"]
    retries = sum("retry_lr0" in step for step in two_step["report"]["steps"])
    # one per fine-tune, retries included
    assert len([line for line in _lines(out) if "Epoch" in line and "GPU_mem" in line]) == 2 + retries
    assert len([line for line in _lines(out) if "mAP50-95)" in line]) >= 7  # validation progress bars
    counted = _counted(out)
    budget = LINE_BUDGET + retries * RETRY_LINES
    assert len(counted) <= budget, f"{len(counted)} lines:\n" + "\n".join(l[:120] for l in counted)


def test_verbose_false_prints_only_the_plugins_lines(two_step, short):
    """verbose=False: the plugin's lines, its summary and warnings; no progress bar, no Ultralytics line."""
    counted = [line for line in _counted(short["out"]) if not line.startswith(("WARNING", "💡"))]  # warnings stay
    assert counted == []
    assert "GPU_mem" not in short["out"] and "mAP50-95)" not in short["out"]  # no epoch table, no progress bar
    assert len(_lines(short["out"])) * 3 < len(_lines(two_step["out"]))
    assert "prune: step 2: " in short["out"] and "prune: summary" in short["out"]
