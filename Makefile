# `make run` and `make test` do all the set-up on a fresh machine.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
BUDGETS ?= 3,6,12,24,48,96
STAMP_TIME := $(shell date +%Y%m%d-%H%M%S)
SWEEP ?= outputs/multirun/make-run-$(STAMP_TIME)
DIGITS_SWEEP ?= outputs/multirun/digits-$(STAMP_TIME)

.PHONY: install run run-digits compare model-sizes verifier-tasks test test-slow adaptive gradient fk-sde bench bench-overlap bench-noise bench-noise-ahead bench-verifiers bench-backends bench-memory bench-reuse clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]' 2>&1 | grep -v "is ignored: it is neither" || true
	$(PY) -c "import inference_scaling, torch, hydra, torch_fidelity"
	touch $(STAMP)

# The headline study on the scenes benchmark (experiments/scenes_headline.sh), on CPU.
run: install
	PYTHON=$(PY) bash experiments/scenes_headline.sh $(SWEEP)

# The digits study: random search with the IS-oracle analog on the embedded default, swept over budgets.
run-digits: install
	$(PY) -m inference_scaling -m budget.nfe=$(BUDGETS) hydra.sweep.dir=$(DIGITS_SWEEP)
	$(PY) -m inference_scaling.reporting.curves $(DIGITS_SWEEP)

# All search algorithms at equal NFE budgets on digits and scenes (experiments/compare_algorithms.sh).
compare: install
	PYTHON=$(PY) bash experiments/compare_algorithms.sh outputs/multirun/compare-$(STAMP_TIME) logger=none

# Three sizes of the scenes model with and without search, against GFLOPs (experiments/scenes_model_sizes.sh).
model-sizes: install
	OMP_NUM_THREADS=1 PYTHON=$(PY) bash experiments/scenes_model_sizes.sh outputs/multirun/model-sizes-$(STAMP_TIME) logger=none

# The scenes verifiers by aspect, count against relation (experiments/scenes_verifier_tasks.sh).
verifier-tasks: install
	OMP_NUM_THREADS=1 PYTHON=$(PY) bash experiments/scenes_verifier_tasks.sh outputs/multirun/verifier-tasks-$(STAMP_TIME) logger=none

# The suite on 2 workers (the CI machine's 2 cores; each worker runs torch on one thread).
test: install
	$(PY) -m pytest -q -n 2 --durations=20

test-slow: install
	$(PY) -m pytest -q -m slow

bench: install
	$(PY) experiments/bench_throughput.py

# Search wall time with an API-like verifier (a fixed wait per call), scored inline or beside the denoiser.
bench-overlap: install
	OMP_NUM_THREADS=1 $(PY) experiments/bench_overlap.py

# Seconds per candidate of each noise generator at four model sizes (experiments/bench_noise.py).
bench-noise: install
	OMP_NUM_THREADS=1 $(PY) experiments/bench_noise.py

# Noises drawn inline or ahead behind a stand-in for an off-host denoiser (experiments/bench_noise_ahead.py).
bench-noise-ahead: install
	OMP_NUM_THREADS=1 $(PY) experiments/bench_noise_ahead.py

# Adaptive budgets vs best-of-N on scenes, checker and learned verifier (experiments/scenes_adaptive.py; README).
adaptive: install
	OMP_NUM_THREADS=1 $(PY) experiments/scenes_adaptive.py outputs/adaptive

# Gradient search vs random and zero-order at equal priced NFEs on scenes and digits (README), and the measured
# price of a backward row (experiments/backward_ratio.py).
gradient: install
	OMP_NUM_THREADS=1 $(PY) experiments/backward_ratio.py
	OMP_NUM_THREADS=1 PYTHON=$(PY) bash experiments/gradient_compare.sh outputs/gradient logger=none

# FK steering on the SDE without renoising vs renoise + ODE at equal NFEs on scenes (experiments/fk_sde.sh; README).
fk-sde: install
	OMP_NUM_THREADS=1 PYTHON=$(PY) bash experiments/fk_sde.sh outputs/fk_sde

# Seconds and forward passes per image of every verifier on the CPU (experiments/bench_verifiers.py).
bench-verifiers: install
	$(PY) experiments/bench_verifiers.py

# Seconds per NFE, decode cost and search/plain throughput of every latent backend on tiny random models
# (experiments/bench_backends.py; `--size real --device cuda` on a GPU: SiT-XL/2 and FLUX.1 size).
bench-backends: install
	OMP_NUM_THREADS=1 $(PY) experiments/bench_backends.py --searches random,zero_order,paths,fk_steering,evolutionary,adaptive --repeats 11

# Peak RSS of one job against its number of conditions: 1k, 10k, 50k digits (experiments/bench_memory.py).
bench-memory: install
	$(PY) experiments/bench_memory.py

# A 5-budget sweep with and without candidate reuse: NFEs computed and seconds (experiments/bench_reuse.py).
bench-reuse: install
	$(PY) experiments/bench_reuse.py --repeats 3
	$(PY) experiments/bench_reuse.py --search zero_order --budgets 15,27,51,99,195
	$(PY) experiments/bench_reuse.py --search evolutionary --budgets 42,78,150,294,582

clean:
	rm -rf $(VENV) .pytest_cache
