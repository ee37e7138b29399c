# churn — every target bootstraps .venv from pyproject.toml, so a machine with only python3 works.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export CHURN_HOME ?= $(CURDIR)/data
export DAGSTER_HOME ?= $(CHURN_HOME)/dagster_home
export BENTOML_HOME ?= $(CHURN_HOME)/bentoml
CHURN_DAGSTER_PORT ?= 3000
CHURN_BENTO_PORT ?= 3001
STAMP := $(VENV)/.installed
# The whole suite on every core. loadfile keeps each module on one worker, so a module's served
# Bento, example pipeline or Spark run is built once, not once per worker (docs/testing.md).
PYTEST := PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m pytest
PARALLEL ?= -n auto --dist loadfile
FAST_MARKERS := not slow and not spark and not reliability

.PHONY: install demo pipeline serve dagster test test-fast reliability lint format bench clean examples schema deploy-check

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --upgrade pip uv
	@$(BIN)/uv pip install --quiet --python $(BIN)/python -e ".[dev,spark,deploy]"
	@touch $(STAMP)
	@echo "installed into $(VENV)"

install: $(STAMP)

$(DAGSTER_HOME)/dagster.yaml: config/dagster.yaml
	@mkdir -p $(DAGSTER_HOME)
	@cp config/dagster.yaml $(DAGSTER_HOME)/dagster.yaml

pipeline: $(STAMP) $(DAGSTER_HOME)/dagster.yaml
	@PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m churn_assets.pipeline

demo: pipeline
	@PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m churn_assets.demo

examples: $(STAMP)
	@$(BIN)/python examples/make_examples.py

# The source config's JSON Schema, for editors (tests/test_source_config.py keeps it current).
schema: $(STAMP)
	@$(BIN)/python -m churn.sources.config > docs/source.schema.json

serve: $(STAMP)
	@PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/bentoml serve churn_service:latest --port $(CHURN_BENTO_PORT)

# `dagster dev` in its own process group, stopped within seconds on Ctrl-C (churn_assets/processes.py).
dagster: $(STAMP) $(DAGSTER_HOME)/dagster.yaml
	@PATH=$(CURDIR)/$(BIN):$$PATH CHURN_DAGSTER_PORT=$(CHURN_DAGSTER_PORT) $(BIN)/python -m churn_assets.demo --ui-only

test: $(STAMP)
	@$(PYTEST) -m "not reliability" $(PARALLEL) --durations=25

# The inner loop: library and unit tests; no server, no Bento build of their own, no Spark.
test-fast: $(STAMP)
	@$(PYTEST) -m "$(FAST_MARKERS)" $(PARALLEL) --durations=10

# The reliability-marked runs, then the full-disk and slow-client cases (also in `make test`),
# reported by name.
reliability: $(STAMP)
	@$(PYTEST) -m reliability; marked=$$?; \
	$(PYTEST) -v -rA tests/test_reliability_full_disk.py tests/test_metrics_files.py \
		tests/test_reliability_http.py tests/test_reliability_http_served.py; \
	named=$$?; exit $$(( marked || named ))

lint: $(STAMP)
	@$(BIN)/ruff check .
	@$(BIN)/ruff format --check .

format: $(STAMP)
	@$(BIN)/ruff format .
	@$(BIN)/ruff check --fix .

bench: $(STAMP)
	@PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m benchmarks

# The compose deployment of deploy/ brought up with podman-compose and checked end to end (a run
# through GraphQL, a sensor tick, /score, the prediction log ingested), then removed. Builds the
# images it lacks. Slow (minutes; the first build much longer), so not part of `make test`.
# DEPLOY_CHECK_ARGS=--keep leaves the stack up (docs/deploy.md).
deploy-check: $(STAMP)
	@$(BIN)/python -c "import podman_compose" 2>/dev/null || \
		$(BIN)/uv pip install --quiet --python $(BIN)/python podman-compose
	@PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python deploy/check.py $(DEPLOY_CHECK_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
