# The two commands of the README: `make example` and `make test`.
# Both build the virtual environment they need on first use.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_SECRET := whsec_ZGVtby1zZWNyZXQtZG8tbm90LXVzZS1pbi1wcm9kdWN0aW9uIQ==

.PHONY: example send-sample test lint typecheck pytest bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.runtime: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.dev: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@ $(VENV)/.runtime

## Run the example app on http://127.0.0.1:5000 with a demo secret.
example: $(VENV)/.runtime
	OPENAI_WEBHOOK_SECRET=$${OPENAI_WEBHOOK_SECRET:-$(DEMO_SECRET)} \
	$(BIN)/flask --app examples.app:create_app run $(RUN_ARGS)

## Send a signed sample delivery to the running example app.
send-sample: $(VENV)/.runtime
	OPENAI_WEBHOOK_SECRET=$${OPENAI_WEBHOOK_SECRET:-$(DEMO_SECRET)} \
	$(BIN)/python examples/send_sample.py $(or $(TYPE),batch.completed)

## The whole suite: lint, types, tests.
test: lint typecheck pytest

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.dev
	$(BIN)/mypy

pytest: $(VENV)/.dev
	$(BIN)/pytest $(PYTEST_ARGS)

## The speed table of README.rst (Performance).
bench: $(VENV)/.dev
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
