# make demo: train the seed's VAE on the embedded digits and write runs/demo.
# make test: the whole test suite. Both create .venv and install what they need, at the versions of constraints.txt.
# make test-fast: the tests not marked slow (pytest -m "not slow"), the loop while changing the code.
# make tutorial: rebuild docs/tutorial.ipynb from its source docs/tutorial.py and execute it (its outputs are kept).
# make lint: ruff over everything, and pyright's type checks over src/ ([tool.pyright]).
# make docs: build the documentation site into site/ (mkdocs build --strict: a broken link or reference fails).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | cksum | cut -d' ' -f1)

.PHONY: demo test test-fast lint tutorial docs clean

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit("jaxvae needs Python 3.11 or newer" if sys.version_info < (3, 11) else 0)'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $@

demo: $(STAMP)
	$(BIN)/jaxvae train --dataset digits --out runs/demo --epochs 200 --overwrite

test: $(STAMP)
	$(BIN)/python -m pytest -n 3 --dist worksteal

test-fast: $(STAMP)
	$(BIN)/python -m pytest -n 3 --dist worksteal -m "not slow"

tutorial: $(STAMP)
	$(BIN)/python docs/execute_tutorial.py

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/pyright

clean:
	rm -rf runs site .pytest_cache
