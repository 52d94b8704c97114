# Two commands do everything on a fresh machine: `make demo` and `make test`. Both build .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml requirements.txt | cksum | cut -d' ' -f1)

# torch==2.13.0 is pinned in the same pip command as everything else: on this machine it is the CPU build on
# disk; a loose `torch` would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml requirements.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -r requirements.txt -e '.[dev,onnx,encoders,dp,postgres]'
	@rm -f $(VENV)/.installed-*
	@touch $@

.PHONY: venv demo test lint bench clean
venv: $(STAMP)

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/lmrec demo --out demo

# The PostgreSQL tests start a throw-away server from the pgserver wheel (the dev extra) or a system
# PostgreSQL; with CI=true a missing server fails them instead of skipping (tests/_postgres.py).
test: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf demo .pytest_cache build *.egg-info src/*.egg-info
