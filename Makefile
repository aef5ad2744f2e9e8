# Every target bootstraps .venv itself: a fresh clone needs only `make run` or `make test`.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The app needs Python >= 3.11: the first such interpreter on PATH (override with PYTHON=...).
PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
	&& { echo $$p; break; }; done)

.PHONY: install run test lint bench report clean

# The extras `make install` puts in .venv (`make install EXTRAS=dev` installs fewer).
EXTRAS ?= dev,loky,dask,joblib,ray,uvloop,postgres,interpreters

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "make: no Python >= 3.11 found; install one or pass PYTHON=/path/to/python3.11" >&2; exit 2; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	@# setuptools' notice on every editable install (folders named like a package may shadow it)
	@# is kept out of the output: in this checkout those folders are the packages themselves.
	PYTHONWARNINGS='ignore:Editable installation' \
	  $(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[$(EXTRAS)]'
	@touch $(STAMP)

run: install
	$(BIN)/conlab $(ARGS)

lint: install
	$(BIN)/ruff check experiments storage service tui tests bench docs
	$(BIN)/ruff format --check experiments storage service tui tests bench docs
	$(BIN)/lint-imports --no-logo

# Three pytest workers on a 2-core machine: many tests wait on real subprocesses (a Ray head, a
# pool's start, a worker's timeout), and a third worker runs while the others wait.
PYTEST_ARGS ?= -n 3
test: lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: install
	$(BIN)/python -m bench $(GROUPS)

report: install
	$(BIN)/conlab report --format table
	@$(BIN)/conlab report --format markdown --output reports/summary.md
	@$(BIN)/conlab report --format html --output reports/summary.html
	@test ! -f reports/summary.md || echo "wrote reports/summary.md and reports/summary.html"

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .import_linter_cache build *.egg-info reports
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
