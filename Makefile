# fastmix set-up and entry points. Every target installs what is missing first and is idempotent:
# a second run skips finished steps (stamp files live inside .venv, so deleting it starts over).

PYTHON_BASE ?= python3
VENV        ?= .venv
PY          := $(VENV)/bin/python
# CPU wheel that lies on disk on this machine kind; CUDA users: make TORCH_SPEC='torch' ...
TORCH_SPEC  ?= torch==2.13.0
APT_PKGS    := pkg-config libopencv-dev libturbojpeg0-dev
# ../shared/data exists beside the checkout on this project's machines (CI included): use it as
# the raw directory there; elsewhere the converter downloads from the official mirrors.
RAW_DIR     ?= $(wildcard ../shared/data)
RAW_FLAG    := $(if $(RAW_DIR),--raw $(RAW_DIR),)
DATA_DIR    ?= data
RUNS_DIR    ?= runs
GPU_OUT     ?= bench/out/gpu
GPU_BUNDLE  ?= gpu_bundle
GPU_PYTHON  ?= 3.12
PYTEST_ARGS ?=

STAMP_APT   := $(VENV)/.stamp-apt
STAMP_TORCH := $(VENV)/.stamp-torch
STAMP_DEPS  := $(VENV)/.stamp-deps

.PHONY: install run test lint convert bench gpu-check gpu-bundle clean-data help

help:
	@echo "make run    - install, convert the data, train + evaluate all six models, write the report"
	@echo "make test   - install and run the test suite"
	@echo "make lint   - ruff check and ruff format --check"
	@echo "make bench  - fastmix bench all"
	@echo "make gpu-check - on a CUDA machine: CUDA tests, six models trained + evaluated (timed),"
	@echo "                 bench train -> $(GPU_OUT)/gpu_check.{json,md} (exits 2 without a GPU)"
	@echo "make gpu-bundle - $(GPU_BUNDLE)/: wheels (ffcv for Python $(GPU_PYTHON), fastmix), raw data,"
	@echo "                 tests and run.sh, to run the GPU check on an offline GPU machine"

$(PY):
	$(PYTHON_BASE) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip wheel setuptools

$(STAMP_APT): | $(PY)
	@if pkg-config --exists opencv4 libturbojpeg 2>/dev/null; then \
		echo "apt: ffcv build dependencies present"; \
	else \
		echo "apt: installing $(APT_PKGS)"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $(APT_PKGS); \
	fi
	@touch $@

$(STAMP_TORCH): | $(PY)
	@if $(PY) -c "import torch" 2>/dev/null; then echo "torch present"; \
	else $(PY) -m pip install -q "$(TORCH_SPEC)"; fi
	@touch $@

$(STAMP_DEPS): pyproject.toml $(STAMP_APT) $(STAMP_TORCH)
	$(PY) -m pip install -q -e ".[dev]"
	@touch $@

install: $(STAMP_DEPS)

convert: install
	$(PY) -m fastmix convert $(RAW_FLAG) --out $(DATA_DIR)

run: install
	$(PY) -m fastmix run $(RAW_FLAG) --data $(DATA_DIR) --out $(RUNS_DIR)

test: install
	$(PY) -m pytest -q --durations=15 $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: install
	@mkdir -p bench/out
	$(PY) -m fastmix bench all $(RAW_FLAG) --data $(DATA_DIR) --json bench/out/bench.json \
		--plot bench/out/loader_throughput.png

gpu-check: install
	$(PY) -m fastmix.bench.gpu_check $(RAW_FLAG) --data $(DATA_DIR) --out $(GPU_OUT)

gpu-bundle: install
	$(PY) -m fastmix.bench.gpu_bundle --out $(GPU_BUNDLE) --python $(GPU_PYTHON) \
		$(if $(RAW_DIR),--raw $(RAW_DIR),)

clean-data:
	rm -rf $(DATA_DIR)
