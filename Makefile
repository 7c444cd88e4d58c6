# make demo   - the main job: tracker + edge-server + measurements across thread modes
# make test   - the whole test suite (sets everything up first)
# make bench  - benchmarks against the stock TVM RPC server, into bench/RESULTS.md
# make faults - the full fault suite: 200 sessions with crashes and timeouts interleaved
# make test-arm - an emulated arm64 board without a compiler (qemu-user; built once, cached in
#                 ~/.cache/tvm-edge-rpc): tests/arm from this host, then the board-side tests on it
# make wheelhouse ARCH=aarch64 - every wheel a board needs, for an offline install
#                                (deploy/install.sh --wheelhouse DIR); see docs/fleet.md
VENV := .venv
PY := $(VENV)/bin/python

ARCH ?= $(shell uname -m)
PYTHON_VERSION ?= 3.11

.PHONY: setup test test-arm demo bench faults probe clean wheelhouse

setup:
	bash scripts/setup.sh

test: setup
	$(PY) -m pytest -q tests

test-arm: setup
	bash scripts/arm-board.sh install
	EDGE_ARM_BOARD=1 $(PY) -m pytest -q tests/arm
	bash scripts/arm-board.sh test -q

demo: setup
	$(PY) -m host_client.demo

probe: setup
	$(VENV)/bin/edge-server probe

bench: setup
	$(PY) -m bench.run_all

faults: setup
	mkdir -p bench/out && EDGE_FAULT_SESSIONS=200 EDGE_FAULT_REPORT=bench/out/faults.json $(PY) -m pytest -q tests/edge_server/daemon/test_faults.py -k mixed

wheelhouse:
	PY=$(if $(wildcard $(PY)),$(PY),python3) bash scripts/wheelhouse.sh --arch $(ARCH) --python $(PYTHON_VERSION) --out wheelhouse/$(ARCH)-py$(PYTHON_VERSION)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
