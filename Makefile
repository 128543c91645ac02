# ultralytics-prune-plugin: `make demo` runs the offline demo, `make test` the test suite, `make bench` the benchmark
# (benchmarks/run.py, then the recipes at equal MACs of benchmarks/equal_macs.py and head pruning's speed-up,
# benchmarks/head_speed.py).
# Each target creates the virtual environments it needs and installs the plugin and its dependencies into them.
#
#   .venv-torch torch and torchvision, installed once (the pinned wheels are a CUDA build of about 5.5 GB); every other
#               environment sees them through a .pth file placed after its own site-packages, so pip counts them as
#               installed and each environment's own packages still come first
#   .venv       the plugin installed into a fresh environment together with the pinned latest release (PIN_8.4), so
#               that CI tests the same 8.4.x every day; `pip install .` alone would resolve the newest 8.4.x
#   .venv-8.N   Ultralytics 8.N installed first (the user's own), then the plugin, which must keep that version
#
# `make test` runs the whole suite on 8.1.47 (less LATEST_ONLY); on the latest 8.4 the core flows of every family and every task, 8.2-trained
# checkpoints pruned there and pruned checkpoints loaded without the plugin; and the core YOLOv8 flows on 8.2 and 8.3.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
TORCH_ENV := .venv-torch
PIN_8.1 := 8.1.47
PIN_8.2 := 8.2.103
PIN_8.3 := 8.3.253
PIN_8.4 := 8.4.190
SOURCES := setup.py cfg/default.yaml $(shell find ultralytics_prune_plugin -name '*.py') \
	_ultralytics_prune_plugin_startup.py ultralytics_prune_plugin.pth
PYTEST := -m pytest -q -p no:cacheprovider --durations=10
# On the latest series: the core flows of every family it ships, checkpoints of 8.2 (detect, obb) pruned, and pruned
# checkpoints of every family loaded without the plugin, every task (YOLO11) through the CLI, and the accuracy recipe's
# parts (distillation, importance and allocation, group sparse learning, MACs targets).
LATEST_TESTS := test_series_flows.py test_cross_series.py test_stock_blocks.py test_tasks.py test_task_flows.py \
	test_distillation.py test_importance.py test_group_sparse.py test_target_macs.py \
	test_demo.py test_second_hour_runs.py test_second_hour_inputs.py test_second_hour_log.py test_review_bugs.py \
	test_voc_tiles.py
# A user's second hour on the latest series (issue 20's CLI flows): run there only, which keeps `make test` near its
# time budget; the pure-logic and bug tests of the same files' neighbours run on 8.1 too.
LATEST_ONLY := test_second_hour_runs.py test_second_hour_log.py

.PHONY: install demo test test-latest test-8.1 test-8.2 test-8.3 bench clean

install: $(VENV)/.installed

# Site-packages of an environment's python.
site = $$($(1)/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
# Create the environment $(1) and let it see the shared torch.
define new_env
test -x $(1)/bin/python || $(PYTHON) -m venv $(1)
echo "$(call site,$(TORCH_ENV))" > "$(call site,$(1))/_shared_torch.pth"
$(1)/bin/python -c "import torch, torchvision"
endef

$(TORCH_ENV)/.installed:
	test -x $(TORCH_ENV)/bin/python || $(PYTHON) -m venv $(TORCH_ENV)
	$(TORCH_ENV)/bin/python -m pip install --quiet $(TORCH_PINS)
	touch $@

$(VENV)/.installed: $(SOURCES) $(TORCH_ENV)/.installed
	$(call new_env,$(VENV))
	$(BIN)/python -m pip install --quiet ".[test]" "ultralytics==$(PIN_8.4)"
	$(BIN)/python -c "import ultralytics as u, sys; sys.exit(0 if u.__version__ == '$(PIN_8.4)' else \
		f'expected ultralytics $(PIN_8.4), found {u.__version__}')"
	touch $@

.venv-%/.installed: $(SOURCES) $(TORCH_ENV)/.installed
	$(call new_env,.venv-$*)
	.venv-$*/bin/python -m pip install --quiet "ultralytics==$(PIN_$*)"
	.venv-$*/bin/python -m pip install --quiet ".[test]"
	.venv-$*/bin/python -c "import ultralytics as u, sys; sys.exit(0 if u.__version__ == '$(PIN_$*)' else \
		f'pip install . changed ultralytics $(PIN_$*) to {u.__version__}')"
	touch $@

demo: install
	$(BIN)/python -m ultralytics_prune_plugin.demo

test: test-8.1 test-latest test-8.2 test-8.3

test-8.1: .venv-8.1/.installed
	cd tests && ../.venv-8.1/bin/python $(PYTEST) . $(addprefix --ignore=,$(LATEST_ONLY))

test-latest: install .venv-8.2/.installed
	cd tests && CROSS_SERIES_YOLO=$(CURDIR)/.venv-8.2/bin/yolo ../$(BIN)/python $(PYTEST) $(LATEST_TESTS)

test-8.2 test-8.3: test-%: .venv-%/.installed
	cd tests && ../.venv-$*/bin/python $(PYTEST) test_series_flows.py \
		-k "yolov8 or supported"

bench: install
	$(BIN)/python benchmarks/run.py
	$(BIN)/python benchmarks/equal_macs.py
	$(BIN)/python benchmarks/head_speed.py

clean:
	rm -rf $(VENV) .venv-8.* $(TORCH_ENV) build *.egg-info
