# `make run` and `make test` do all the set-up on a fresh machine.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
BUDGETS ?= 3,6,12,24,48,96
SWEEP ?= outputs/multirun/make-run-$(shell date +%Y%m%d-%H%M%S)

.PHONY: install run test test-slow bench clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]' 2>&1 | grep -v "is ignored: it is neither" || true
	$(PY) -c "import inference_scaling, torch, hydra, torch_fidelity"
	touch $(STAMP)

# The embedded default: random search with the IS-oracle analog on the digits model, swept over budgets, on CPU.
run: install
	$(PY) -m inference_scaling -m budget.nfe=$(BUDGETS) hydra.sweep.dir=$(SWEEP)
	$(PY) -m inference_scaling.reporting.curves $(SWEEP)

test: install
	$(PY) -m pytest -q

test-slow: install
	$(PY) -m pytest -q -m slow

bench: install
	$(PY) experiments/bench_throughput.py

clean:
	rm -rf $(VENV) .pytest_cache
