# compendium: `make reproduce` (every chain at default scale) and `make test` (the whole suite).
# Both create .venv and install the pinned environment first; a second call skips what is done.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
SCALE   ?= default
export MPLBACKEND := Agg

.PHONY: install reproduce test lab docs lock clean-runs

$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install -q --disable-pip-version-check -c requirements.lock -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

## every registered chain at default scale: figures/<paper>/ and the claims ledger
reproduce: install
	$(BIN)/compendium reproduce --scale $(SCALE)
	$(BIN)/compendium claims --scale $(SCALE)
	@echo "figures and claims.json: figures/<paper>/   executed notebooks: runs/$(SCALE)/<paper>/"

## sync checks (nbdev-clean/nbdev-export leave no diff), notebook tests, core tests, every chain at ci scale
test: install
	$(BIN)/python -m pytest tests

## regenerate the lock file from the current environment (after adding a dependency)
lock:
	$(BIN)/pip freeze --exclude-editable | grep -v -i -E '^(compendium|jupytext)==' | sed 's/+cpu$$//' > requirements.lock

clean-runs:
	rm -rf runs
