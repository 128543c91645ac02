"""Shared fixtures: a generated dataset, a briefly trained detector, and a runner for the real `yolo` command.

Everything runs for real (Ultralytics, torch-pruning, ONNX export, onnxruntime) on tiny inputs. Session fixtures are
built once, in a session temporary folder, and tests copy what they would change. The dataset and the trained detector
are built once for all pytest-xdist workers of the session (:func:`built_once`): the first worker to ask builds them,
the others wait for it and read the same files.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

IMGSZ = 64  # small enough for 2 CPU cores; yolov8n still learns the easy shapes in 10 epochs
# Ultralytics defaults to deterministic=True, which makes CPU training about twice as slow; tests do not need it.
FAST = ("deterministic=False",)
YOLO = shutil.which("yolo", path=os.path.dirname(sys.executable)) or shutil.which("yolo")
# The suite runs offline: Ultralytics must not look for a newer release (it would print "New ... available" or wait
# for the network). Ultralytics 8.1 and 8.4 both read this variable when they are imported, so it is set for this
# process (in-process tests) and passed to every child; users' own runs keep their settings.
OFFLINE = {"YOLO_OFFLINE": "True"}
os.environ.update(OFFLINE)
# Ultralytics settings of the suite's own, so that the series tested one after another (each rewrites the file in its
# own schema) and the user's settings never meet. Runs go to 'runs/' under each command's working folder: a fresh
# settings file would otherwise point runs_dir at the git checkout that holds the virtual environment.
os.environ["YOLO_CONFIG_DIR"] = tempfile.mkdtemp(prefix="prune-plugin-tests-yolo-config-")


def pytest_configure(config):
    """Register the suite's markers and write its Ultralytics settings before any test imports a model."""
    config.addinivalue_line(
        "markers",
        "core: a core flow of every family the installed series ships; `make test` runs only these on the older "
        "series (8.1, 8.2, 8.3) and the whole suite on the pinned latest",
    )
    config.addinivalue_line("markers", "ddp: Ultralytics' own DDP launcher, 2 CPU ranks over gloo (test_ddp.py)")
    config.addinivalue_line(
        "markers", "machine_load: the test checks how cached measurements react to the machine's load (steady_load "
        "leaves it alone)",
    )
    from ultralytics.utils import SETTINGS

    SETTINGS.update({"runs_dir": "runs", "weights_dir": "weights"})


# `make test` runs two xdist workers with `--dist loadfile`: a module is one unit of work, so its module fixtures are
# built once. These modules train one input per family, task or series in a parametrized module fixture, so each
# parameter is a unit of its own: one worker would otherwise run every family's flows while the other idles.
SPLIT_BY_PARAMETER = ("test_series_flows.py", "test_task_flows.py", "test_cross_series.py")
# The longest units (measured with --durations), started first, so that neither worker begins one of them last.
LONGEST_FIRST = ("test_series_flows.py", "test_demo.py", "test_ddp.py", "test_cross_series.py", "test_task_flows.py",
                 "test_second_hour_runs.py", "test_second_hour_log.py", "test_first_hour.py")


def work_unit(nodeid: str) -> str:
    """The xdist unit of a test: its file, plus the first part of its parameter id in SPLIT_BY_PARAMETER's modules."""
    path, _, name = nodeid.partition("::")
    if path.rsplit("/", 1)[-1] in SPLIT_BY_PARAMETER and name.endswith("]"):
        return f"{path}[{name[name.index('[') + 1:-1].split('-')[0]}]"
    return path


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    """Put LONGEST_FIRST's modules first (xdist hands out units in collection order, see pytest_xdist_make_scheduler);
    a stable sort keeps every unit's tests together and in pytest's order."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0].rsplit("/", 1)[-1], len(rank)))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """`--dist loadfile`, with work_unit as the unit and the units in collection order (not by number of tests)."""
    if config.getoption("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class UnitScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid):
            return work_unit(nodeid)

    config.option.loadscopereorder = False
    return UnitScheduling(config, log)


def pytest_unconfigure(config):
    """Remove the suite's settings folder."""
    shutil.rmtree(os.environ["YOLO_CONFIG_DIR"], ignore_errors=True)


def ultralytics_series():
    """The installed Ultralytics series as a tuple, e.g. (8, 4); families and tasks differ between series."""
    import ultralytics

    return tuple(int(part) for part in ultralytics.__version__.split(".")[:2])


@pytest.fixture(scope="module")
def single_thread():
    """Run a module's in-process tensor work on one thread: on 2 shared cores, contended threads are far slower.

    Modules opt in with ``pytestmark = pytest.mark.usefixtures("single_thread")``.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def steady_load(request, monkeypatch):
    """Keep cached latency measurements cached, whatever the machine's load.

    A table measured while the other xdist worker ran is provisional, and would be measured again as soon as the
    machine is quieter (``measure_cache.measure_again``): cache tests would then depend on the other worker's timing.
    Modules that read caches opt in through ``pytestmark``; a test marked ``machine_load`` gets the real behaviour.
    """
    if request.node.get_closest_marker("machine_load") is None:
        from ultralytics_prune_plugin.deploy import measure_cache

        monkeypatch.setattr(measure_cache, "measure_again", lambda other_load: False)
    yield


def randomize_batchnorms(model, seed: int = 1):
    """Give every BatchNorm of ``model`` distinct per-channel statistics and affine parameters, so that swapped or
    shifted channels change the output; return ``model``."""
    import torch
    from torch import nn

    generator = torch.Generator().manual_seed(seed)
    for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
        n = bn.num_features
        bn.weight.data = 0.5 + torch.rand(n, generator=generator)
        bn.bias.data = 0.5 * torch.randn(n, generator=generator)
        bn.running_mean = 0.5 * torch.randn(n, generator=generator)
        bn.running_var = 0.5 + torch.rand(n, generator=generator)
    return model


def subprocess_env(extra=None):
    """The environment for child processes: this one, minus pytest's marker.

    Ultralytics sends runs of any process that sees ``PYTEST_CURRENT_TEST`` to its own package folder instead of
    ``runs/``, so the children must not inherit it.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    return {**env, "PYTHONUNBUFFERED": "1", **OFFLINE, **(extra or {})}


def default_ctrl_c():
    """``preexec_fn`` of a child that a test stops with SIGINT: Ctrl-C as a terminal gives it. A shell without job
    control starts background commands (``make test &``) with SIGINT ignored, every process below inherits that, and
    Python then never installs its KeyboardInterrupt handler."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_yolo(*args, cwd, env=None, check=True, timeout=900):
    """Run the real `yolo` console script in a subprocess and return the CompletedProcess (text, merged env)."""
    full_env = subprocess_env(env)
    proc = subprocess.run(
        [YOLO, *map(str, args)], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"yolo {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def run_python(code, cwd, env=None, check=True, timeout=900):
    """Run ``python -c code`` in a fresh interpreter (no import of the plugin unless the code does it)."""
    full_env = subprocess_env(env)
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"python failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def workdir(tmp_path_factory):
    """A session folder where the `yolo` commands run (their runs/ folders land here)."""
    return tmp_path_factory.mktemp("work")


def built_once(tmp_path_factory, name, build):
    """What ``build(folder)`` returns (JSON-serialisable), built once for the whole session: under pytest-xdist the
    first worker to ask builds it in a folder every worker shares, behind a file lock, and the others read what it
    recorded. Without xdist, in the session's own temporary folder."""
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the workers' folders (popen-gw0, popen-gw1, ...) share it
    record = root / f"{name}.json"
    with FileLock(str(root / f"{name}.lock")):
        if not record.is_file():
            folder = root / name
            shutil.rmtree(folder, ignore_errors=True)  # a build that failed earlier in this session
            folder.mkdir()
            record.write_text(json.dumps(build(folder)))
    return json.loads(record.read_text())


@pytest.fixture(scope="session")
def dataset(tmp_path_factory):
    """Path of the data YAML of a small, easy, generated dataset."""
    from ultralytics_prune_plugin.data import make_dataset

    def build(folder):
        return str(make_dataset(folder / "shapes", n_train=128, n_val=16, imgsz=IMGSZ, n_classes=2))

    return Path(built_once(tmp_path_factory, "dataset", build))


@pytest.fixture(scope="session")
def trained(tmp_path_factory, dataset):
    """A yolov8n trained for a few epochs by the real `yolo detect train` (final validation included); tests read its
    folder and never write into it."""

    def build(folder):
        proc = run_yolo(
            "detect", "train", "model=yolov8n.yaml", f"data={dataset}", "epochs=10", f"imgsz={IMGSZ}", "batch=8",
            "workers=0", "seed=0", "plots=False", "optimizer=AdamW", "lr0=0.005", "scale=0", "translate=0", *FAST,
            "name=base", cwd=folder,
        )
        return {"dir": str(folder / "runs" / "detect" / "base"), "stdout": proc.stdout + proc.stderr}

    built = built_once(tmp_path_factory, "trained", build)
    run_dir = Path(built["dir"])
    return {"best": run_dir / "weights" / "best.pt", "dir": run_dir, "stdout": built["stdout"]}


def kill_between_epoch_saves(args, cwd, last, log, timeout=600):
    """Run a training command and SIGKILL it between two epoch saves: once ``last`` (its last.pt) has been written
    and has stayed unchanged a moment. The output goes to ``log``."""
    import signal
    import subprocess
    import time
    import zipfile

    with open(log, "w") as out:
        proc = subprocess.Popen(args, cwd=cwd, env=subprocess_env(), stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline, seen, still = time.time() + timeout, None, 0.0
            while proc.poll() is None and time.time() < deadline and still < 0.1:
                # a save still being written (paused under load) is not a complete zip yet: its central directory
                # comes last
                stamp = last.stat().st_mtime_ns if last.is_file() and zipfile.is_zipfile(last) else None
                still = still + 0.01 if stamp is not None and stamp == seen else 0.0
                seen = stamp
                time.sleep(0.01)
            assert proc.poll() is None, f"the fine-tune ended before it could be interrupted:\n{log.read_text()[-3000:]}"
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.wait()
