# IBP Collator. `make demo` runs the whole collator on embedded defaults; `make test` runs
# the tests against the real MariaDB and NATS on this machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP_RUNTIME := $(VENV)/.runtime-installed
STAMP_DEV := $(VENV)/.dev-installed
TEST_MYSQL_CONFIG := config/test-mysql.json
TEST_SQLITE_CONFIG := config/test-sqlite.json

.PHONY: help venv dev deps-system test test-mysql test-sqlite lint format run serve migrate sync-config bench clean demo demo-check

help:
	@echo "make demo     run the whole collator on embedded defaults (SQLite, local NATS)"
	@echo "make test     lint, then the test suite on MariaDB and a fast pass on SQLite"
	@echo "make run      migrate, sync the bundled IBP config and serve the API and admin on :9000"
	@echo "make serve    the API under gunicorn on CollatorApi.ListenAddress:ListenPort (HTTPS with SSL_CERT/SSL_KEY)"
	@echo "make bench    the benchmarks"

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP_RUNTIME): requirements.txt | $(PY)
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

venv: $(STAMP_RUNTIME)

# mysqlclient builds against the MariaDB/MySQL client headers. On Debian/Ubuntu as root we
# install them; elsewhere we say what is missing.
deps-system:
	@if ! pkg-config --exists mysqlclient 2>/dev/null && ! pkg-config --exists libmariadb 2>/dev/null; then \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    echo "installing libmariadb-dev and pkg-config"; \
	    (apt-get install -y -qq libmariadb-dev pkg-config >/dev/null 2>&1 || \
	     (apt-get update -qq && apt-get install -y -qq libmariadb-dev pkg-config >/dev/null)); \
	  else \
	    echo "mysqlclient needs the MariaDB/MySQL client headers (Debian: libmariadb-dev pkg-config)"; exit 1; \
	  fi; \
	fi

$(STAMP_DEV): requirements.txt requirements-mysql.txt requirements-dev.txt | $(PY)
	$(MAKE) --no-print-directory deps-system
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP_RUNTIME) $@

dev: $(STAMP_DEV)

lint: dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# The whole suite on MariaDB (127.0.0.1:3306, root), then a fast pass on SQLite that keeps
# the embedded default honest.
test: lint test-mysql test-sqlite

test-mysql: dev
	@COLLATOR_CONFIG=$(TEST_MYSQL_CONFIG) $(PY) scripts/check_database.py
	COLLATOR_CONFIG=$(TEST_MYSQL_CONFIG) $(BIN)/pytest -p no:cacheprovider --create-db $(PYTEST_ARGS)

test-sqlite: dev
	COLLATOR_CONFIG=$(TEST_SQLITE_CONFIG) $(BIN)/pytest -p no:cacheprovider -m "not mysql_only and not slow" -q $(PYTEST_ARGS)

migrate: venv
	$(PY) manage.py migrate --noinput

sync-config: migrate
	$(PY) manage.py sync_config

run: sync-config
	@echo "API and admin on http://127.0.0.1:9000/ (create a login with: $(PY) manage.py createsuperuser)"
	$(PY) manage.py runserver 0.0.0.0:9000

# Production serving: gunicorn with timeouts and access logs (collator/gunicorn_conf.py).
serve: migrate
	$(BIN)/gunicorn -c collator/gunicorn_conf.py

clean:
	rm -rf var .pytest_cache .ruff_cache

# Benchmarks run against the real MariaDB (a database of their own) and a local NATS.
# `make bench BENCH=bench_ingest` runs one.
bench: dev
	COLLATOR_CONFIG=config/bench-mysql.json $(PY) -m bench $(BENCH)

# The whole collator on embedded defaults: SQLite and a filesystem broker in var/demo, a local
# nats-server (PATH, else the hash-pinned wheel), the real IBP config, a simulated network.
demo: venv
	$(PY) scripts/demo.py run

# The same pipeline, headless and bounded, with assertions (CI runs it).
# It works in var/demo-check, emptied first, so it checks this run and nothing older.
demo-check: venv
	rm -rf var/demo-check
	DEMO_WORK_DIR=var/demo-check $(PY) scripts/demo.py check
