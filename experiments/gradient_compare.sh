#!/usr/bin/env bash
# Gradient search against random and zero-order search at equal priced compute: budget.nfe is the search's priced NFEs
# per condition, forward NFEs + search.backward_nfe × backward rows (0.75, measured by experiments/backward_ratio.py),
# so at each budget every line has spent at most the same compute.
#   scenes: the learned scene_classifier is the objective (differentiable, what the searches maximise), the exact
#           checker the evaluation (accuracy, count/relation accuracy), so verifier hacking shows;
#   digits: classifier_prob (the IS-oracle analog) is the objective; FID / KID / precision / recall in the classifier's
#           features and the classifier's own accuracy are the evaluation.
# Lines: random, zero_order (its defaults), gradient (its defaults: lr 0.1), gradient with lr 0.05, and gradient with a
# backward priced at the usual assumption of 2 forward NFEs (fewer steps per budget), plus no search (one sample).
# Usage: experiments/gradient_compare.sh OUT_DIR [extra Hydra overrides for every job]
set -euo pipefail
out=${1:?usage: experiments/gradient_compare.sh OUT_DIR [overrides...]}
shift
py=${PYTHON:-.venv/bin/python}

study() {  # name, budgets, the benchmark's overrides...
  local name=$1 budgets=$2
  shift 2
  local common=(progress=false "$@")
  "$py" -m inference_scaling -m "${common[@]}" search=random,zero_order,gradient budget.nfe="$budgets" \
    hydra.sweep.dir="$out/$name/search"
  "$py" -m inference_scaling -m "${common[@]}" search=gradient search.lr=0.05 budget.nfe="$budgets" \
    "label='gradient, lr 0.05'" hydra.sweep.dir="$out/$name/gradient_lr005"
  "$py" -m inference_scaling -m "${common[@]}" search=gradient search.backward_nfe=2.0 budget.nfe="$budgets" \
    "label='gradient, backward priced at 2 NFEs'" hydra.sweep.dir="$out/$name/gradient_priced2"
  "$py" -m inference_scaling -m "${common[@]}" budget=one_sample "label='no search'" hydra.sweep.dir="$out/$name/none"
  "$py" -m inference_scaling.reporting.curves "$out/$name"
}

study scenes 35,70,140,280 model=scenes benchmark=scenes benchmark.per_class=25 verifier=scene_classifier "$@"
study digits 15,30,60,120 benchmark.per_class=30 verifier=classifier_prob "$@"
