# Two commands for a newcomer: `make run` (everything, embedded PostgreSQL/Redis unless
# DATABASE_URL/REDIS_URL are set) and `make test`. Both install what they need first.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
NPM    := $(shell command -v npm 2>/dev/null || echo $(abspath $(VENV))/bin/npm)
VENDOR := static/vendor

.PHONY: install assets run test faults bench lint format clean

install: $(VENV)/.installed assets

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

# Front-end assets (and, as devDependencies, the test FHIR server's Medplum packages) come from
# the npm registry through package-lock.json, never committed.
assets: $(VENDOR)/.stamp
$(VENDOR)/.stamp: package-lock.json Makefile $(VENV)/.installed
	$(NPM) ci --no-audit --no-fund --loglevel=error
	mkdir -p $(VENDOR)
	cp node_modules/bootstrap/dist/css/bootstrap.min.css node_modules/htmx.org/dist/htmx.min.js \
	   node_modules/bootstrap/dist/js/bootstrap.bundle.min.js \
	   node_modules/bootstrap-icons/font/bootstrap-icons.min.css \
	   node_modules/uplot/dist/uPlot.iife.min.js node_modules/uplot/dist/uPlot.min.css $(VENDOR)/
	cp -r node_modules/bootstrap-icons/font/fonts $(VENDOR)/
	touch $@

run: install
	$(PY) -m console.run

test: install
	$(PY) -m pytest

# Real processes broken on purpose; ends with the table of figures (also part of `make test`).
faults: install
	$(PY) -m pytest tests/faults

bench: install
	$(PY) -m bench

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	HUB_STORE_IN_CLEAR=true $(PY) manage.py makemigrations --check --dry-run  # stores nothing

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf $(VENDOR) node_modules
