"""The core flows on whichever Ultralytics series is installed, for every model family that series ships.

``make test`` runs this file under each supported series (8.1, 8.2, 8.3, 8.4; see the Makefile): YOLOv8 on 8.1, 8.2
and 8.4, YOLO11 from 8.3 on, YOLO26 from 8.4 on. Each family is trained briefly from its yaml on generated data by the real
``yolo detect train``, then, through the real CLI: sparse training, DepGraph pruning with a fine-tune, a fine-tune
of the pruned model that keeps its structure, val, ONNX export, slim pruning; and for the newest family of the series,
an interrupted prune run and an interrupted fine-tune of a pruned model resumed.
Every checkpoint a prune run writes holds only stock Ultralytics classes (see ``test_stock_blocks.py``).
"""

from __future__ import annotations

import ast
import json
import signal
import subprocess
import time
import zipfile
from pathlib import Path

import pytest

from conftest import FAST, YOLO, kill_between_epoch_saves, run_python, run_yolo, subprocess_env, ultralytics_series
from run_checks import (
    assert_onnx_matches_pytorch,
    assert_run_checkpoints_load_safely,
    assert_sparsity_rows_match,
    safe_load_param_counts,
    steps_recorded,
    ultralytics_has_safe_load,
    val_counts,
    val_metric,
    val_split_counts,
)

IMGSZ = 64
COMMON = (f"imgsz={IMGSZ}", "batch=16", "workers=0", "plots=False", *FAST)
pytestmark = pytest.mark.core  # every series runs these flows for every family it ships


def _families():
    """The model families the installed Ultralytics ships, as (family, yaml) pairs. 8.3 runs YOLO11 only: it shares
    its adapter with 8.4, where YOLOv8 runs the same flows, and YOLOv8 runs them on 8.1 and 8.2 (CI's time)."""
    families = [] if ultralytics_series() == (8, 3) else [("yolov8", "yolov8n.yaml")]
    if ultralytics_series() >= (8, 3):
        families.append(("yolo11", "yolo11n.yaml"))
    if ultralytics_series() >= (8, 4):
        families.append(("yolo26", "yolo26n.yaml"))
    return families


FAMILIES = _families()
# The resume flows run for the newest family a series ships: YOLOv8 on 8.1 and 8.2, YOLO11 on 8.3, YOLO26 on 8.4. So
# each family resumes pruned on one series at least and each series resumes once, without repeating the longest flows
# for every family on every series (CI's time).
RESUMED_FAMILY = FAMILIES[-1][0]


def _resumed_family_only(family):
    if family["family"] != RESUMED_FAMILY:
        pytest.skip(f"the resume flows run for {RESUMED_FAMILY}, the newest family of this series")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A small generated detection dataset."""
    from ultralytics_prune_plugin.data import make_dataset

    return make_dataset(tmp_path_factory.mktemp("series") / "shapes", n_train=32, n_val=8, imgsz=IMGSZ, n_classes=2)


@pytest.fixture(scope="module", params=[yaml for _, yaml in FAMILIES], ids=[family for family, _ in FAMILIES])
def family(request, data, tmp_path_factory):
    """One family, trained for 2 epochs by the real `yolo detect train`, with its own working folder."""
    work = tmp_path_factory.mktemp(request.param.split(".")[0])
    run_yolo("detect", "train", f"model={request.param}", f"data={data}", "epochs=2", *COMMON, "name=base", cwd=work)
    best = work / "runs" / "detect" / "base" / "weights" / "best.pt"
    assert best.is_file()
    family = next(name for name, yaml in FAMILIES if yaml == request.param)
    return {"work": work, "best": best, "data": data, "yaml": request.param, "family": family}


def _params(checkpoint) -> int:
    """Parameter count of a checkpoint's model, loaded in a fresh process through Ultralytics."""
    code = f"from ultralytics import YOLO\nprint(sum(p.numel() for p in YOLO({str(checkpoint)!r}).model.parameters()))"
    return int(run_python(code, cwd=checkpoint.parent).stdout.strip().splitlines()[-1])


def _pickle_bytes(checkpoint) -> bytes:
    """The pickle inside a torch checkpoint (which names every class it needs)."""
    with zipfile.ZipFile(checkpoint) as archive:
        return archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl")))


def test_sparse_training(family):
    run_yolo("sparse", f"model={family['best']}", f"data={family['data']}", "epochs=1", *COMMON, "name=sparse",
             cwd=family["work"])
    assert_sparsity_rows_match(family["work"] / "runs" / "detect" / "sparse", epochs=1, sr=0.01)  # the default sr
    if ultralytics_has_safe_load():  # the sparse-trained checkpoint loads with restricted loading, without the plugin
        last = family["work"] / "runs" / "detect" / "sparse" / "weights" / "last.pt"
        counts = safe_load_param_counts(family["best"], last, imgsz=IMGSZ)
        assert counts[1] == counts[0], counts


def test_depgraph_prune_finetune_val_export(family):
    work, data = family["work"], family["data"]
    run_yolo("prune", f"model={family['best']}", f"data={data}", "rate=0.5", "iterative_steps=1", "epochs=1",
             *COMMON, "name=dg", cwd=work)
    run_dir = work / "runs" / "detect" / "dg"
    report = json.loads((run_dir / "prune_report.json").read_text())
    assert report["final"]["macs"] < 0.6 * report["baseline"]["macs"]  # rate 0.5 removes well over 40 % of MACs
    assert report["onnx"]["onnx_agrees"] is True
    # attention is kept whole and the report says where: YOLO11's C2PSA, YOLO26's too; YOLOv8 has none
    assert bool(report["kept_whole"]) == (family["yaml"] != "yolov8n.yaml"), report["kept_whole"]
    pruned = run_dir / "weights" / "pruned.pt"
    for checkpoint in (pruned, run_dir / "weights" / "step_1.pt", run_dir / "step_1" / "weights" / "best.pt"):
        assert b"ultralytics_prune_plugin" not in _pickle_bytes(checkpoint), f"{checkpoint} needs the plugin to load"
    n_pruned = _params(pruned)
    assert n_pruned == report["final"]["params"]
    assert_run_checkpoints_load_safely(run_dir, n_pruned, IMGSZ)  # without pickle code or the plugin

    # a later fine-tune of the pruned model keeps its structure
    run_yolo("train", f"model={pruned}", f"data={data}", "epochs=1", *COMMON, "name=again", cwd=work)
    assert _params(work / "runs" / "detect" / "again" / "weights" / "best.pt") == n_pruned
    # `yolo val` gives the mAP the run reported for pruned.pt (validated there at the run's batch of 16, rect)
    # and every image and object of the val split (the 2-epoch models have an mAP near zero)
    proc = run_yolo("val", f"model={pruned}", f"data={data}", f"imgsz={IMGSZ}", "batch=16", "workers=0", cwd=work)
    assert val_metric(proc.stdout + proc.stderr) == pytest.approx(report["final"]["map50_95"], rel=0.01, abs=5e-4)
    assert val_counts(proc.stdout + proc.stderr) == val_split_counts(data)
    run_yolo("export", f"model={pruned}", "format=onnx", f"imgsz={IMGSZ}", cwd=work)
    assert_onnx_matches_pytorch(pruned, pruned.with_suffix(".onnx"), IMGSZ)


def test_slim_prune(family):
    work = family["work"]
    run_yolo("prune", f"model={family['best']}", f"data={family['data']}", "method=slim", "rate=0.5", "epochs=0",
             *COMMON, "name=slim", cwd=work)
    report = json.loads((work / "runs" / "detect" / "slim" / "prune_report.json").read_text())
    assert 0.3 < report["slim"]["applied_rate"] <= 0.5
    assert report["final"]["macs"] < report["baseline"]["macs"]


def test_interrupted_prune_resumes(family):
    _resumed_family_only(family)
    work = family["work"]
    args = [YOLO, "prune", f"model={family['best']}", f"data={family['data']}", "rate=0.5", "iterative_steps=2",
            "epochs=1", *COMMON, "name=killed"]
    run_dir = work / "runs" / "detect" / "killed"
    log = work / "killed.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(args, cwd=work, env=subprocess_env(), stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.time() + 600
            while not steps_recorded(run_dir) and proc.poll() is None and time.time() < deadline:
                time.sleep(0.2)
            assert proc.poll() is None, f"the run ended before it could be interrupted:\n{log.read_text()[-3000:]}"
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.wait()
    run_yolo("prune", f"resume={run_dir}", cwd=work)
    report = json.loads((run_dir / "prune_report.json").read_text())
    assert [row["step"] for row in report["steps"]] == [1, 2]
    assert report["resumed"] and report["resumed"][0]["steps_done"] == 1
    assert (run_dir / "weights" / "pruned.pt").is_file()


def test_interrupted_fine_tune_of_a_pruned_model_resumes_pruned(family):
    """`yolo train resume` of an interrupted fine-tune rebuilds the pruned network, not the yaml's unpruned one."""
    _resumed_family_only(family)
    work = family["work"]
    run_yolo("prune", f"model={family['best']}", "rate=0.5", "iterative_steps=1", "epochs=0", f"imgsz={IMGSZ}",
             "name=for_resume", cwd=work)
    pruned = work / "runs" / "detect" / "for_resume" / "weights" / "pruned.pt"
    run_dir = work / "runs" / "detect" / "ft"
    epochs = 20
    args = [YOLO, "train", f"model={pruned}", f"data={family['data']}", f"epochs={epochs}", *COMMON, "name=ft"]
    last, log = run_dir / "weights" / "last.pt", work / "ft.log"
    kill_between_epoch_saves(args, work, last, log)
    done = len((run_dir / "results.csv").read_text().strip().splitlines()) - 1
    assert 1 <= done < epochs
    run_yolo("train", "resume", f"model={last}", cwd=work)
    last_row = (run_dir / "results.csv").read_text().strip().splitlines()[-1]
    assert int(float(last_row.split(",")[0])) == epochs  # the resumed run went on to the last epoch
    assert _params(run_dir / "weights" / "best.pt") == _params(pruned)


def test_installed_series_is_supported():
    import ultralytics

    import ultralytics_prune_plugin
    from ultralytics_prune_plugin.adapters import internals

    assert ultralytics_prune_plugin.is_active()
    major, minor = ultralytics_series()
    assert internals().supports(ultralytics.__version__)
    # the adapters split the supported series between them: every supported minor has exactly one, nothing outside has one
    from ultralytics_prune_plugin.adapters import ultralytics_8_1_8_2, ultralytics_8_3_8_4

    adapters = (ultralytics_8_1_8_2, ultralytics_8_3_8_4)
    for version in ("8.1.0", "8.1.47", "8.2.103", "8.3.0", "8.3.99", "8.4.0", "8.4.190"):
        assert sum(a.supports(version) for a in adapters) == 1, version
    for version in ("8.0.99", "8.5.0", "9.0.0"):
        assert not any(a.supports(version) for a in adapters), version
    assert internals() is next(a for a in adapters if a.supports(f"{major}.{minor}.0"))
    # the stack installed together: every requirement of setup.py is installed, in the range setup.py declares
    assert unmet_requirements(install_requires()) == []


def install_requires() -> list:
    """The ``install_requires`` strings of the repository's setup.py."""
    tree = ast.parse((Path(__file__).resolve().parents[1] / "setup.py").read_text())
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "setup")
    return ast.literal_eval(next(k.value for k in call.keywords if k.arg == "install_requires"))


def unmet_requirements(requirements) -> list:
    """The requirements that the installed distributions do not meet, as "requirement (installed version)"."""
    from importlib.metadata import PackageNotFoundError, version

    from packaging.requirements import Requirement

    unmet = []
    for text in requirements:
        requirement = Requirement(text)
        try:
            installed = version(requirement.name)
        except PackageNotFoundError:
            installed = None
        if installed is None or not requirement.specifier.contains(installed, prereleases=True):
            unmet.append(f"{text} ({installed or 'not installed'})")
    return unmet


@pytest.mark.parametrize("yaml, layer", [("yolo12n.yaml", "A2C2f"), ("yolov10n.yaml", "SCDown"), ("rtdetr-l.yaml", "HGStem")])
def test_unsupported_architectures_are_refused_in_one_line(yaml, layer, tmp_path):
    from ultralytics_prune_plugin.pruning.policy import SUPPORTED_LAYERS

    if ultralytics_series() < (8, 4):
        pytest.skip("these families ship with the latest series")
    assert layer not in SUPPORTED_LAYERS
    proc = run_yolo("prune", f"model={yaml}", "epochs=0", f"imgsz={IMGSZ}", cwd=tmp_path, check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    error = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(error) == 1 and f"has a {layer} layer" in error[0], proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
