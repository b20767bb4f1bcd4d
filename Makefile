# One command each for the demo and the tests; both set up the virtual environment first.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo test figs notebooks bench clean

$(BIN)/memdiff: pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[dev,fast-nn]'
	touch $@

setup: $(BIN)/memdiff

demo: setup
	$(BIN)/memdiff demo --out runs/demo

test: setup
	$(BIN)/python -m pytest -q

figs: setup
	$(BIN)/memdiff figs theory --publish

notebooks: setup
	$(BIN)/memdiff notebooks --out runs/notebooks

bench: setup
	$(BIN)/memdiff bench theory

clean:
	rm -rf $(VENV) runs .pytest_cache .hypothesis
