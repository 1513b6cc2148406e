# Two commands from a fresh clone: `make demo` and `make test` (both set up .venv first).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_WORKERS ?= 2
# malloc backs its large blocks (XLA's buffers) with transparent huge pages where the
# kernel offers them on request: on the 2-core EPYC the demo's training step is
# 1.1-1.4x faster (fewer page faults; docs/speed.md). Floats are unchanged.
export GLIBC_TUNABLES ?= glibc.malloc.hugetlb=1

.PHONY: setup browser test test-all demo bench lint format clean

setup: $(STAMP)

# Debian's Chromium, for the HTML viewer's test (tests/test_html_viewer.py); needs root.
browser:
	test -x /usr/bin/chromium || (apt-get update -q && apt-get install -y -q chromium)

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

test: $(STAMP) browser
	$(PY) -m pytest -q -m "not slow" -n $(PYTEST_WORKERS)

test-all: $(STAMP) browser
	$(PY) -m pytest -q -n $(PYTEST_WORKERS)

demo: $(STAMP)
	$(PY) experiments/demo.py

bench: $(STAMP)
	for f in benchmarks/*_bench.py; do echo "== $$f"; $(PY) $$f || exit 1; done

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) .jax_cache .pytest_cache
