# sct: the two commands that matter are `make demo` and `make test`.
# Both install what they need first: Debian's mosquitto and influxdb (when root) and the
# Python packages into .venv.

VENV    ?= .venv
PYTHON  ?= python3
BIN     := $(VENV)/bin
DEMO_ARGS ?=

.PHONY: demo test lint unit eval bench system-deps test-deps debian-packages install clean

demo: system-deps install
	$(BIN)/sct demo $(DEMO_ARGS)

test: test-deps install lint
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

unit: install
	$(BIN)/pytest -m "not integration"

# Detector quality on ../shared/datasets (NAB, SKAB, GECCO) and on injected simulator
# faults, and detector throughput. Prints tables; asserts nothing.
eval: install
	$(BIN)/pip install -q --disable-pip-version-check -e '.[eval]'
	$(BIN)/python -m bench.eval_detectors
	$(BIN)/python -m bench.eval_heldout
	$(BIN)/python -m bench.eval_candidates
	$(BIN)/python -m bench.eval_normal
	$(BIN)/python -m bench.eval_normal --period 3 --days 3 --communities 2 --models t2
	$(BIN)/python -m bench.eval_faults
	$(BIN)/python -m bench.detectors

bench: system-deps install
	$(BIN)/pip install -q --disable-pip-version-check -e '.[bench]'
	$(BIN)/python -m bench --out bench.json
	$(BIN)/python -m bench.pipeline
	$(BIN)/python -m bench.scale --out bench-scale.json
	$(BIN)/python -m bench.cluster --out bench-cluster.json
	$(BIN)/python -m bench.detectors

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev,embedded-broker]'
	touch $@

# Mosquitto, InfluxDB 1.x and RabbitMQ (its MQTT plugin is a broker the tests drain through)
# from Debian, and Noto's CJK fonts (the report's charts are drawn in Chinese); the tests
# also need Chromium (the report is checked in a real browser). One `apt-get update`, only
# when something is missing. The tests start their own servers as children, on loopback
# ports and ports of their own.
SYSTEM_PACKAGES := mosquitto mosquitto-clients influxdb influxdb-client rabbitmq-server \
	fonts-noto-cjk
CJK_FONT := /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc

system-deps:
	@$(MAKE) --no-print-directory debian-packages PACKAGES="$(SYSTEM_PACKAGES)" \
	  NEEDED="/usr/sbin/mosquitto /usr/bin/influxd /usr/lib/rabbitmq/bin/rabbitmq-server \
	  $(CJK_FONT)"

test-deps:
	@$(MAKE) --no-print-directory debian-packages \
	  PACKAGES="$(SYSTEM_PACKAGES) chromium" NEEDED="/usr/sbin/mosquitto /usr/bin/influxd \
	  /usr/lib/rabbitmq/bin/rabbitmq-server $(CJK_FONT) /usr/bin/chromium"

debian-packages:
	@missing=0; for f in $(NEEDED); do [ -e $$f ] || missing=1; done; \
	if [ $$missing = 0 ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ]; then \
	  echo "missing system packages: run 'sudo apt-get install $(PACKAGES)'" >&2; \
	  exit 1; fi; \
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	  apt-get install -y -qq --no-install-recommends $(PACKAGES) >/dev/null

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache var
