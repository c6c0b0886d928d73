#!/usr/bin/env bash
# Every search algorithm at equal NFE budgets, one line per algorithm (the paper's second axis):
#   digits with the IS-oracle analog (classifier_prob), evaluated by FID / IS / KID / accuracy;
#   scenes with the exact checker, evaluated by checker accuracy and FID / KID.
# Budgets start where every algorithm fits (evolutionary search needs P + (P - E) candidates).
# Usage: experiments/compare_algorithms.sh OUT_DIR [extra Hydra overrides for every job]
set -euo pipefail
out=${1:?usage: experiments/compare_algorithms.sh OUT_DIR [overrides...]}
shift
py=${PYTHON:-.venv/bin/python}
searches=random,zero_order,paths,fk_steering,evolutionary

"$py" -m inference_scaling -m search=$searches budget.nfe=48,96,192,384,768 benchmark.per_class=50 \
  verifier=classifier_prob progress=false "$@" hydra.sweep.dir="$out/digits"
"$py" -m inference_scaling.reporting.curves "$out/digits"
"$py" -m inference_scaling -m search=$searches budget.nfe=112,224,448,896,1792 model=scenes benchmark=scenes \
  benchmark.per_class=25 verifier=scene_checker progress=false "$@" hydra.sweep.dir="$out/scenes"
"$py" -m inference_scaling.reporting.curves "$out/scenes"
