# The verbs a KubeTFX user needs. `make run` and `make test` set everything up first.
SHELL := /bin/bash
UV_VERSION := 0.13.9
VENV := .venv
PY := $(VENV)/bin/python
# The real dataset when it sits next to the repository; otherwise the run generates data.
DATA ?= $(wildcard ../shared/data/insurance.csv)
STORAGE ?= kubetfx_storage
ARGS ?=
export UV_PYTHON_DOWNLOADS := never

.PHONY: setup run test test-fast lint compile submit images bench lineage clean

# --compile-bytecode: .pyc files for every installed module, written once here. Where
# PYTHONDONTWRITEBYTECODE is set (as on our CI machines) Python would otherwise compile
# TensorFlow & co. from source in every process: ~9 s of a 1,338-row run's 29 s.
$(VENV)/.synced: pyproject.toml uv.lock Makefile
	@command -v uv >/dev/null 2>&1 || python3 -m pip install --quiet "uv==$(UV_VERSION)"
	uv sync --frozen --python 3.11 --compile-bytecode --extra mlflow
	@touch $@

setup: $(VENV)/.synced  ## build .venv from uv.lock

run: setup  ## the whole pipeline, locally, on the default dataset
	$(PY) submit.py --storage $(STORAGE) $(if $(DATA),--data $(DATA)) $(ARGS)

test: setup  ## every tier: unit, component, wiring, k8s, end-to-end and the full-workload quality target
	$(PY) -m pytest $(ARGS)

test-fast: setup  ## the quick inner loop: no end-to-end runs, not the full-workload tier
	$(PY) -m pytest -m "not slow and not e2e" $(ARGS)

lint: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check . && $(VENV)/bin/mypy

compile: setup  ## pl_yaml_output/kubetfx_pipeline.yaml for the KFP UI
	$(PY) compile.py $(ARGS)

submit: setup  ## HOST=http://localhost:8080 make submit
	$(PY) submit.py --host $(HOST) $(ARGS)

images:  ## the runtime image, with docker or podman
	bash images/build.sh

bench: setup  ## the reference workload's benchmark
	$(PY) -m benchmarks.benchmark $(ARGS)

lineage: setup  ## VERSION=1 make lineage
	$(PY) -m pipelines.lineage --storage $(STORAGE) --version $(VERSION)

clean:
	rm -rf $(STORAGE) .pytest_cache
