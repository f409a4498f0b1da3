# FieldLink — the two commands a new machine needs: `make demo` and `make test`.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
COSE_VENV := .venv-pycose
COSE_STAMP := $(COSE_VENV)/.installed
MPVM    := hil_tests/mpvm/node_modules/@micropython/micropython-webassembly-pyscript/micropython.mjs
PYTEST_ARGS ?=

.PHONY: setup system-deps lint test test-fast test-slow demo bench bench-peers bench-fleet firmware flash clean

## setup: venv with pinned dependencies, the MicroPython VM (npm), Mosquitto (apt, when root) and
## .venv-pycose (pycose 1.1.0 needs cbor2 5: the COSE cross-checks run it apart; hil_tests/pycose_env.py)
setup: $(STAMP) $(MPVM) $(COSE_STAMP) system-deps

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

$(COSE_STAMP): hil_tests/pycose_env.py
	test -x $(COSE_VENV)/bin/python || $(PY) -m venv $(COSE_VENV)
	$(COSE_VENV)/bin/pip install -q pycose==1.1.0 cbor2==5.9.0
	touch $@

$(MPVM): hil_tests/mpvm/package.json
	@command -v node >/dev/null || { echo "Node.js is needed for the MicroPython VM: apt-get install nodejs npm"; exit 1; }
	cd hil_tests/mpvm && npm install --no-audit --no-fund --loglevel=error
	touch $@

system-deps:
	@command -v mosquitto >/dev/null || command -v /usr/sbin/mosquitto >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto; \
	  else echo "Mosquitto is not installed: sudo apt-get install mosquitto (tests that need a broker will fail)"; fi; }

## lint: ruff and mypy (CPython code), mypy against the MicroPython stubs (protocols/, firmware_py/)
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy agent protocols simulator hil_tests
	$(BIN)/python -m hil_tests.mpvm.typecheck

## test: everything, including the MicroPython run and the end-to-end tests with a real Mosquitto
test: setup lint
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

## test-fast: codecs, rules and units (not `slow`: no end-to-end runs or VM), two workers, 100 examples
## per property (make test runs 300), under 90 s
test-fast: setup
	HYPOTHESIS_PROFILE=$${HYPOTHESIS_PROFILE:-fast} $(BIN)/python -m pytest -q -m "not slow" -n 2 $(PYTEST_ARGS)

## test-slow: only the end-to-end, broker and MicroPython VM tests
test-slow: setup
	$(BIN)/python -m pytest -q -m slow $(PYTEST_ARGS)

## demo: embedded broker + simulator (demo.toml) + agent + live monitor; Ctrl-C stops all of it
demo: setup
	$(BIN)/python -m hil_tests.demo

## bench: every row of issue #12 side by side with its peers (docs/benchmarks.md); BENCH_ARGS=--quick for a smoke run
bench: setup
	$(BIN)/python -m hil_tests.bench $(BENCH_ARGS)

## bench-peers: the ThingsBoard IoT Gateway 3.8.5 in a venv of its own (.peers/tb), for make bench (optional)
TB_VENV := .peers/tb
bench-peers: setup
	test -x $(TB_VENV)/bin/python || $(PY) -m venv $(TB_VENV)
	$(TB_VENV)/bin/pip install -q thingsboard-gateway==3.8.5 pymodbus==3.9.2
	@echo "ThingsBoard IoT Gateway installed in $(TB_VENV); make bench now measures it"

## bench-fleet: the fleet tools on this machine (about 10 minutes: 1,000 gateways x 40 devices, SenML and
## compact, then a county of 500 gateways and its report); docs/scaling.md is written from its figures
bench-fleet: setup
	$(BIN)/python -m hil_tests.bench_fleet $(BENCH_FLEET_ARGS)

firmware: setup
	$(BIN)/fieldlink firmware build

## flash: PORT=/dev/ttyUSB0 CONFIG=site.toml [WIFI_SSID=… WIFI_PASSWORD=…] [FLASH_ARGS=--dry-run]
flash: firmware
	@echo "fieldlink firmware flash --port $(PORT) --config $(CONFIG) $(FLASH_ARGS)"
	@$(BIN)/fieldlink firmware flash --port "$(PORT)" --config "$(CONFIG)" $(FLASH_ARGS) -- \
	  $(if $(WIFI_SSID),--wifi-ssid "$(WIFI_SSID)") $(if $(WIFI_PASSWORD),--wifi-password "$(WIFI_PASSWORD)")

## install-pi: install the agent as a systemd service on this Pi (as root; docs/install-pi.md)
.PHONY: install-pi
install-pi:
	bash agent/install/install-pi.sh $(INSTALL_PI_ARGS)

clean:
	rm -rf build .pytest_cache .mypy_cache .ruff_cache .hypothesis
