#!/usr/bin/env bash
# The paper's Figure 1 in miniature on the scenes benchmark: checker accuracy against NFEs per sample for
#   (a) no search, more denoising steps;
#   (b) random search with the exact checker as verifier;
#   (c) random search with the learned scene classifier as verifier, evaluated by the checker.
# Usage: experiments/scenes_headline.sh OUT_DIR [extra Hydra overrides for every job]
set -euo pipefail
out=${1:?usage: experiments/scenes_headline.sh OUT_DIR [overrides...]}
shift
py=${PYTHON:-.venv/bin/python}
common=(model=scenes benchmark=scenes "$@")
# One W&B group for the study's three sweeps (kept in $out/.wandb_group; a rerun in $out keeps it).
"$py" -m inference_scaling.reporting.wandb_logger group "$out" > /dev/null

"$py" -m inference_scaling -m "${common[@]}" verifier=scene_checker budget=one_sample \
  model.search_steps=1,2,4,8,16 'model.final_steps=${model.search_steps}' \
  "label='no search, more Heun steps'" hydra.sweep.dir="$out/steps"
"$py" -m inference_scaling -m "${common[@]}" verifier=scene_checker budget.nfe=7,14,28,56,112 \
  "label='random search, verifier scene_checker (4 Heun steps)'" hydra.sweep.dir="$out/search_checker"
"$py" -m inference_scaling -m "${common[@]}" verifier=scene_classifier budget.nfe=7,14,28,56,112 \
  "label='random search, verifier scene_classifier (4 Heun steps)'" hydra.sweep.dir="$out/search_classifier"
report=()  # the curves, table and figure go to the study's W&B group too, unless the jobs logged nowhere
[[ " $* " == *" logger=none "* ]] || report=(--wandb)
"$py" -m inference_scaling.reporting.curves "$out" ${report[@]+"${report[@]}"}
