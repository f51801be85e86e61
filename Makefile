# One virtual environment (.venv), installed in layers: each target installs only what it needs.
#   make demo   the library alone: numpy, pandas, pydantic, PyYAML (no torch, no streamlit, no browser driver)
#   make app    + streamlit (the `app` extra)
#   make test   + everything: the dev, app and calibrate extras (pytest, selenium, notebooks, torch, transformers)
# A later target adds to what an earlier one installed; `make clean` starts over.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
BASE   := $(VENV)/.installed-base
APP    := $(VENV)/.installed-app
FULL   := $(VENV)/.installed

.PHONY: setup demo app test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(BASE): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(APP): $(BASE)
	$(BIN)/python -m pip install --quiet -e ".[app]"
	touch $@

$(FULL): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first, pinned: on CI-class machines 2.13.0 is a local CPU wheel; an unpinned torch would pull GBs of CUDA
	# packages there. The project itself only asks for torch>=2.3, so a GPU box keeps its CUDA build.
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[dev,app,calibrate]"
	touch $(BASE) $(APP) $@

setup: $(FULL)

# The main job: Llama-3.1-70B serving a batch of 8 (2,048-token prompts, 256 output tokens)
# on four accelerators, each with the fewest GPUs it fits on; then the procurement report for
# the default scenario (10 requests/s, SLOs TTFT 2 s / TPOT 50 ms, six accelerators) in out/report/.
demo: $(BASE)
	$(BIN)/roofline predict --model llama-3.1-70b --hardware h100-sxm,h200,a100-sxm-80gb,mi300x \
		--batch-size 8 --prompt-tokens 2048 --output-tokens 256 --tp auto
	$(BIN)/roofline report --out out/report --no-progress

# The dashboard, on http://localhost:8501 (settings in .streamlit/config.toml)
app: $(APP)
	$(BIN)/streamlit run app.py

# The whole suite, as CI runs it (.ci/run): the linter, then every test
test: $(FULL)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

bench: $(BASE)
	$(BIN)/python tests/benchmarks/bench_predictor.py

clean:
	rm -rf $(VENV) build *.egg-info
