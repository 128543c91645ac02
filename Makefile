# ultralytics-prune-plugin: `make demo` runs the offline demo, `make test` the test suite, `make bench` the benchmark.
# Each target creates its own virtual environment (.venv) and installs the plugin and its dependencies into it.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_PINS := torch==2.14.1 torchvision==0.29.1

.PHONY: install demo test bench clean

install: $(VENV)/.installed

$(VENV)/.installed: setup.py cfg/default.yaml $(shell find ultralytics_prune_plugin -name '*.py') _ultralytics_prune_plugin_startup.py ultralytics_prune_plugin.pth
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(TORCH_PINS)
	$(BIN)/python -m pip install --quiet ".[test]"
	touch $@

demo: install
	$(BIN)/python -m ultralytics_prune_plugin.demo

test: install
	cd tests && ../$(BIN)/python -m pytest -q -p no:cacheprovider --durations=15 .

bench: install
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) build *.egg-info
