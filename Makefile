# `make demo` and `make test` work on a fresh machine: they create .venv and install what they need.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_DIR ?= demo_out

.PHONY: install demo test bench clean

$(BIN)/spml-train: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e .
	touch $@

install: $(BIN)/spml-train

# the tests' (and benchmarks') extras: ray, fiftyone, timm, pyarrow, pandas, sklearn; the demo needs none of them
$(VENV)/.test-extra: $(BIN)/spml-train
	$(BIN)/pip install -q -e '.[test]'
	touch $@

demo: install
	PATH=$(CURDIR)/$(BIN):$$PATH DEMO_DIR=$(DEMO_DIR) bash scripts/demo.sh

test: $(VENV)/.test-extra
	$(BIN)/python -m pytest -q

bench: $(VENV)/.test-extra
	$(BIN)/python benchmarks/label_bench.py --out bench_out
	$(BIN)/python benchmarks/formats_bench.py --out bench_out
	$(BIN)/python benchmarks/train_bench.py --out bench_out

clean:
	rm -rf $(VENV) $(DEMO_DIR) bench_out
