# make run   - set up .venv if needed, then start the playground on the offline preset
# make test  - set up .venv if needed, a virtual sound device where the machine allows it, then the whole test suite
# make test-fast - the tests that need neither the offline models nor a child playground process (the edit loop)
# make bench - every benchmark (playground/bench, python -m playground.bench): the Markdown docs/benchmarks.md
#              quotes, and each benchmark's numbers as JSON in bench-results/
SHELL := /bin/bash
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: run test test-fast bench install clean

$(STAMP): pyproject.toml scripts/setup-venv.sh
	./scripts/setup-venv.sh $(VENV)
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/playground

test: $(STAMP)
	-./scripts/virtual-audio.sh start
	$(VENV)/bin/lint-imports
	$(VENV)/bin/python -m pytest -q

# The benchmarks moved from playground/benchmarks.py, ui/bench.py, ... into playground/bench/.
test-fast: $(STAMP)
	$(VENV)/bin/python -m pytest -q -m "not models" -n 4

bench: $(STAMP)
	$(VENV)/bin/python -m playground.bench --json-dir bench-results

clean:
	rm -rf $(VENV) build *.egg-info
