# make run   - set up .venv if needed, then start the playground on the offline preset
# make test  - set up .venv if needed, a virtual sound device where the machine allows it, then the whole test suite
#              (in parallel, then the `serial` tests alone)
# make test-fast - the tests that need neither the offline models nor a child playground process (the edit loop)
# make bench - every benchmark (playground/bench, python -m playground.bench): the Markdown docs/benchmarks.md
#              quotes, and each benchmark's numbers as JSON in bench-results/
SHELL := /bin/bash
VENV := .venv
STAMP := $(VENV)/.installed
# Compiled bytecode and pytest's rewritten asserts are kept between runs, and between a run's two
# parts, whatever PYTHONDONTWRITEBYTECODE says: compiling them again costs each worker 2-3 s.
PYTEST := env -u PYTHONDONTWRITEBYTECODE $(VENV)/bin/python -m pytest

.PHONY: run test test-fast bench install clean

$(STAMP): pyproject.toml scripts/setup-venv.sh
	./scripts/setup-venv.sh $(VENV)
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/playground

# Over 6 xdist workers (one model thread each: tests/conftest.py), then the `serial` tests (a
# time bound, or the shared sound device) with the machine to themselves; the second part runs
# whatever the first says, and both decide the exit status.
test: $(STAMP)
	-./scripts/virtual-audio.sh start
	$(VENV)/bin/lint-imports
	$(PYTEST) -q -n 6 --dist worksteal -m "not serial"; parallel=$$?; \
	$(PYTEST) -q -m serial; serial=$$?; \
	exit $$(( parallel || serial ))

# The benchmarks moved from playground/benchmarks.py, ui/bench.py, ... into playground/bench/.
test-fast: $(STAMP)
	$(PYTEST) -q -m "not models and not serial" -n 4 --dist worksteal; parallel=$$?; \
	$(PYTEST) -q -m "serial and not models"; serial=$$?; \
	exit $$(( parallel || serial ))

bench: $(STAMP)
	$(VENV)/bin/python -m playground.bench --json-dir bench-results

clean:
	rm -rf $(VENV) build *.egg-info
