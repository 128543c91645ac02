"""Two ranks of Ultralytics' own multi-GPU launcher on CPU: sparse training, a distilled pruned fine-tune, a resume.

``BaseTrainer.train()`` with ``world_size > 1`` writes the DDP file (``ultralytics.utils.dist.generate_ddp_file``:
the trainer class, its ``vars(args)``, model and callbacks) and runs it through ``torch.distributed.run`` with
``--nproc_per_node 2`` (``generate_ddp_command``); every rank rebuilds the trainer, joins the process group in
``_setup_ddp`` and wraps the model in ``DistributedDataParallel``. That path runs here for real, with 2 processes over
``gloo``. A ``sitecustomize.py`` that the tests write into a temporary folder on the children's ``PYTHONPATH`` (never
part of the plugin) replaces only what needs a CUDA device (see ``SHIM``):

* the device count: on CPU Ultralytics counts 0 devices, so ``train()`` takes the world size from the test
  (launching process) or from ``torch.distributed.run``'s ``WORLD_SIZE`` (ranks), as ``device=0,1`` would give.
  It is set when ``train()`` starts, so the launching process has already set up the integration callbacks
  (``on_pretrain_routine_start``), which with ``device=0,1`` only rank 0 does; rank 0 adds each one once regardless;
* ``_setup_ddp``: instead of ``cuda:LOCAL_RANK``, ``torch.cuda.set_device``, ``TORCH_NCCL_BLOCKING_WAIT`` and the
  NCCL backend, the rank stays on ``cpu`` and joins a ``gloo`` group (same rank, world size);
* ``DistributedDataParallel(device_ids=[device.index])``: ``[None]`` on CPU, which torch refuses, becomes no ids;
* the ranks' final validation (``BaseValidator`` without a trainer) uses ``cuda:current_device()``; it gets ``cpu``.

Not exercised on CPU: AMP (``check_amp`` turns it off on CPU, so no ``GradScaler`` unscaling before the penalty),
NCCL, ``channels_last``, DataLoader worker processes (Ultralytics sets ``workers=0`` on CPU), ``torch.compile``.

The same file records per-rank evidence in ``$PRUNE_DDP_TEST_EVIDENCE/rank<RANK>.json``: the widths and parameter
count each rank trains, and for every optimizer step what was added to each BatchNorm γ gradient between the step's
start and the update (the plugin's L1 term is an optimizer step pre-hook; the evidence hooks run before and after
it). Each command also runs as one plain process with the same file (rank -1), as the reference.

Ultralytics 8.1-8.3 count the devices inside ``train()`` from ``device=``, pass the ranks only the arguments and set
up DDP with other calls; the shim is written for 8.4's set-up, so the tests are skipped there.

Ultralytics 8.4 pickles the trainer for the ranks with ``cloudpickle`` (``generate_ddp_file`` installs it on first
use, which an offline run cannot), so the environment needs ``cloudpickle>=3.1.1``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from conftest import FAST, run_python, run_yolo, ultralytics_series

pytestmark = [
    pytest.mark.ddp,
    pytest.mark.usefixtures("single_thread"),
    pytest.mark.skipif(
        ultralytics_series() < (8, 4),
        reason="the CPU/gloo shim targets Ultralytics 8.4's DDP set-up (world size counted in __init__, the state "
        "file of generate_ddp_file); 8.1-8.3 count devices inside train() and need another shim",
    ),
]

IMGSZ = 64
WORLD = 2
COMMON = (f"imgsz={IMGSZ}", "batch=8", "workers=0", "plots=False", "seed=0", "device=cpu", *FAST)

SHIM = r'''
"""Test-only shim (tests/test_ddp.py): run Ultralytics' DDP set-up on CPU over gloo and record per-rank evidence."""
import os
import sys

_WORLD = os.environ.get("PRUNE_DDP_TEST_WORLD_SIZE")  # read by the launching process only (ranks inherit it)
_EVIDENCE = os.environ.get("PRUNE_DDP_TEST_EVIDENCE")


class _PatchAfterImport:
    """Finds the Ultralytics modules to patch with the other finders and patches each right after it has loaded."""

    def find_spec(self, fullname, path=None, target=None):
        patch = _PATCHES.pop(fullname, None)
        if patch is None:
            return None
        import importlib.util

        sys.meta_path.remove(self)  # find the module with the other finders
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            if _PATCHES:  # more modules to patch
                sys.meta_path.insert(0, self)
        exec_module = spec.loader.exec_module

        def exec_then_patch(module):
            exec_module(module)
            patch(module)

        spec.loader.exec_module = exec_then_patch
        return spec


def _patch_trainer(trainer_module):
    from datetime import timedelta
    from pathlib import Path

    import torch
    import torch.distributed as dist
    from torch.nn.parallel.distributed import DistributedDataParallel as DDP

    rank = int(os.environ.get("RANK", -1))
    local_rank = int(os.environ.get("LOCAL_RANK", -1))
    BaseTrainer = trainer_module.BaseTrainer

    # Device count: device=0,1 would count 2 devices; device=cpu counts 0.
    original_train = BaseTrainer.train

    def train(self):
        if local_rank == -1 and _WORLD:  # the launching process: take Ultralytics' DDP branch
            self.world_size, self.ddp = int(_WORLD), True
        elif local_rank != -1:  # a rank of torch.distributed.run
            self.world_size = int(os.environ["WORLD_SIZE"])
        return original_train(self)

    # _setup_ddp without CUDA: no cuda:LOCAL_RANK device, set_device, TORCH_NCCL_BLOCKING_WAIT or NCCL.
    def _setup_ddp(self):
        self.device, self.accelerator = torch.device("cpu"), None
        dist.init_process_group(backend="gloo", timeout=timedelta(seconds=600), rank=rank, world_size=self.world_size)

    # DistributedDataParallel(device_ids=[self.device.index]) is [None] on CPU, which torch refuses for CPU modules.
    class CpuDistributedDataParallel(DDP):
        def __init__(self, module, device_ids=None, *args, **kwargs):
            super().__init__(module, None if device_ids == [None] else device_ids, *args, **kwargs)

    BaseTrainer.train, BaseTrainer._setup_ddp = train, _setup_ddp
    torch.nn.parallel.DistributedDataParallel = CpuDistributedDataParallel  # the name the trainer calls
    if _EVIDENCE:
        _record_evidence(BaseTrainer, rank, Path(_EVIDENCE))


def _record_evidence(BaseTrainer, rank, folder):
    """Per rank: structure trained, DDP state, and what each optimizer step added to the BatchNorm γ gradients."""
    import json

    import torch
    import torch.distributed as dist
    from torch import nn
    from torch.nn.parallel.distributed import DistributedDataParallel as DDP

    def unwrap(model):
        return model.module if isinstance(model, DDP) else model

    def structure(model):
        model = unwrap(model)
        return {
            "params": sum(p.numel() for p in model.parameters()),
            "widths": [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)],
            "gamma_sum": float(sum(m.weight.detach().double().sum() for m in model.modules()
                                   if isinstance(m, nn.BatchNorm2d))),
        }

    original_setup_train, original_run_callbacks = BaseTrainer._setup_train, BaseTrainer.run_callbacks
    original_do_train = BaseTrainer._do_train

    def _setup_train(self, *args, **kwargs):
        result = original_setup_train(self, *args, **kwargs)
        # Runs before the plugin's _setup_train attaches its penalty hook: this pre-hook sees the gradients first.
        gammas = [m.weight for m in unwrap(self.model).modules() if isinstance(m, nn.BatchNorm2d)]
        state = {"gammas": gammas, "before": None, "steps": [], "setup": structure(self.model)}
        self._ddp_test_evidence = state

        def before_penalty(optimizer, args, kwargs):
            state["before"] = [None if g.grad is None else g.grad.detach().clone() for g in gammas]
            state["values"] = [g.detach().clone() for g in gammas]

        self.optimizer.register_step_pre_hook(before_penalty)
        return result

    def after_penalty_hook(self):
        state = self._ddp_test_evidence

        def after_penalty(optimizer, args, kwargs):
            sr = float(self.args.sr)
            counts = {"penalised": 0, "unchanged": 0, "other": 0, "grad_sum": 0.0}
            for g, before, value in zip(state["gammas"], state["before"], state["values"]):
                if before is None or g.grad is None:
                    continue
                counts["grad_sum"] += float(before.double().sum())  # all-reduced by DDP before any hook
                delta = g.grad - before
                expected = sr * torch.sign(value)
                if torch.equal(delta, torch.zeros_like(delta)):
                    counts["unchanged"] += 1
                elif bool(((delta - expected).abs() <= 1e-6 * (1 + before.abs())).all()):
                    counts["penalised"] += 1
                else:
                    counts["other"] += 1
            try:
                counts["loss_items"] = {k: float(v) for k, v in self.label_loss_items(self.loss_items).items()}
            except Exception as e:  # evidence only; the test reports what is missing
                counts["loss_items"] = repr(e)
            state["steps"].append(counts)

        return after_penalty

    def run_callbacks(self, event):
        if event == "on_train_start" and hasattr(self, "_ddp_test_evidence"):
            # Registered after the plugin's penalty hook, so it runs after it, before the update.
            self.optimizer.register_step_pre_hook(after_penalty_hook(self))
        return original_run_callbacks(self, event)

    def _do_train(self, *args, **kwargs):
        try:
            return original_do_train(self, *args, **kwargs)
        finally:
            state = getattr(self, "_ddp_test_evidence", {})
            criterion = getattr(unwrap(self.model), "criterion", None)
            record = {
                "rank": rank,
                "world_size": self.world_size,
                "backend": dist.get_backend() if dist.is_available() and dist.is_initialized() else None,
                "ddp_wrapped": isinstance(self.model, DDP),
                "device": str(self.device),
                "resume": bool(self.resume),
                "start_epoch": self.start_epoch,
                "epochs": self.epochs,
                "args": {k: str(getattr(self.args, k, None)) for k in ("sparse", "sr", "distill", "teacher", "model")},
                "criterion": type(criterion).__name__,
                "setup": state.get("setup"),
                "end": structure(self.model),
                "steps": state.get("steps", []),
            }
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"rank{rank}.json"
            records = json.loads(path.read_text()) if path.exists() else []
            path.write_text(json.dumps(records + [record]))

    BaseTrainer._setup_train, BaseTrainer.run_callbacks, BaseTrainer._do_train = _setup_train, run_callbacks, _do_train


def _patch_validator(validator_module):
    """A rank's final validation (validator called without a trainer) asks for cuda:current_device(); use its CPU."""
    import torch

    original_backend, original_autobackend = validator_module.get_torch_device_backend, validator_module.AutoBackend

    class NoCudaIndex:
        @staticmethod
        def current_device():
            return 0

    def get_torch_device_backend(device):
        return NoCudaIndex if str(device) == "cuda" else original_backend(device)

    def AutoBackend(*args, device=None, **kwargs):
        device = torch.device("cpu") if device is not None and torch.device(device).type == "cuda" else device
        return original_autobackend(*args, device=device, **kwargs)

    validator_module.get_torch_device_backend, validator_module.AutoBackend = get_torch_device_backend, AutoBackend


_PATCHES = {"ultralytics.engine.trainer": _patch_trainer}
if os.environ.get("LOCAL_RANK"):  # a rank of torch.distributed.run
    _PATCHES["ultralytics.engine.validator"] = _patch_validator
if not any(type(f).__name__ == "_PatchAfterImport" for f in sys.meta_path):
    sys.meta_path.insert(0, _PatchAfterImport())
'''

INTERRUPT = """
import os
from ultralytics import YOLO

model = YOLO({model!r})
model.add_callback("on_model_save", lambda trainer: os._exit(3))  # killed right after epoch 1 wrote last.pt
model.train(data={data!r}, teacher={teacher!r}, epochs=2, imgsz={imgsz}, batch=8, workers=0, plots=False, seed=0,
            device="cpu", deterministic=False, project={project!r}, name="interrupted")
"""


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A folder for the commands, a tiny dataset, and the shim's folder (its ``sitecustomize.py``)."""
    from ultralytics_prune_plugin.data import make_dataset

    assert importlib.util.find_spec("cloudpickle"), (
        "Ultralytics 8.4's DDP launcher pickles the trainer with cloudpickle>=3.1.1: pip install 'cloudpickle>=3.1.1'"
    )
    root = tmp_path_factory.mktemp("ddp")
    data = make_dataset(root / "shapes", n_train=16, n_val=8, imgsz=IMGSZ, n_classes=2)
    shim = root / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(SHIM)
    return {"root": root, "data": data, "shim": shim}


def _yolo(work, label: str, *args, world: int = 0):
    """Run ``yolo *args`` with the shim, as ``world`` DDP ranks (0: one plain process); return its output and the
    evidence records by rank."""
    evidence = work["root"] / "evidence" / label
    shutil.rmtree(evidence, ignore_errors=True)
    env = {
        "PYTHONPATH": os.pathsep.join(p for p in (str(work["shim"]), os.environ.get("PYTHONPATH")) if p),
        "PRUNE_DDP_TEST_EVIDENCE": str(evidence),
        "PRUNE_DDP_TEST_WORLD_SIZE": str(world) if world else "",
    }
    proc = run_yolo(*args, cwd=work["root"], env=env)
    out = proc.stdout + proc.stderr
    records = {}
    for path in evidence.glob("rank*.json"):
        entries = json.loads(path.read_text())
        assert len(entries) == 1, f"{path.name}: {len(entries)} trainings in one process"
        records[int(path.stem[len("rank"):])] = entries[0]
    expected = list(range(world)) if world else [-1]
    assert sorted(records) == expected, f"evidence of ranks {sorted(records)}, expected {expected}:\n{out[-4000:]}"
    if world:
        assert "debug command" in out and "torch.distributed.run" in out, out[-4000:]  # Ultralytics' launcher
    return out, records


def _check_ddp(records: dict) -> None:
    """Both ranks trained in one gloo group with a DDP-wrapped CPU model and stayed replicas of each other."""
    for rank, record in records.items():
        assert (record["world_size"], record["backend"], record["ddp_wrapped"], record["device"]) == (
            WORLD, "gloo", True, "cpu"), f"rank {rank}: {record}"
        assert record["steps"], f"rank {rank} made no optimizer step"
    first, second = records[0], records[1]
    # DDP all-reduced the gradients: both ranks step with the same ones, so their weights stay equal.
    assert [s["grad_sum"] for s in first["steps"]] == pytest.approx([s["grad_sum"] for s in second["steps"]], rel=1e-9)
    assert first["end"]["gamma_sum"] == pytest.approx(second["end"]["gamma_sum"], rel=1e-12, abs=0)


def _same_structure(records: dict, reference: dict) -> None:
    """Every rank trains, and ends with, the widths and parameter count of the single-process run."""
    for rank, record in records.items():
        for stage in ("setup", "end"):
            assert record[stage]["params"] == reference[stage]["params"], f"rank {rank} {stage}"
            assert record[stage]["widths"] == reference[stage]["widths"], f"rank {rank} {stage}"


def _checkpoint_structure(path: Path) -> dict:
    """Parameter count and convolution widths of a checkpoint's model (plain Ultralytics classes); an unfinished
    run's last.pt holds it as ``ema``."""
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    model = ckpt.get("ema") or ckpt["model"]
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "widths": [m.out_channels for m in model.modules() if isinstance(m, torch.nn.Conv2d)],
    }


def _results_rows(run_dir: Path) -> list:
    import csv

    with open(run_dir / "results.csv") as f:
        return [{k.strip(): v.strip() for k, v in row.items()} for row in csv.DictReader(f)]


def test_sparse_training_epoch_under_ddp(work):
    args = ("detect", "train", "model=yolov8n.yaml", f"data={work['data']}", "epochs=1", "nbs=8", "sparse=True",
            "sr=0.01", *COMMON)
    _, single = _yolo(work, "sparse_single", *args, "name=sparse_single")
    _, ddp = _yolo(work, "sparse_ddp", *args, "name=sparse_ddp", world=WORLD)

    reference = single[-1]["steps"]
    prunable = reference[0]["penalised"]
    assert prunable > 0 and all((s["penalised"], s["other"]) == (prunable, 0) for s in reference), reference
    for rank, record in ddp.items():
        assert (record["args"]["sparse"], record["args"]["sr"]) == ("True", "0.01"), record["args"]
        # Every step of every rank added exactly sr * sign(γ) to the gradient of each prunable γ, nothing elsewhere.
        assert len(record["steps"]) == len(reference), f"rank {rank}: {len(record['steps'])} steps"
        assert [(s["penalised"], s["other"]) for s in record["steps"]] == [(prunable, 0)] * len(reference), (
            f"rank {rank}: {record['steps']}")
    _check_ddp(ddp)  # the replicas stay equal only when both ranks add the same penalty
    _same_structure(ddp, single[-1])
    rows = _results_rows(work["root"] / "runs" / "detect" / "sparse_ddp")
    assert len(rows) == 1 and float(rows[0]["sparsity/sr"]) == pytest.approx(0.01), rows


@pytest.fixture(scope="module")
def pruned_runs(work):
    """`yolo prune` with one step whose fine-tune distills from the unpruned input: one process, then 2 ranks."""
    args = ("prune", "model=yolov8n.yaml", f"data={work['data']}", "rate=0.3", "iterative_steps=1",
            "max_map_drop=1.0", "epochs=1", *COMMON)
    runs = {}
    for label, world in (("prune_single", 0), ("prune_ddp", WORLD)):
        out, records = _yolo(work, label, *args, f"name={label}", world=world)
        runs[label] = {"out": out, "records": records, "dir": work["root"] / "runs" / "detect" / label}
    return runs


def test_distilled_pruned_fine_tune_under_ddp(pruned_runs):
    single, ddp = pruned_runs["prune_single"], pruned_runs["prune_ddp"]
    _check_ddp(ddp["records"])
    reference = single["records"][-1]
    _same_structure(ddp["records"], reference)
    start = _checkpoint_structure(ddp["dir"] / "weights" / "step_1_pruned.pt")
    assert start["params"] < 3_000_000  # pruned: yolov8n has 3.16 M
    for rank, record in ddp["records"].items():
        assert record["setup"]["params"] == start["params"] and record["setup"]["widths"] == start["widths"], rank
        assert record["args"]["distill"] == "True" and record["args"]["teacher"].endswith("baseline.pt"), record
        assert record["criterion"] == "DistillationCriterion", f"rank {rank} does not distill: {record['criterion']}"
        kd = [s["loss_items"].get("train/kd_loss") for s in record["steps"]]
        assert all(v is not None and v > 0 for v in kd), f"rank {rank}: {record['steps']}"
        assert all((s["penalised"], s["other"]) == (0, 0) for s in record["steps"]), record["steps"]  # sparse=False
    result, result_single = (_checkpoint_structure(run["dir"] / "weights" / "pruned.pt") for run in (ddp, single))
    assert result == result_single and result == start


def test_resume_of_pruned_fine_tune_under_ddp(work, pruned_runs):
    weights = pruned_runs["prune_single"]["dir"] / "weights"
    project = work["root"] / "runs" / "resume"
    code = INTERRUPT.format(model=str(weights / "pruned.pt"), data=str(work["data"]),
                            teacher=str(weights / "baseline.pt"), imgsz=IMGSZ, project=str(project))
    proc = run_python(code, cwd=work["root"], check=False)
    interrupted = project / "interrupted"
    assert proc.returncode == 3 and len(_results_rows(interrupted)) == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    start = _checkpoint_structure(interrupted / "weights" / "last.pt")
    assert start == _checkpoint_structure(weights / "pruned.pt")

    # The single-process reference resumes a copy, whose last.pt must name the copy as its run folder.
    copy = project / "interrupted_copy"
    shutil.copytree(interrupted, copy)
    ckpt = torch.load(copy / "weights" / "last.pt", map_location="cpu", weights_only=False)
    ckpt["train_args"].update(save_dir=str(copy), name=copy.name)
    torch.save(ckpt, copy / "weights" / "last.pt")

    _, single = _yolo(work, "resume_single", "train", "resume", f"model={copy / 'weights' / 'last.pt'}")
    _, ddp = _yolo(work, "resume_ddp", "train", "resume", f"model={interrupted / 'weights' / 'last.pt'}", world=WORLD)
    _check_ddp(ddp)
    _same_structure(ddp, single[-1])
    for rank, record in {**ddp, **single}.items():
        assert (record["resume"], record["start_epoch"], record["epochs"]) == (True, 1, 2), f"rank {rank}: {record}"
        assert record["setup"]["params"] == start["params"] and record["setup"]["widths"] == start["widths"], rank
        assert record["criterion"] == "DistillationCriterion", f"rank {rank}: the resumed run lost its teacher"
    for run_dir in (interrupted, copy):
        assert len(_results_rows(run_dir)) == 2, run_dir  # epoch 1 before the interruption, epoch 2 resumed
        for name in ("last.pt", "best.pt"):
            assert _checkpoint_structure(run_dir / "weights" / name) == start, run_dir / name
