# Two commands do everything on a fresh machine with python3 (>= 3.10), make and g++:
#   make demo   - virtual environment, install, run the demo
#   make test   - virtual environment, install, run the whole test suite
#   make train  - train a small CNN on 8x8 digits with gpuconv's gradients
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: demo test bench train clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test,demo]"
	rm -f $(VENV)/.installed-*
	touch $@

demo: $(STAMP)
	$(PY) -m gpuconv demo --out out/demo.png

test: $(STAMP)
	$(PY) -m pytest -q

train: $(STAMP)
	$(PY) -m gpuconv train --out out/train.png

# PyTorch is only a peer the benchmark measures against. Without an NVIDIA GPU its CPU build is
# enough, and pinning the release whose CPU wheel this project's machines keep locally avoids
# pulling the default Linux build with ~3 GB of CUDA libraries. Override: make bench TORCH=torch
TORCH ?= $(if $(wildcard /dev/nvidiactl),torch>=2.1,torch==2.13.0)

# Some machines set OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE to force an older OpenBLAS kernel (a
# workaround for old builds); it slows a current NumPy by 30-75 %, so the benchmark runs without
# them. The runner prints the BLAS kernel it got. Tests and CI leave them as they are.
BENCH_ENV ?= env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE

bench: $(STAMP)
	$(PY) -m pip install -q -e ".[bench]" "$(TORCH)"
	$(BENCH_ENV) $(PY) -m gpuconv bench --dtype float32,float64 --json out/bench.json --plot out/bench.png

clean:
	rm -rf $(VENV) out build *.egg-info .pytest_cache .hypothesis
