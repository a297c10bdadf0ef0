# `make demo` and `make test` work on a fresh machine: they create .venv and install what they need.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_DIR ?= demo_out

.PHONY: install demo test test-fast bench docs clean

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

# The Label Studio server for tests/review/test_label_studio.py, in a venv of its own: its pinned dependencies would
# fight the test venv's (fiftyone, ray, torch)
LS_VENV := .venv-labelstudio
$(LS_VENV)/bin/label-studio:
	$(PY) -m venv $(LS_VENV)
	$(LS_VENV)/bin/pip install -q --upgrade pip
	$(LS_VENV)/bin/pip install -q 'label-studio==1.23.*'
	touch $@

# what changes to the code need first: no Ray, no MongoDB, no process groups, no long training (make test runs all)
FAST_TESTS := not slow and not ray and not fiftyone and not distributed
# tests that start servers or process groups run one at a time, after the rest ran on every core (pytest-xdist):
# two of them side by side would fight over ports, a MongoDB folder and the cores their ranks expect. FiftyOne's
# tests run in a process of their own: once, minutes of Ray and Label Studio later in the same process, the
# MongoDB that fiftyone had started was gone (connection refused; not reproduced since)
SERIAL_TESTS := ray or fiftyone or distributed or labelstudio

test: $(VENV)/.test-extra $(LS_VENV)/bin/label-studio
	@start=$$(date +%s); \
	$(BIN)/python -m pytest -q -n auto --durations=10 -m "not ($(SERIAL_TESTS))" && \
	$(BIN)/python -m pytest -q -m fiftyone && \
	$(BIN)/python -m pytest -q --durations=5 -m "($(SERIAL_TESTS)) and not fiftyone"; status=$$?; \
	echo "make test: $$(( $$(date +%s) - start )) s in all"; exit $$status

test-fast: $(VENV)/.test-extra
	@start=$$(date +%s); $(BIN)/python -m pytest -q -n auto --durations=10 -m "$(FAST_TESTS)"; status=$$?; \
	echo "make test-fast: $$(( $$(date +%s) - start )) s in all"; exit $$status

bench: $(VENV)/.test-extra
	$(BIN)/python benchmarks/label_bench.py --out bench_out
	$(BIN)/python benchmarks/formats_bench.py --out bench_out
	$(BIN)/python benchmarks/train_bench.py --out bench_out

# the site in site/; --strict makes a warning (a page not in nav, a broken link or anchor) an error. Not -q: under
# it mkdocs stops counting warnings and --strict passes. tests/test_docs.py builds it in `make test`.
docs: install
	$(BIN)/pip install -q -e '.[docs]'
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) $(LS_VENV) $(DEMO_DIR) bench_out site
