#!/usr/bin/env bash
# FK steering with its particles on the SDE (model.solver=sde, no renoising: search.delta_f=0) against FK steering
# on the ODE with renoising after each resampling (the default, search.delta_f=0.1), at equal NFE budgets, on scenes,
# with the learned scene classifier and the exact checker as verifiers (checker accuracy is the evaluation).
# Lines: Heun 4 steps + renoising (the default sampler); Euler 8 steps + renoising (the SDE's grid without its
# noise); SDE 8 steps, g(σ) = s·σ², s = 1, 2, 3, 4, 6, no renoising; SDE 8 steps + renoising (s = 1, 3); SDE s = 3
# without renoising at the budgets that buy the Heun line's particle counts (K = 3, 6, 12); no search (one sample).
# About 12 minutes per verifier on one CPU thread.
# Usage: experiments/fk_sde.sh OUT_DIR [extra Hydra overrides for every job, e.g. seed=1 or benchmark.per_class=50]
set -euo pipefail
out=${1:?usage: experiments/fk_sde.sh OUT_DIR [overrides...]}
shift
py=${PYTHON:-.venv/bin/python}
budgets=48,96,192
common=(model=scenes benchmark=scenes benchmark.per_class=100 logger=none progress=false "$@")
heun4=(model.solver=heun model.search_steps=4 model.final_steps=4)
euler8=(model.solver=euler model.search_steps=8 model.final_steps=8)
sde8=(model.solver=sde model.search_steps=8 model.final_steps=8)

for verifier in scene_classifier scene_checker; do
  dir="$out/$verifier"
  sweep() {  # sweep NAME LABEL OVERRIDES...: one line of the study
    local name=$1 label=$2
    shift 2
    "$py" -m inference_scaling -m "${common[@]}" verifier=$verifier "$@" "label='$label'" \
      hydra.sweep.dir="$dir/$name"
  }
  sweep heun4_renoise "FK, Heun 4 + renoise Δf=0.1" "${heun4[@]}" search=fk_steering budget.nfe=$budgets
  sweep euler8_renoise "FK, Euler 8 + renoise Δf=0.1" "${euler8[@]}" search=fk_steering budget.nfe=$budgets
  for s in 1 2 3 4 6; do
    sweep sde8_s$s "FK, SDE 8 s=$s, Δf=0" "${sde8[@]}" model.sde_scale=$s search=fk_steering search.delta_f=0 \
      budget.nfe=$budgets
  done
  for s in 1 3; do
    sweep sde8_s${s}_renoise "FK, SDE 8 s=$s + renoise Δf=0.1" "${sde8[@]}" model.sde_scale=$s search=fk_steering \
      budget.nfe=$budgets
  done
  # A particle costs 11 NFEs without renoising, 16 with Heun 4 + renoising: 33, 66, 132 buy K = 3, 6, 12.
  sweep sde8_s3_equal_k "FK, SDE 8 s=3, Δf=0, K of Heun 4" "${sde8[@]}" model.sde_scale=3 search=fk_steering \
    search.delta_f=0 budget.nfe=33,66,132
  sweep no_search_heun4 "no search, Heun 4" "${heun4[@]}" budget=one_sample
  sweep no_search_euler8 "no search, Euler 8" "${euler8[@]}" budget=one_sample
  for s in 1 2 3; do
    sweep no_search_sde8_s$s "no search, SDE 8 s=$s" "${sde8[@]}" model.sde_scale=$s budget=one_sample
  done
  "$py" -m inference_scaling.reporting.curves "$dir"
done
