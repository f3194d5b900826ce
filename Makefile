# make run   - set up .venv if needed, then start the playground on the offline preset
# make test  - set up .venv if needed, a virtual sound device where the machine allows it, then the whole test suite
# make bench - the latency benchmarks quoted in the README
SHELL := /bin/bash
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: run test bench install clean

$(STAMP): pyproject.toml scripts/setup-venv.sh
	./scripts/setup-venv.sh $(VENV)
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/playground

test: $(STAMP)
	-./scripts/virtual-audio.sh start
	$(VENV)/bin/python -m pytest -q

bench: $(STAMP)
	$(VENV)/bin/python -m playground.benchmarks --overlap
	$(VENV)/bin/python -m playground.ui.bench --turns 10

clean:
	rm -rf $(VENV) build *.egg-info
