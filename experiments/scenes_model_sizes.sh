#!/usr/bin/env bash
# A smaller model with search against a larger one without (the paper's Figure 11, SiT-B/2, L/2, XL/2) in miniature on
# the scenes benchmark: for each of the three scenes flow models (model=scenes_small, scenes, scenes_large: the same
# recipe at 0.30 M, 1.42 M and 4.70 M parameters), checker accuracy of
#   (a) no search, more Heun steps (1, 2, 4, 8, 16);
#   (b) random search with the exact checker as verifier (4 Heun steps; 7 to 112 search NFEs);
#   (c) random search with the learned scene classifier as verifier (the same budgets),
# against the denoising compute per sample: GFLOPs per NFE (inference_scaling.flops) x (search + final NFEs).
# Writes the report (scaling.png/.csv/.md with GFLOPs on the x axis) and model_sizes.png / model_sizes.md
# (experiments/plot_model_sizes.py: one panel, a colour per model, with each model's parameters and GFLOPs/NFE).
# 300 conditions (benchmark.per_class=25) unless overridden.
# Usage: experiments/scenes_model_sizes.sh OUT_DIR [extra Hydra overrides for every job]
set -euo pipefail
out=${1:?usage: experiments/scenes_model_sizes.sh OUT_DIR [overrides...]}
shift
py=${PYTHON:-.venv/bin/python}
here=$(dirname "$0")
common=(benchmark=scenes benchmark.per_class=25 progress=false "$@")
# One W&B group for the study's sweeps (kept in $out/.wandb_group; a rerun in $out keeps it).
"$py" -m inference_scaling.reporting.wandb_logger group "$out" > /dev/null

for model in scenes_small scenes scenes_large; do
  "$py" -m inference_scaling -m model=$model "${common[@]}" verifier=scene_checker budget=one_sample \
    model.search_steps=1,2,4,8,16 'model.final_steps=${model.search_steps}' \
    "label='$model: no search, more Heun steps'" hydra.sweep.dir="$out/${model}_steps"
  "$py" -m inference_scaling -m model=$model "${common[@]}" verifier=scene_checker budget.nfe=7,14,28,56,112 \
    "label='$model: random search, scene_checker'" hydra.sweep.dir="$out/${model}_search_checker"
  "$py" -m inference_scaling -m model=$model "${common[@]}" verifier=scene_classifier budget.nfe=7,14,28,56,112 \
    "label='$model: random search, scene_classifier'" hydra.sweep.dir="$out/${model}_search_classifier"
done
report=()  # the curves, table and figure go to the study's W&B group too, unless the jobs logged nowhere
[[ " $* " == *" logger=none "* ]] || report=(--wandb)
"$py" -m inference_scaling.reporting.curves "$out" --x gflops ${report[@]+"${report[@]}"}
"$py" "$here/plot_model_sizes.py" "$out"
