# The two commands of the README: `make example` and `make test`.
# Both build the virtual environment they need on first use.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_SECRET := whsec_ZGVtby1zZWNyZXQtZG8tbm90LXVzZS1pbi1wcm9kdWN0aW9uIQ==

.PHONY: example send-sample worker test lint typecheck pytest bench clean browser

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.runtime: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q -e '.[celery]'
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

## A Celery worker for the example app's tasks, on the RabbitMQ of this
## machine unless FLASK_CELERY__broker_url names another broker (e.g.
## redis://127.0.0.1:6379/1); run the app with the same variable.
worker: $(VENV)/.runtime
	OPENAI_WEBHOOK_SECRET=$${OPENAI_WEBHOOK_SECRET:-$(DEMO_SECRET)} \
	FLASK_CELERY__broker_url=$${FLASK_CELERY__broker_url:-amqp://guest:guest@127.0.0.1:5672//} \
	$(BIN)/python -c 'from examples.tasks import run_worker; run_worker()'

## The whole suite: lint, types, tests.
test: lint typecheck pytest

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.dev
	$(BIN)/mypy

pytest: $(VENV)/.dev browser
	$(BIN)/pytest $(PYTEST_ARGS)

## Debian's Chromium and ChromeDriver for the inspector's browser tests
## (no browser download is needed). Installed when missing and running as
## root; otherwise the browser tests say how, and are skipped (failed under CI).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null \
	|| { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	     && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	         apt-get install -y -qq chromium chromium-driver >/dev/null) ; } \
	|| echo "note: install Debian's chromium and chromium-driver for the browser tests"

## The speed budget of README.rst (Performance): every figure with its floor,
## ratio, target and PASS/MISS, from one run. BENCH_ARGS=--check exits 1 on a
## miss; BENCH_ARGS=--quick is a smoke run. Uses the servers on loopback.
bench: $(VENV)/.dev
	@command -v wrk >/dev/null 2>&1 || echo "bench: wrk not found, section 3 uses the slower Python load generator (install it: sudo apt-get install wrk)" >&2
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
