# Two commands on a fresh clone: `make demo` and `make test`. Everything else is set-up.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
FLASK := $(VENV)/bin/flask --app wsgi
DEMO_DB := $(CURDIR)/instance/demo.db
PORTAL_TEST_POSTGRES_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/postgres
export PORTAL_TEST_POSTGRES_URL

.PHONY: setup demo demo-run demo-invite test test-sqlite test-postgres lint chromium clean

# Third-party browser assets, copied from node_modules (never committed).
VENDOR := portal/static/vendor
VENDOR_FILES := $(VENDOR)/htmx.min.js $(VENDOR)/bootstrap.min.css $(VENDOR)/bootstrap.bundle.min.js

setup: $(VENV)/.installed node_modules/.installed $(VENDOR_FILES) instance/config.py

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e ".[dev]"
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(VENDOR)/htmx.min.js: node_modules/.installed
	mkdir -p $(VENDOR)
	cp node_modules/htmx.org/dist/htmx.min.js $@

# Bootstrap 5.3: its stylesheet everywhere, its JS bundle (with Popper) for the components that
# need it (the collapsing nav bar, toasts). The source maps come along for the browser's tools.
$(VENDOR)/bootstrap.min.css: node_modules/.installed
	mkdir -p $(VENDOR)
	cp node_modules/bootstrap/dist/css/bootstrap.min.css node_modules/bootstrap/dist/css/bootstrap.min.css.map $(VENDOR)/

$(VENDOR)/bootstrap.bundle.min.js: node_modules/.installed
	mkdir -p $(VENDOR)
	cp node_modules/bootstrap/dist/js/bootstrap.bundle.min.js node_modules/bootstrap/dist/js/bootstrap.bundle.min.js.map $(VENDOR)/

# A secret key of this installation's own, made once; never committed.
instance/config.py:
	mkdir -p instance
	$(PYTHON) -c "import secrets; print('SECRET_KEY = ' + repr(secrets.token_hex(32)))" > $@

chromium:
	@command -v chromium >/dev/null || { \
	  echo "Installing Debian's chromium for the browser tests"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }

# Load the demo story into a fresh SQLite file and serve it with local sign-in on:
# `make demo`, or elsewhere with `make demo HOST=0.0.0.0 PORT=5001`. Every link the demo
# prints or mails (logins, invitations) uses the address it is served on, DEMO_URL.
# (Plain `=`: a HOST or PORT variable of the environment, as some shells set, does not apply.)
HOST = 127.0.0.1
PORT = 5000
DEMO_URL = http://$(if $(findstring :,$(HOST)),[$(HOST)],$(HOST)):$(PORT)
DEMO_ENV = PORTAL_DATABASE_URL=sqlite:///$(DEMO_DB) PORTAL_BASE_URL=$(DEMO_URL)

demo: setup
	$(MAKE) --no-print-directory demo-run

# The demo without the set-up step (the tests read it with `make -n demo-run`).
demo-run:
	rm -f $(DEMO_DB) $(DEMO_DB)-wal $(DEMO_DB)-shm
	$(DEMO_ENV) $(FLASK) db upgrade
	$(DEMO_ENV) $(FLASK) portal demo
	@echo "Invite someone (the link points here too): make demo-invite HOST=$(HOST) PORT=$(PORT)" \
	  "EMAIL=new.person@contoso.example ORG='Contoso Group' ROLE=member"
	$(DEMO_ENV) PORTAL_LOCAL_LOGIN_ENABLED=true $(FLASK) run --host $(HOST) --port $(PORT)

# Invite someone into the running demo; the link points at it (same HOST and PORT as `make demo`):
# make demo-invite EMAIL=new@contoso.example ORG="Contoso Group" ROLE=member
demo-invite:
	$(DEMO_ENV) $(FLASK) portal invite '$(EMAIL)' '$(ORG)' '$(ROLE)'

# The whole suite on SQLite, then on PostgreSQL when it is reachable
# (CI sets PORTAL_REQUIRE_POSTGRES=1: unreachable is then a failure, not a skip).
test: setup chromium
	$(MAKE) --no-print-directory test-sqlite
	@if $(PY) -c "import os, psycopg; psycopg.connect(os.environ['PORTAL_TEST_POSTGRES_URL'].replace('+psycopg', ''), connect_timeout=3).close()" 2>/dev/null; then \
	  $(MAKE) --no-print-directory test-postgres; \
	elif [ -n "$$PORTAL_REQUIRE_POSTGRES" ]; then \
	  echo "PostgreSQL is not reachable at $$PORTAL_TEST_POSTGRES_URL" >&2; exit 1; \
	else \
	  echo "PostgreSQL is not reachable at $$PORTAL_TEST_POSTGRES_URL: skipped the PostgreSQL run"; \
	fi

# One test process per core (pytest-xdist); each has a database of its own. A slow test
# goes to whichever process is free ("worksteal"). `make test PYTEST_ARGS=-n0`: one process.
PYTEST_ARGS ?= -n auto --dist worksteal

test-sqlite:
	PORTAL_TEST_DB=sqlite $(PY) -m pytest $(PYTEST_ARGS)

test-postgres:
	PORTAL_TEST_DB=postgres $(PY) -m pytest $(PYTEST_ARGS)

lint:
	$(VENV)/bin/ruff check .

# Time every page of the customer, partner and producer portals against a bare Flask page at
# 1k, 20k and 200k entitlements (PostgreSQL; the largest on SQLite too), race activations,
# and write bench/results/<date>.md (bench/README.md). `make bench SIZES=1k`: the smallest only.
SIZES ?= 1k,20k,200k
.PHONY: bench wrk
bench: setup wrk
	PYTHONPATH=$(CURDIR) $(PY) -m bench --sizes $(SIZES) $(BENCH_ARGS)

wrk:
	@command -v wrk >/dev/null || { \
	  echo "Installing Debian's wrk for make bench"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk; }

clean:
	rm -rf $(VENV) node_modules $(VENDOR)
