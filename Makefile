# The two commands of the README. Each sets up everything it needs in .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test lint bench clean

$(VENV)/.installed-%: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --upgrade pip
	@$(PY) -m pip install --quiet -e '.[$*]'
	@touch $@

## demo: install, then run the quickstart pipeline twice (the second run executes nothing)
demo: $(VENV)/.installed-examples
	@rm -rf .etherealfabric-demo
	@echo "== first run: every node executes"
	@ETHEREALFABRIC_HOME=.etherealfabric-demo $(PY) examples/quickstart.py
	@echo
	@echo "== second run: nothing changed, nothing executes"
	@ETHEREALFABRIC_HOME=.etherealfabric-demo $(PY) examples/quickstart.py

## test: install, then run the whole test suite (the Celery tests need redis-server, the UI's
## browser tests chromium)
test: $(VENV)/.installed-test
	@command -v redis-server >/dev/null || { \
		echo "installing redis-server (needed by the Celery backend tests)"; \
		apt-get update -qq && apt-get install -y -qq redis-server >/dev/null; }
	@command -v chromium >/dev/null || { \
		echo "installing chromium (needed by the web UI's browser tests)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	@$(PY) -m pytest -n 3 --dist loadfile

lint: $(VENV)/.installed-dev
	@$(VENV)/bin/ruff check src tests examples benchmarks
	@$(VENV)/bin/mypy

bench: $(VENV)/.installed-test
	@$(PY) benchmarks/overhead.py

clean:
	rm -rf $(VENV) .etherealfabric .etherealfabric-demo .pytest_cache
