# Everything a new user or CI runs. `make test` is the command CI runs (.ci/run).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
# Exact versions live here only; pyproject.toml declares ranges.
TORCH_PIN := torch==2.14.1 torchvision==0.29.1
COCO_ROOT ?= ../shared/data/coco-mini
DEMO_DIR ?= demo-output

.PHONY: install services test test-fast demo lint bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH_PIN)
	$(BIN)/pip install -q -e '.[dev,web,bench,s3]'
	touch $@

# Redis, PostgreSQL and Chromium from Debian, PostgreSQL started on 127.0.0.1 (needs root).
services:
	scripts/services.sh install
	scripts/services.sh start

test: install services
	$(BIN)/pytest -q --durations=25

# The suite without the slow training/fault/browser tests, for quick local iterations.
test-fast: install
	$(BIN)/pytest -q -m "not slow and not fault and not browser"

demo: install
	scripts/demo.sh "$(COCO_ROOT)" "$(DEMO_DIR)"

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: install
	$(BIN)/python benchmarks/bench_inference.py

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache
