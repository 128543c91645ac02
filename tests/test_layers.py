"""The plugin's imports point one way: the contracts of ``.importlinter`` (repository root) hold, and can fail.

Layers, top to bottom: integration (and the demo) > engine > deploy | pruning | distill > report | data | nn | tasks
> config > adapters (the compat layer); layers joined by ``|`` are independent of each other. Imports inside
functions count like module-level ones. Further contracts: no circle between modules of the plugin, the series
adapters independent of each other, and the package never imports its start-up hook (which imports
``integration.activation``).

The contracts are checked on the source tree next to this file, by ``lint-imports`` in a subprocess. Each broken
import below is added to a copy of that tree and must break its contract, so the first test cannot pass vacuously.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / ".importlinter"
PACKAGE = "ultralytics_prune_plugin"

pytestmark = pytest.mark.skipif(
    sys.version_info < (3, 10), reason="import-linter's acyclic_siblings contract needs Python >= 3.10"
)

LAYERS = "Layers point one way"
ACYCLIC = "No circle between modules of the plugin"
SERIES = "Each series adapter stands alone"
STARTUP = "The package never imports its start-up hook"


def lint(source_root: Path) -> subprocess.CompletedProcess:
    """Run ``lint-imports`` with the repository's contracts on the package found under ``source_root``."""
    code = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    return subprocess.run(
        [sys.executable, "-c", code, "--config", str(CONFIG), "--no-cache"],
        cwd=source_root,  # '' leads sys.path: this tree's package, not an installed one
        env={**os.environ, "PYTHONPATH": str(source_root), "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=300,
    )


def contract_names() -> list:
    """The names of the contracts in ``.importlinter``."""
    text = CONFIG.read_text(encoding="utf-8")
    sections = re.split(r"^\[importlinter:contract:[^\]]+\]\s*$", text, flags=re.M)[1:]
    return [re.search(r"^name\s*=\s*(.+)$", section, flags=re.M).group(1).strip() for section in sections]


def test_every_contract_is_kept():
    result = lint(ROOT)
    output = result.stdout + result.stderr
    names = contract_names()
    assert {LAYERS, ACYCLIC, SERIES, STARTUP} <= {name.split(":")[0] for name in names}
    assert result.returncode == 0, output
    assert f"Contracts: {len(names)} kept, 0 broken." in output, output


# (module of the package, the line added to it, the contract it breaks)
BROKEN_IMPORTS = [
    ("adapters/compat.py", "from ultralytics_prune_plugin.engine import prune_run", LAYERS),  # compat imports up
    (
        "report/summary.py",  # an import inside a function counts too
        "def upward():\n    from ultralytics_prune_plugin.engine.run_config import PREFIX\n",
        LAYERS,
    ),
    ("deploy/onnx.py", "from ultralytics_prune_plugin.engine import tasks", LAYERS),
    ("pruning/slim.py", "from ultralytics_prune_plugin.distill import losses", LAYERS),  # independent siblings
    ("engine/run_config.py", "from ultralytics_prune_plugin.engine import evaluation", ACYCLIC),  # the old circle
    ("adapters/ultralytics_8_3_8_4.py", "from ultralytics_prune_plugin.adapters import ultralytics_8_1_8_2", SERIES),
    ("config.py", "import _ultralytics_prune_plugin_startup", STARTUP),
]


@pytest.mark.parametrize("module, line, contract", BROKEN_IMPORTS, ids=[m for m, _, _ in BROKEN_IMPORTS])
def test_a_broken_import_breaks_its_contract(tmp_path, module, line, contract):
    shutil.copytree(ROOT / PACKAGE, tmp_path / PACKAGE, ignore=shutil.ignore_patterns("__pycache__"))
    path = tmp_path / PACKAGE / module
    path.write_text(path.read_text(encoding="utf-8") + "\n\n" + line + "\n", encoding="utf-8")
    result = lint(tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    (name,) = [n for n in contract_names() if n.startswith(contract)]
    assert re.search(r"\s+".join(map(re.escape, name.split())) + r"\s+BROKEN", output), output


def test_the_start_up_hook_and_the_package_read_the_same_switch(monkeypatch):
    """The hook keeps its own copy of the switch (importing the package at start-up would activate it)."""
    import _ultralytics_prune_plugin_startup as startup

    from ultralytics_prune_plugin.integration import activation

    assert startup.DISABLE_ENV == activation.DISABLE_ENV
    for value in ("1", "true", " YES ", "on", "0", "", "no", "false", "off"):
        monkeypatch.setenv(activation.DISABLE_ENV, value)
        assert startup.disabled() == activation.disabled(), value


def test_every_series_adapter_offers_the_same_interface():
    """The rest of the plugin calls ``internals().<name>`` without knowing the series: every adapter has every name."""
    import importlib

    from ultralytics_prune_plugin.adapters import SERIES_MODULES

    adapters = [importlib.import_module(f"{PACKAGE}.adapters.{name}") for name in SERIES_MODULES]
    interface = set(adapters[0].__all__)
    assert {"train_images", "val_precision", "onnxruntime_session", "head_branches", "add_loss_term"} <= interface
    for adapter in adapters:
        assert set(adapter.__all__) == interface, adapter.__name__
        assert all(hasattr(adapter, name) for name in interface), adapter.__name__
