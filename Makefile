# Two commands do everything on a fresh machine with python3 (>= 3.10), make and g++:
#   make demo   - virtual environment, install gpuconv with what the demo needs (Pillow), run the demo
#   make test   - virtual environment, install gpuconv with its test extras, run the whole test suite
#   make train  - train a small CNN on 8x8 digits with gpuconv's gradients (the train extra)
#   make lint   - ruff over the whole tree (rules in pyproject.toml); CI runs it beside make test
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CONFIG := $(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: demo test lint bench train gpu-check clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# One stamp per set of extras and pyproject.toml version: `make demo` stays small (NumPy and
# Pillow), `make train` adds scikit-learn and matplotlib, `make test` adds the test extra (which
# includes train's) to the same environment.
$(VENV)/.demo-$(CONFIG): pyproject.toml | $(PY)
	$(PY) -m pip install -q -e ".[demo]"
	rm -f $(VENV)/.demo-*
	touch $@

$(VENV)/.train-$(CONFIG): pyproject.toml | $(PY)
	$(PY) -m pip install -q -e ".[train]"
	rm -f $(VENV)/.train-*
	touch $@

$(VENV)/.lint-$(CONFIG): pyproject.toml | $(PY)
	$(PY) -m pip install -q -e ".[lint]"
	rm -f $(VENV)/.lint-*
	touch $@

$(VENV)/.test-$(CONFIG): pyproject.toml | $(PY)
	$(PY) -m pip install -q -e ".[test,demo]"
	rm -f $(VENV)/.test-* $(VENV)/.demo-* $(VENV)/.train-* $(VENV)/.lint-*
	touch $@ $(VENV)/.demo-$(CONFIG) $(VENV)/.train-$(CONFIG) $(VENV)/.lint-$(CONFIG)

demo: $(VENV)/.demo-$(CONFIG)
	$(PY) -m gpuconv demo --out out/demo.png

test: $(VENV)/.test-$(CONFIG)
	$(PY) -m pytest -q

lint: $(VENV)/.lint-$(CONFIG)
	$(PY) -m ruff check .

train: $(VENV)/.train-$(CONFIG)
	$(PY) -m gpuconv train --out out/train.png

# PyTorch is only a peer the benchmark measures against. Without an NVIDIA GPU its CPU build is
# enough, and pinning the release whose CPU wheel this project's machines keep locally avoids
# pulling the default Linux build with ~3 GB of CUDA libraries. Override: make bench TORCH=torch
TORCH ?= $(if $(wildcard /dev/nvidiactl),torch>=2.1,torch==2.13.0)

# Some machines set OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE to force an older OpenBLAS kernel (a
# workaround for old builds); it slows a current NumPy by 30-75 %, so the benchmark runs without
# them. The runner prints the BLAS kernel it got. Tests and CI leave them as they are.
BENCH_ENV ?= env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE

bench: $(VENV)/.test-$(CONFIG)
	$(PY) -m pip install -q -e ".[bench]" "$(TORCH)"
	$(BENCH_ENV) $(PY) -m gpuconv bench --dtype float32,float64 --json out/bench.json --plot out/bench.png

# Everything that needs an NVIDIA GPU, in at most 7 minutes and without network: the system python3
# with CuPy, PyTorch, pytest and hypothesis, gpuconv from this checkout (tools/gpu_check.py). Results
# go to $(GPUCONV_CHECK_OUT) (default out/gpu-check). Without a GPU it says so and runs its dry run.
gpu-check:
	PYTHONPATH=$(CURDIR) $(PYTHON) tools/gpu_check.py

clean:
	rm -rf $(VENV) out build *.egg-info .pytest_cache .hypothesis .ruff_cache
