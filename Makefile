# The two commands a new user needs: `make run` and `make test`. Both create .venv on first use.
# On a host with no package registry, point PYTHON at a prepared interpreter: `make run PYTHON=python3`
# (nothing is installed then; the package is imported from this checkout).
SHELL := /bin/bash
CONFIG ?= configs/default.yaml
VENV ?= .venv
PYTHON ?=
ARGS ?=
# Test processes (pytest-xdist's -n): most of a test's time is spent waiting (a run's processes
# starting, a lock, a subprocess), so two share a 2-core machine (CI) at half the wall time
# (test_xarray: 896 s alone, 431 s with 2, 2026-12-06). TEST_JOBS=0 runs them in this process.
TEST_JOBS ?= 2
# GPU extra picked from the driver's CUDA version (nvidia-smi), none without a GPU.
GPU_EXTRA ?= $(shell nvidia-smi 2>/dev/null | sed -n 's/.*CUDA Version: *\([0-9]*\).*/cu\1/p' | head -1)
EXTRAS ?= dev$(if $(GPU_EXTRA),$(comma)$(GPU_EXTRA))
comma := ,
# Without a GPU (CI), the venv holds exactly the floors of pyproject.toml, so the lower end of
# the supported range is what the tests run on; the GPU libraries pin newer versions (dask-cuda
# pins dask), so a GPU host gets what they pin. CONSTRAINTS= installs the newest releases.
CONSTRAINTS ?= $(if $(GPU_EXTRA),,constraints/floors.txt)

ifeq ($(strip $(PYTHON)),)
PY := $(VENV)/bin/python
ENV := $(VENV)/.installed
else
PY := $(PYTHON)
ENV :=
export PYTHONPATH := $(CURDIR)$(if $(PYTHONPATH),:$(PYTHONPATH))
endif

.PHONY: run data verify plan info test test-gpu lint docs bench bench-seed bench-scaling bench-sweep env clean

# The pipeline's commands as make runs them: told the CONFIG given, their error lines name the
# fix as make takes it (`make run CONFIG=... ARGS=--overwrite`; `make run --overwrite` is make's
# own option), not the command line's `run --overwrite`.
PIPELINE = $(CONFIG_GIVEN)PIPELINE_MAKE_CONFIG=$(CONFIG_WORD) $(PYTHON_GIVEN)$(PY) -m pipeline
# A PYTHON given is passed again by the commands a line names (`make run CONFIG=c.yaml
# PYTHON=python3`): without it, make would make .venv, which a host with no registry cannot.
PYTHON_GIVEN = $(if $(strip $(PYTHON)),PIPELINE_MAKE_PYTHON='$(subst ','\'',$(PYTHON))' )
# A blank CONFIG (`make run CONFIG=`, `CONFIG=" "`) is said as make takes it, before the command
# runs: the command had been given '' and said "the config's path is empty ('')".
CONFIG_GIVEN = $(if $(strip $(CONFIG)),,$(error CONFIG is empty: give a config file's path, `make $@ CONFIG=configs/default.yaml$(if $(strip $(PYTHON)), PYTHON=$(PYTHON))`, or leave CONFIG out for that default))
# CONFIG as one shell word, single-quoted, a quote in it escaped: a path with spaces
# (`make run CONFIG="my jobs/a b.yaml"`) had reached the command as several arguments.
CONFIG_WORD = '$(subst ','\'',$(CONFIG))'

run: $(ENV)  ## run the job a config describes (default: a small CPU-friendly one)
	$(PIPELINE) run $(CONFIG_WORD) $(ARGS)

data: $(ENV)  ## create the input a config describes
	$(PIPELINE) generate $(CONFIG_WORD) $(ARGS)

verify: $(ENV)  ## recompute sampled chunks with NumPy and compare with the output
	$(PIPELINE) verify $(CONFIG_WORD) $(ARGS)

plan: $(ENV)  ## print what a run would do, without computing
	$(PIPELINE) plan $(CONFIG_WORD) $(ARGS)

info: $(ENV)
	$(PY) -m pipeline info

test: $(ENV)  ## the test suite (GPU tests are skipped, visibly, without a GPU)
	$(PY) -m pytest -n $(TEST_JOBS) $(ARGS)

test-gpu: $(ENV)  ## only the tests that need a GPU
	$(PY) -m pytest -m gpu $(ARGS)

lint: $(ENV)  ## ruff (lint and format) and mypy, as CI runs them
	$(PY) -m ruff check pipeline benchmarks tests scripts
	$(PY) -m ruff format --check pipeline benchmarks tests scripts
	$(PY) -m mypy pipeline benchmarks

docs: $(ENV)  ## regenerate README's config reference from the schema (tests/test_docs.py checks it)
	$(PY) -m pipeline schema --update README.md

bench: $(ENV)  ## the pipeline against its ceilings and peers (GPU host); BENCH_ARGS=--quick on a CPU
	@# the checkout's bytecode, as pip installs a package's: where PYTHONDONTWRITEBYTECODE is set
	@# (the GPU host), every process would compile every module of the pipeline again; a
	@# checkout it cannot write to is measured as it is, with a note
	$(PY) -m compileall -q pipeline benchmarks > /dev/null || echo "note: no bytecode written (a read-only checkout?): cold runs compile the pipeline's modules"
	PIPELINE_MAKE_BENCH=bench $(PY) -m benchmarks.bench $(BENCH_ARGS)

bench-seed: $(ENV)  ## the seed article's measurements, honestly synchronised
	PIPELINE_MAKE_BENCH=bench-seed $(PY) -m benchmarks.seed $(BENCH_ARGS)

bench-scaling: $(ENV)  ## strong and weak scaling over the host's GPUs (1, 2, 4, 8)
	PIPELINE_MAKE_BENCH=bench-scaling $(PY) -m benchmarks.scaling $(BENCH_ARGS)

bench-sweep: $(ENV)  ## block size and threads per GPU: how the GPU defaults were chosen
	PIPELINE_MAKE_BENCH=bench-sweep $(PY) -m benchmarks.sweep $(BENCH_ARGS)

env: $(ENV)

$(VENV)/.installed: pyproject.toml constraints/floors.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q $(if $(CONSTRAINTS),-c $(CONSTRAINTS)) -e ".[$(EXTRAS)]"
	touch $@

clean:
	rm -rf $(VENV) data results .pytest_cache .mypy_cache .ruff_cache
