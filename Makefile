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

.PHONY: venv demo test lint bench clean chromium
venv: $(STAMP)

# The dashboard's browser test drives a headless Chromium: Debian's package, installed here when it is missing
# and apt-get can (root, as CI runs). Without one that test is skipped, except under CI=true, where it fails.
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  echo "no chromium: the dashboard's browser test is skipped (it fails under CI=true)"

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/lmrec demo --out demo

# The PostgreSQL tests start a throw-away server from the pgserver wheel (the dev extra) or a system
# PostgreSQL; with CI=true a missing server fails them instead of skipping (tests/_postgres.py).
test: $(STAMP) chromium
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf demo .pytest_cache build *.egg-info src/*.egg-info
