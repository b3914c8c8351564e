# memotune — `make demo` and `make test` do all the set-up on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH_VERSION := 2.13.0

.PHONY: setup browser test test-all demo lint clean
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

setup: $(STAMP) browser

# Debian's chromium, for the test that opens the MLflow UI in a real headless browser.
browser:
	@command -v chromium >/dev/null 2>&1 || { echo "installing chromium (for the browser test)"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium >/dev/null; }

# torch first, pinned: an unpinned torch would pull several GB of CUDA packages.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==$(TORCH_VERSION)
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

test: setup
	$(BIN)/python -m pytest

test-all: setup
	$(BIN)/python -m pytest -m "slow or not slow"

# A real sweep with the default tuner (memo) on the digits pipeline: embedded Ray, 2 trials at once, MLflow in ./mlflow.db.
DEMO_STUDY := demo-$(shell date +%Y%m%d-%H%M%S)
demo: setup
	$(BIN)/memotune tune examples/digits.py --budget 60 --workers 2 --study $(DEMO_STUDY)
	$(BIN)/memotune show $(DEMO_STUDY) --top 5
	$(BIN)/memotune plot $(DEMO_STUDY)
	@echo "Browse every trial in MLflow:  $(BIN)/memotune ui"

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) .memotune mlflow.db
