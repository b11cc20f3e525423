# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch: never pull a multi-GB CUDA build on a machine without a GPU.
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu

.PHONY: demo test lint env clean

$(BIN)/.installed: pyproject.toml
	@echo ">>> creating $(VENV) (install time is reported separately from the run)"
	@start=$$(date +%s); \
	test -x $(BIN)/python || $(PY) -m venv $(VENV); \
	$(BIN)/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true; \
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)" 2>/dev/null \
	  || $(BIN)/python -m pip install -q "$(TORCH_SPEC)" --index-url $(TORCH_INDEX) \
	  || $(BIN)/python -m pip install -q torch --index-url $(TORCH_INDEX); \
	$(BIN)/python -m pip install -q -e ".[dev]" && \
	echo ">>> install took $$(( $$(date +%s) - start )) s" && touch $@

env: $(BIN)/.installed

demo: env
	@start=$$(date +%s); \
	$(BIN)/infir run recipes/tiny.yaml && \
	echo ">>> infir run took $$(( $$(date +%s) - start )) s; report: runs/tiny/report.html"

test: env
	$(BIN)/python -m pytest -q -p no:cacheprovider tests

lint: env
	$(BIN)/ruff check infir tests bench

clean:
	rm -rf runs .pytest_cache
