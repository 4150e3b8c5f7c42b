# reportgen: `make help` lists the targets.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
CONFIG ?= configs/quickstart.yaml
ARGS   ?=
export TF_CPP_MIN_LOG_LEVEL ?= 3
export PIP_DISABLE_PIP_VERSION_CHECK = 1

.DEFAULT_GOAL := help

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[keras,examples,onnx,dask,dev]'
	touch $@

.PHONY: help
help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

.PHONY: install
install: $(VENV)/.installed ## create .venv and install reportgen with its extras

.PHONY: report
report: $(VENV)/.installed ## build the report for CONFIG (default configs/quickstart.yaml)
	$(VENV)/bin/reportgen build $(CONFIG) --force $(ARGS)

.PHONY: test
test: $(VENV)/.installed ## run the test suite
	$(PY) -m pytest -q $(ARGS)

.PHONY: fuzz
fuzz: $(VENV)/.installed ## fuzz the readers' inputs for longer (REPORTGEN_FUZZ_EXAMPLES per target, default 2000)
	REPORTGEN_FUZZ=long $(PY) -m pytest -q -p no:cacheprovider tests/test_fuzz_inputs.py $(ARGS)

.PHONY: test-fast
test-fast: $(VENV)/.installed ## the fast subset: no TensorFlow, no model training, no browser (under a minute)
	REPORTGEN_TEST_FAST=1 REPORTGEN_FUZZ_EXAMPLES=10 $(PY) -m pytest -q -m "not slow and not browser" $(ARGS)

.PHONY: schema
schema: $(VENV)/.installed ## regenerate reportgen/schema/stats.schema.json from the stats.json types (reportgen/stats_json.py)
	$(PY) -m reportgen.schema

.PHONY: update-gold
update-gold: $(VENV)/.installed ## rewrite tests/gold/ (stats.json, HTML outline, diff.json of a small fixed model) from the current output
	REPORTGEN_UPDATE_GOLD=1 $(PY) -m pytest -q tests/test_gold.py $(ARGS)

.PHONY: lint
lint: $(VENV)/.installed ## ruff and mypy
	$(VENV)/bin/ruff check reportgen tests bench tools eval
	$(VENV)/bin/ruff format --check reportgen tests bench tools eval
	$(VENV)/bin/mypy reportgen

.PHONY: bench
bench: $(VENV)/.installed ## speed and memory benchmarks, printed as ratios (installs weightwatcher, dask)
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) bench/run.py

.PHONY: eval
eval: $(VENV)/.installed ## score verdicts and alerts on crafted faults and real trained models (downloads ~120 MB once)
	$(PY) eval/run.py $(ARGS)

.PHONY: screenshots
screenshots: $(VENV)/.installed ## regenerate docs/ screenshots from the quickstart report
	$(PY) tools/screenshots.py

.PHONY: clean
clean: ## remove build outputs (keeps .venv)
	rm -rf reports build dist .pytest_cache .ruff_cache .mypy_cache
