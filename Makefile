# ACME Fitness: `make run` starts the whole shop, `make test` runs the whole test suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export DJANGO_SETTINGS_MODULE ?= fitness.settings.local

.PHONY: run test lint format bench chaos install install-dev services migrate contracts clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $(VENV)/.installed $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

services: install
	$(BIN)/python scripts/preflight.py --create-db

# Every database alias: a service given its own database (PAYMENTS_DATABASE_URL...) gets its
# tables there; an alias that shares the main database has nothing left to do.
DATABASE_ALIASES := default payments shipping notifications analytics

migrate: services
	for alias in $(DATABASE_ALIASES); do $(BIN)/python manage.py migrate --noinput --database $$alias || exit 1; done

## The shop with every process of the Procfile (web on http://127.0.0.1:8000).
## USE_BROKER_USERS=1 make run: every process connects as its own least-privilege RabbitMQ user
## (created here with rabbitmqctl, so on the broker's host; see docs/security.md).
run: migrate
	$(BIN)/python manage.py setup_broker
	if [ "$(USE_BROKER_USERS)" = 1 ]; then $(BIN)/python manage.py setup_broker_users; fi
	$(BIN)/python manage.py ensure_demo_users
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/honcho start -f Procfile

## The whole test suite against the real PostgreSQL and RabbitMQ, plus lint and import boundaries.
test: install-dev
	$(BIN)/python scripts/preflight.py --test-vhost
	./scripts/ensure_chromium.sh
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	DJANGO_SETTINGS_MODULE=fitness.settings.test $(BIN)/pytest

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: install-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## Benchmarks on the real PostgreSQL and RabbitMQ, own databases (docs/benchmarks.md).
## `make bench BENCH_ARGS=--quick` for a smaller, faster run.
bench: $(VENV)/.installed-bench
	$(BIN)/python scripts/preflight.py
	$(BIN)/python -m bench.run $(BENCH_ARGS)

$(VENV)/.installed-bench: requirements-bench.txt $(VENV)/.installed
	$(BIN)/pip install --quiet -r requirements-bench.txt
	touch $@

## Fault injection against the shop's real processes, then a checker (docs/reliability.md).
## 10 minutes by default: `make chaos CHAOS_ARGS="--minutes 5"`; `--short` is the one in make test.
## Restarts a PostgreSQL cluster and a RabbitMQ node of its own, never the machine's (chaos/servers.py).
chaos: install
	$(BIN)/python scripts/preflight.py
	$(BIN)/python -m chaos.run $(CHAOS_ARGS)

## Regenerate the event contract documents and check published versions against the lock.
contracts: install
	$(BIN)/python manage.py asyncapi --output docs/asyncapi.json --html docs/asyncapi.html
	$(BIN)/python manage.py check_event_contracts

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
