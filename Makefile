# make demo   - the main job: tracker + edge-server + measurements across thread modes
# make test   - the whole test suite (sets everything up first)
# make bench  - benchmarks against the stock TVM RPC server, into bench/RESULTS.md
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup test demo bench probe clean

setup:
	bash scripts/setup.sh

test: setup
	$(PY) -m pytest -q tests

demo: setup
	$(VENV)/bin/edge-server probe

probe: setup
	$(VENV)/bin/edge-server probe

bench: setup
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
