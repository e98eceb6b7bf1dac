# compendium: `make reproduce` (every chain at default scale) and `make test` (the whole suite).
# Both create .venv and install the pinned environment first; a second call skips what is done.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
SCALE   ?= default
LAB_PORT  ?= 8888
LAB_TOKEN ?=
export MPLBACKEND := Agg

.PHONY: install reproduce test bench lab docs lock clean-runs

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

## sync checks (nbdev-clean/nbdev-export leave no diff), notebook tests, core tests, every chain at ci scale,
## the docs site in headless Chromium (installed from Debian's packages if missing), JupyterLab
test: install
	bash .ci/install-chromium.sh
	$(BIN)/python -m pytest tests

## the benchmarks (never run by make test): each hot loop plain vs optimised, same inputs, same process,
## their results checked equal -> benchmarks/RESULTS.md and benchmarks/results/<cpu|gpu>.jsonl
bench: install
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

## the docs site, offline, into _site/ (serve: python -m http.server -d _site -b 127.0.0.1 8000)
docs: install
	$(BIN)/python docs/build.py

## JupyterLab on 127.0.0.1 with a token (a fresh one unless LAB_TOKEN is given); --allow-root where run as root
lab: install
	@tok="$(LAB_TOKEN)"; [ -n "$$tok" ] || tok=$$($(BIN)/python -c 'import secrets; print(secrets.token_hex(16))'); \
	echo "JupyterLab: http://127.0.0.1:$(LAB_PORT)/lab?token=$$tok"; \
	exec $(BIN)/jupyter lab --no-browser --ip=127.0.0.1 --port=$(LAB_PORT) --ServerApp.port_retries=0 \
	  --IdentityProvider.token="$$tok" --ServerApp.root_dir="$(CURDIR)" $$([ "$$(id -u)" = 0 ] && echo --allow-root)

## regenerate the lock file from the current environment (after adding a dependency)
lock:
	$(BIN)/pip freeze --exclude-editable | grep -v -i -E '^(compendium|jupytext)==' | sed 's/+cpu$$//' > requirements.lock

clean-runs:
	rm -rf runs
