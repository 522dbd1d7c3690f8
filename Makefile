# Two commands matter: `make test` and `make demo`. Both install what is missing
# (Debian packages, a .venv with the project) before they run.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
APT_PACKAGES := mosquitto mosquitto-clients influxdb postgresql openssl chromium gammu gammu-smsd
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: test demo deps lint bench stack-down clean

deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Two workers: the suite waits on brokers and processes
# far more than it computes (a fresh clone: 21.9 min in one process, 10.6 in two).
test: deps $(BIN)/.installed lint
	$(BIN)/pytest -n 2

demo: deps $(BIN)/.installed
	$(BIN)/gramlink demo

bench: deps $(BIN)/.installed
	$(BIN)/python -m bench

stack-down: $(BIN)/.installed
	$(BIN)/gramlink stack down

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache .hypothesis
