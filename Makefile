PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.install-stamp

.PHONY: install run test lint typecheck imports unit unit-postgres conformance bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

run: install
	$(BIN)/porch serve --data-dir .porch

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: install
	$(BIN)/mypy

imports: install
	$(BIN)/lint-imports

unit: install
	$(BIN)/pytest -q -p no:cacheprovider

# The engine and API suites again, on a throwaway PostgreSQL (started by the tests themselves).
unit-postgres: install
	PORCH_TEST_STORE=postgres $(BIN)/pytest -q -p no:cacheprovider tests/engine tests/apiserver

# kpt's fn-render e2e cases and the function catalog's examples/tests, from ../shared.
SHARED ?= ../shared/conformance
conformance: install
	@if [ -d "$(SHARED)" ]; then \
		$(BIN)/porch conformance kpt-fn-render $(SHARED)/kpt-fn-render && \
		$(BIN)/porch conformance krm-catalog $(SHARED)/krm-functions-catalog/examples \
			$(SHARED)/krm-functions-catalog/tests; \
	else echo "conformance: $(SHARED) not found, skipped"; fi

test: lint typecheck imports unit unit-postgres conformance

bench: install
	$(BIN)/python bench/lifecycle.py

clean:
	rm -rf $(VENV) build .porch
