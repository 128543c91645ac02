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
# `make test` runs the whole suite on the pinned latest 8.4 first (8.2-trained checkpoints pruned there included), then
# the tests marked `core` (tests/conftest.py) on 8.1, 8.2 and 8.3: the flows of every family each series ships.

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
PYTEST := -m pytest -q -p no:cacheprovider --durations=40
# Two pytest workers, one file each at a time (module fixtures are built once), each on one thread: the tests are
# many small processes that do not use a second core, and two jobs that each take every core slow each other. The
# flows of each family, task and other series are units of their own, and the longest units start first
# (tests/conftest.py: work_unit, LONGEST_FIRST).
PARALLEL := OMP_NUM_THREADS=1
XDIST := -n 2 --dist loadfile

.PHONY: install demo test test-latest test-8.1 test-8.2 test-8.3 test-ddp bench bench-real bench-deploy bench-speedup clean

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
	$(BIN)/python -m pip install --quiet ".[test,openvino]" "ultralytics==$(PIN_8.4)"
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

test: test-latest test-8.1 test-8.2 test-8.3

# The whole suite on the pinned latest release, with checkpoints trained by 8.2 (tests/test_cross_series.py).
test-latest: install .venv-8.2/.installed
	cd tests && $(PARALLEL) CROSS_SERIES_YOLO=$(CURDIR)/.venv-8.2/bin/yolo ../$(BIN)/python $(PYTEST) $(XDIST) .

# The older series: the tests marked `core` (the flows of every family the series ships, activation, multi-GPU rebuild).
test-8.1 test-8.2 test-8.3: test-%: .venv-%/.installed
	cd tests && $(PARALLEL) ../.venv-$*/bin/python $(PYTEST) $(XDIST) -m core .

# Ultralytics' own DDP launcher with 2 CPU ranks over gloo (also part of test-latest).
test-ddp: install
	cd tests && ../$(BIN)/python $(PYTEST) -m ddp .

bench: install
	$(BIN)/python benchmarks/run.py
	$(BIN)/python benchmarks/equal_macs.py
	$(BIN)/python benchmarks/head_speed.py

# Real photographs (benchmarks/real_*.py), from nothing: fetch the deepforest wheel and tile its photographs, train
# the inputs from yaml to convergence (0.2-2 h each on one core; resumable), prune them, and write
# benchmarks/results_real.md with its plots and the side-by-side example image. Prune big or train small runs at 160 px
# (the s models at 320 px train for hours) and once at 320 px with a yolov8s that starts from its 160-px weights.
bench-real: install
	$(BIN)/python benchmarks/real_data.py
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/real_inputs.py yolov8n yolo11n yolo26n
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/real_inputs.py --imgsz 160 yolov8s yolov8n yolo11s yolo11n
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/real_inputs.py --init yolov8s_160 yolov8s
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/real_prune.py --models yolov8n --parts continue
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/real_prune.py --models yolov8n yolo11n yolo26n --parts recipe
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/real_prune.py --models yolov8n yolo11n yolo26n --parts latency retime --latency-threads 1
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/real_prune.py --models yolov8n yolo11n yolo26n --parts seeds --jobs 2
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/real_prune.py --imgsz 160 --big yolov8s yolo11s --parts bigsmall
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/real_prune.py --big yolov8s_from_yolov8s_160 --parts bigsmall
	$(BIN)/python benchmarks/real_images.py

# Deployable artefacts (benchmarks/deploy.py) of the real-data yolov8n input and its MACs-targeted pruned model (made by
# bench-real): ONNX and OpenVINO, FP32 and INT8, mAP at the training size, timed at 640 px on 1 and all threads.
# Writes benchmarks/results_deploy.md, .json and the mAP-against-latency plot. Skips when the inputs are missing.
BENCH_REAL ?= runs/bench_real
DEPLOY_PRUNED ?= $(BENCH_REAL)/runs/default_yolov8n_0.5/weights/pruned.pt
bench-deploy: install
	@if [ -f $(BENCH_REAL)/inputs/yolov8n/weights/best.pt ] && [ -f $(DEPLOY_PRUNED) ]; then \
		$(BIN)/python benchmarks/deploy.py stock=$(BENCH_REAL)/inputs/yolov8n/weights/best.pt \
			pruned_macs=$(DEPLOY_PRUNED) --data $(BENCH_REAL)/data/trees/data.yaml --imgsz 640 --runs 30; \
	else echo "bench-deploy: no real-data inputs under $(BENCH_REAL) (run make bench-real first)"; fi

# Issue 17's done-when check (benchmarks/speedup_check.py): yolov8n, yolo11n, yolo26n (untrained, from yaml) pruned with
# target_speedup=2 at 640 px, allocation=uniform and latency, re-timed in a separate process at 1 and all threads, with
# a per-layer profile. Writes benchmarks/results_speedup.md, .json and .png. Then benchmarks/depth_check.py: the same
# ratio for architectures with fewer residual blocks at many widths (results_depth.*).
bench-speedup: install
	$(BIN)/python benchmarks/speedup_check.py
	$(BIN)/python benchmarks/depth_check.py

clean:
	rm -rf $(VENV) .venv-8.* $(TORCH_ENV) build *.egg-info
