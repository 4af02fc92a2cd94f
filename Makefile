# Two entry points, each creating .venv and installing what it needs:
#   make demo   a load test with SLO verdicts against the built-in mock server
#   make test   the whole test suite (what CI runs)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,ray,report]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m pytest conftest_examples/local_mock -p no:cacheprovider

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest tests -p no:randomly

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python benchmarks/mesh_startup.py
	$(BIN)/python benchmarks/client_throughput.py

clean:
	rm -rf $(VENV) build dist *.egg-info artifacts
