# Two commands: `make demo` and `make test`. Both create .venv and install on first use.
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PERSONS ?= 200000

.PHONY: demo test bench bench-sharing install clean

$(STAMP): pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/govdata demo --out demo --persons 20000

# The test servers (PostgreSQL, MariaDB) are installed first when missing (apt-get, as root), or
# the run stops here with the one command to run (tests/servers.py).
test: $(STAMP)
	@$(BIN)/python -m tests.servers
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python -m govdata.bench --persons $(PERSONS)
	$(MAKE) bench-sharing

bench-sharing: $(STAMP)   # POST /verify against a running `govdata serve` (wrk if installed)
	$(BIN)/python -m govdata.bench_sharing

clean:
	rm -rf demo lake bench/out .pytest_cache
