"""Review fixes of issue 19, each checked the way it used to fail.

* A prune run that fails before its evaluator exists (before the run folder is chosen) surfaces its own error, not an
  ``AttributeError`` from the cleanup.
* Activation is all-or-nothing: when an adapter's ``apply()`` fails midway, every change already made to Ultralytics
  is undone (checked attribute by attribute in a fresh process) and the failure is reported in one line.
* Errors that used to be swallowed silently: the ones that are expected are still handled, anything else surfaces
  (the ``cfg=`` file read of the CLI checks, the CLI's resume parsing, the ONNX opset guess of old series) or is
  reported in one line (the start-up hook).
* ``max_layer_rate`` caps only global pruning: uniform pruning reaches rates above it, global pruning never passes it,
  and ``clamped_layers`` counts the layers the pruned model has at the cap.

The YOLO26 pose item of the issue (a keypoint shape other than 17 x 3) is covered where the tasks are:
``test_tasks.py::test_pose26_other_keypoint_shape`` (both methods, in-process) and
``test_task_flows.py::test_yolo26_pose_prune_finetune_val`` (`yolo prune` on generated 4 x 3 pose data).
"""

from __future__ import annotations

import types

import pytest
import torch

from conftest import IMGSZ, run_python

pytestmark = pytest.mark.usefixtures("single_thread")


# 1. PruneRun's cleanup ------------------------------------------------------------------------------------------------
class EarlyFailure(RuntimeError):
    """Raised in place of choosing the run folder: nothing of the run exists yet."""


def test_run_failing_before_its_evaluator_opens_raises_its_own_error(monkeypatch, tmp_path):
    from ultralytics import YOLO

    from ultralytics_prune_plugin.engine import prune_run

    def no_folder(args):
        raise EarlyFailure("no run folder")

    monkeypatch.setattr(prune_run, "get_save_dir", no_folder)
    run = prune_run.PruneRun(YOLO("yolov8n.yaml"), {"epochs": 0, "imgsz": IMGSZ, "project": str(tmp_path)})
    assert run.evaluator is None
    with pytest.raises(EarlyFailure, match="no run folder"):  # was: AttributeError from None.close()
        run.run()


# 2. All-or-nothing activation ---------------------------------------------------------------------------------------
# Runs in a fresh interpreter: the start-up hook is taken out, Ultralytics is imported untouched and its patchable
# attributes recorded, then the plugin is imported with its last registration step (the ONNX export's fast_dfl, which
# imports deploy.fast_dfl) made to fail. Every recorded attribute must be the very object it was before.
FAILED_ACTIVATION = r"""
import json, sys, warnings
import _ultralytics_prune_plugin_startup as startup
sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, startup.ActivateAfterUltralyticsImport)]
import ultralytics, ultralytics.cfg as cfg, ultralytics.engine.exporter, ultralytics.engine.model
import ultralytics.engine.tuner, ultralytics.models.yolo.model, ultralytics.nn.tasks, ultralytics.utils
import ultralytics.utils.metrics, ultralytics.utils.torch_utils
assert "ultralytics_prune_plugin" not in sys.modules
owners = {
    "cfg": cfg, "exporter": ultralytics.engine.exporter, "tuner": ultralytics.engine.tuner,
    "tasks": ultralytics.nn.tasks, "metrics": ultralytics.utils.metrics, "torch_utils": ultralytics.utils.torch_utils,
    "Model": ultralytics.engine.model.Model, "YOLO": ultralytics.models.yolo.model.YOLO,
    "Exporter": ultralytics.engine.exporter.Exporter, "DEFAULT_CFG": ultralytics.utils.DEFAULT_CFG,
    "DEFAULT_CFG_DICT": ultralytics.utils.DEFAULT_CFG_DICT,
}
def entries(owner):
    return dict(owner) if isinstance(owner, dict) else dict(vars(owner))
before = {label: entries(owner) for label, owner in owners.items()}
modes = set(cfg.MODES)
sys.modules["ultralytics_prune_plugin.deploy.fast_dfl"] = None  # the last registration step fails on its import
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import ultralytics_prune_plugin
changed = []
for label, owner in owners.items():
    after = entries(owner)
    changed += [f"{label}.{k}" for k in before[label] if k not in after or after[k] is not before[label][k]]
    changed += [f"{label}.{k} (added)" for k in after if k not in before[label]
                and not (type(after[k]).__name__ == "module" and sys.modules.get(after[k].__name__) is after[k])]
if set(cfg.MODES) != modes:
    changed.append("cfg.MODES")
plugin = [str(w.message) for w in caught if "ultralytics-prune-plugin" in str(w.message)]
print(json.dumps({"active": ultralytics_prune_plugin.is_active(), "changed": changed, "warnings": plugin}))
"""


def test_failed_activation_leaves_ultralytics_as_installed(tmp_path):
    import json

    proc = run_python(FAILED_ACTIVATION, cwd=tmp_path)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["changed"] == []  # every patch made before the failure was undone
    assert result["active"] is False
    (message,) = result["warnings"]  # reported once, in one line, with the cause
    assert "\n" not in message and "deploy.fast_dfl halted" in message and "undone" in message and "inactive" in message


# 3. No silent swallowing --------------------------------------------------------------------------------------------
def test_cfg_file_errors_only_of_a_bad_file_are_left_to_ultralytics():
    import yaml
    from ultralytics.utils import DEFAULT_CFG_DICT

    from ultralytics_prune_plugin.integration.cli_checks import check_command

    tokens = ["prune", "model=yolov8n.yaml", "cfg=settings.yaml"]

    def reader(error):
        def read(path):
            raise error
        return read

    for expected in (FileNotFoundError("settings.yaml"), AssertionError("not a YAML file"), yaml.YAMLError("bad")):
        check_command("prune", tokens, DEFAULT_CFG_DICT, {"prune"}, reader(expected))  # Ultralytics reports these
    with pytest.raises(KeyError, match="a bug in the reader"):  # was: swallowed
        check_command("prune", tokens, DEFAULT_CFG_DICT, {"prune"}, reader(KeyError("a bug in the reader")))


def test_resume_parsing_skips_only_keys_without_a_value(monkeypatch, tmp_path):
    import ultralytics.cfg as cfg

    from ultralytics_prune_plugin.config import PluginArgumentError
    from ultralytics_prune_plugin.integration.cli import _check_plugin_mode_inputs

    argv = ["prune", "resume", f"project={tmp_path}", "batch="]  # 'batch=' is Ultralytics' to report
    with pytest.raises(PluginArgumentError, match="found no unfinished prune run"):
        _check_plugin_mode_inputs(argv)

    def broken(pair):
        raise TypeError("a bug in the parser")

    monkeypatch.setattr(cfg, "parse_key_value_pair", broken)
    with pytest.raises(TypeError, match="a bug in the parser"):  # was: skipped, then 'no unfinished prune run'
        _check_plugin_mode_inputs(argv)


def test_onnx_opset_guess_falls_back_only_when_it_finds_no_opset():
    from ultralytics_prune_plugin.adapters.compat import ONNX_DEFAULT_OPSET, fix_onnx_export

    def exporter(error):
        module = types.ModuleType("exporter")

        def get_latest_opset():
            raise error
        module.get_latest_opset = get_latest_opset
        return module

    nothing_found = exporter(ValueError("max() iterable argument is empty"))  # newer torch: no symbolic_opset*
    fix_onnx_export(nothing_found)
    assert nothing_found.get_latest_opset() == ONNX_DEFAULT_OPSET
    with pytest.raises(RuntimeError, match="a bug in the guess"):  # was: swallowed, opset 17 taken silently
        fix_onnx_export(exporter(RuntimeError("a bug in the guess")))


# The start-up hook may not raise, but it says in one line when it cannot do its work: a broken sys.meta_path, and a
# loader of ultralytics that takes no new attribute (the hook cannot wrap it, so the plugin is not activated).
STARTUP_FAILURES = r"""
import importlib.machinery, json, sys, warnings
import _ultralytics_prune_plugin_startup as startup
sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, startup.ActivateAfterUltralyticsImport)]
saved, sys.meta_path = sys.meta_path, tuple(sys.meta_path)  # no insert(): install() fails
with warnings.catch_warnings(record=True) as install_warnings:
    warnings.simplefilter("always")
    startup.install()
sys.meta_path = saved

class Sealed:  # a loader that takes no new attribute
    __slots__ = ("inner",)
    def __init__(self, inner):
        self.inner = inner
    def create_module(self, spec):
        return self.inner.create_module(spec)
    def exec_module(self, module):
        self.inner.exec_module(module)

class SealedFinder:
    def find_spec(self, name, path=None, target=None):
        if name != "ultralytics":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        spec.loader = Sealed(spec.loader)
        return spec

sys.meta_path[:0] = [startup.ActivateAfterUltralyticsImport(), SealedFinder()]
with warnings.catch_warnings(record=True) as import_warnings:
    warnings.simplefilter("always")
    import ultralytics
print(json.dumps({
    "install": [str(w.message) for w in install_warnings],
    "import": [str(w.message) for w in import_warnings if "ultralytics-prune-plugin" in str(w.message)],
    "active": "ultralytics_prune_plugin" in sys.modules,
}))
"""


def test_startup_hook_failures_are_reported_in_one_line(tmp_path):
    import json

    proc = run_python(STARTUP_FAILURES, cwd=tmp_path)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    (install,) = result["install"]  # was: nothing
    assert install.startswith("ultralytics-prune-plugin: the start-up hook failed (AttributeError")
    assert "\n" not in install
    (hook,) = result["import"]  # was: nothing, and the plugin silently inactive
    assert "cannot wrap the loader of ultralytics" in hook and "inactive" in hook and "\n" not in hook
    assert result["active"] is False  # Ultralytics imported as installed


# 5. max_layer_rate caps global pruning only, and clamped_layers is measured ----------------------------------------
def _prunable_widths(weights) -> dict:
    """Output width of every prunable convolution of a checkpoint's model, by unsplit name."""
    from ultralytics_prune_plugin.engine.checkpoint import load_model
    from ultralytics_prune_plugin.pruning.depgraph import prepare_for_pruning
    from ultralytics_prune_plugin.pruning.policy import prunable_convs

    return {name: conv.out_channels for name, conv in prunable_convs(prepare_for_pruning(load_model(weights)))}


def _prune_yolov8n(tmp_path, name, **keys):
    """Prune an untrained yolov8n in-process (no data, no fine-tune); return the report and the widths before/after."""
    from ultralytics import YOLO

    torch.manual_seed(0)
    report = YOLO("yolov8n.yaml").prune(epochs=0, imgsz=IMGSZ, project=str(tmp_path), name=name, **keys)
    return report, _prunable_widths(report["baseline"]["weights"]), _prunable_widths(report["final"]["weights"])


def test_uniform_rate_above_max_layer_rate_is_reached(tmp_path):
    """rate=0.9 with the default max_layer_rate=0.8: every layer keeps 10 % (nearest multiple of round_to=8, at least
    one); the cap used to hold every layer at 20 %."""
    report, before, after = _prune_yolov8n(tmp_path, "uniform", rate=0.9, iterative_steps=1, round_to=8)
    assert report["args"]["max_layer_rate"] == 0.8 and before.keys() == after.keys()
    for name, width in before.items():
        assert after[name] == 8 or abs(after[name] - 0.1 * width) <= 8 / 2, (name, width, after[name])
    assert after["model.9.cv2.conv"] == 24  # 256 channels: 25.6 → 24 (under the cap: 48)


def test_global_pruning_stays_within_max_layer_rate_and_counts_the_layers_at_it(tmp_path):
    """Global ranking over two steps: no layer loses more than max_layer_rate of the input's channels (round_to=8 rounds
    up where the nearest multiple would pass it), and the last step's clamped_layers is the number of layers that
    cannot lose one more multiple of round_to without passing it."""
    cap, unit = 0.7, 8
    report, before, after = _prune_yolov8n(
        tmp_path, "global", rate=0.6, iterative_steps=2, global_pruning=True, max_layer_rate=cap, round_to=unit
    )
    assert before.keys() == after.keys() and len(report["steps"]) == 2
    reached = {name: 1 - after[name] / before[name] for name in before}
    assert max(reached.values()) <= cap + 1e-9, max(reached.items(), key=lambda item: item[1])
    at_cap = [name for name in before if after[name] - unit < before[name] * (1 - cap)]
    assert at_cap, "no layer reached the cap: the test would not check the count"
    assert report["steps"][-1].get("clamped_layers", 0) == len(at_cap)
    assert sum(after.values()) < 0.6 * sum(before.values())  # the ranking did prune (the cap is not the only limit)
