# Pitstop: `make demo` and `make test` set up everything they need on a fresh clone.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
HOME_DIR := .pitstop
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
JARS_STAMP := $(HOME_DIR)/.jars-ready
PYTEST_ARGS ?=

.PHONY: help setup browser jar demo test test-unit test-component test-integration test-slow lint \
	format broker-start broker-stop bench clean fixtures

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@command -v java >/dev/null || { echo "Java 17 is required (apt-get install openjdk-17-jre-headless)." >&2; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip setuptools wheel
	# torch from PyPI is large; pip's cache keeps later installs fast.
	$(BIN)/pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-* && touch $@

$(JARS_STAMP): $(STAMP) streaming/jars.py jvm/kafka-broker/pom.xml $(wildcard jvm/battery-state/src/main/java/pitstop/state/*.java)
	$(BIN)/pitstop setup
	@touch $@

setup: $(STAMP) $(JARS_STAMP) ## virtualenv, Python packages, Spark and Kafka jars (once)

# The browser tests drive Debian's chromium (never a browser download of Playwright's own).
# Idempotent: nothing happens once /usr/bin/chromium exists; where apt cannot install it, the
# browser tests skip and say why. Only the test targets need it, so `make demo` never waits.
browser: ## Debian's chromium for the browser tests (apt-get, as root; skipped if impossible)
	@if [ -x /usr/bin/chromium ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then \
		echo "chromium is missing and apt-get cannot run as root here: browser tests will skip." >&2; \
		exit 0; \
	fi; \
	echo "Installing Debian's chromium for the browser tests (once)"; \
	{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		--no-install-recommends chromium fonts-liberation >/dev/null; } \
		|| echo "apt-get could not install chromium: the browser tests will skip." >&2

jar: $(STAMP) ## build the battery-state jar into dist/ (a library of a Databricks cluster)
	@mkdir -p dist
	$(BIN)/python -c "from streaming.jars import state_jar; import shutil; shutil.copy(state_jar('$(HOME_DIR)'), 'dist/pitstop-battery-state.jar')"
	@echo dist/pitstop-battery-state.jar

demo: setup ## run the whole pipeline end to end on a simulated fleet and print the alerts
	$(BIN)/pitstop demo

test: setup browser ## run every test (starts its own Kafka broker; chromium for the console)
	$(BIN)/pytest $(PYTEST_ARGS)

test-unit: setup ## pure tests only
	$(BIN)/pytest -m unit $(PYTEST_ARGS)

test-component: setup ## local Spark, Delta and MLflow tests
	$(BIN)/pytest -m component $(PYTEST_ARGS)

test-slow: setup ## chaos and soak tests (minutes each): SIGKILL the job 5 times over 100k readings
	$(BIN)/pytest -m slow $(PYTEST_ARGS)

test-integration: setup browser ## tests against the real local broker, and the browser tests
	$(BIN)/pytest -m integration $(PYTEST_ARGS)

lint: $(STAMP) ## ruff lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP) ## apply ruff formatting and safe fixes
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

broker-start: setup ## start the local Kafka broker
	$(BIN)/pitstop broker start

broker-stop: $(STAMP) ## stop the local Kafka broker
	$(BIN)/pitstop broker stop

bench: setup ## run the benchmarks (figures go in README)
	$(BIN)/python benchmarks/run_all.py

clean: ## remove local state (broker data, lake, MLflow store, jars); keeps the venv
	-$(BIN)/pitstop broker stop
	rm -rf $(HOME_DIR)

fixtures: setup ## re-record tests/fixtures (small fleet, its truth and expected alerts, a small model)
	$(BIN)/python scripts/make_fixtures.py
