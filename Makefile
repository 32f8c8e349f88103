# Both entry points bootstrap .venv from this project's own files, so a fresh clone needs only python3.11+.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test demo gui-screenshots lint typecheck proto bench clean lock

# requirements.lock pins every package .[dev] resolves to (direct and transitive, pip and setuptools included) with
# the sha256 of each of its files, so a fresh clone installs exactly what CI ran and a release upstream changes
# nothing. The venv is made anew whenever the lock (or pyproject.toml) changes, so nothing the lock dropped stays
# behind; --no-deps and --no-build-isolation keep pip from fetching anything the lock does not list. The Debian
# packages whose programs the tests run come first (scripts/ensure-system-packages).
$(STAMP): pyproject.toml requirements.lock scripts/ensure-system-packages
	scripts/ensure-system-packages
	$(PYTHON) -m venv --clear $(VENV)
	$(BIN)/python -m pip install -q --require-hashes --no-deps -r requirements.lock
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip check
	touch $(STAMP)

# `make lock` re-resolves requirements.lock after pyproject.toml's dependencies change; commit the result.
# pip-compile keeps every version the lock already pins that still satisfies pyproject.toml and resolves only what
# changed; `make lock LOCK_ARGS=--upgrade` moves everything to the newest releases (`--upgrade-package NAME`: one).
# The installer is pinned too: pip's requirement comes in on stdin (the lock shows it as "via -r -").
PIP := pip==26.3
PIP_TOOLS := pip-tools==7.7.0
LOCK_ARGS ?=
lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install -q '$(PIP)' '$(PIP_TOOLS)'
	printf '%s\n' '$(PIP)' | CUSTOM_COMPILE_COMMAND='make lock' .lock-venv/bin/pip-compile -q --generate-hashes \
		--extra dev --allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links --no-emit-trusted-host \
		$(LOCK_ARGS) -o requirements.lock pyproject.toml -
	rm -rf .lock-venv

test: $(STAMP)
	$(BIN)/pytest -q -n 2 --dist loadscope

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

# With `make demo` running in another terminal: the GUI's pages as PNGs in docs/screenshots/.
gui-screenshots: $(STAMP)
	$(BIN)/python scripts/gui_screenshots.py

proto: $(STAMP)
	$(BIN)/python scripts/genproto.py

bench: $(STAMP)
	$(BIN)/python bench/propagation.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
