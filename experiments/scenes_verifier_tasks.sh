#!/usr/bin/env bash
# Which verifier is best depends on the task (the paper's finding on T2I-CompBench's categories), in miniature on the
# scenes benchmark, whose conditions have two aspects: count (1-6 blocks) and relation (most on the left/right).
# Random search (4 Heun steps; 7 = no search, 28 and 112 search NFEs) on model=scenes with each scenes verifier:
#   scene_checker (exact, both aspects), scene_classifier (learned, p(count)·p(relation)), and the learned classifier's
#   heads alone (verifier.aspect=count: p(count); verifier.aspect=relation: p(relation)),
# evaluated by the checker: accuracy, count accuracy and relation accuracy per verifier and budget.
# 600 conditions (the benchmark's default) unless overridden.
# Usage: experiments/scenes_verifier_tasks.sh OUT_DIR [extra Hydra overrides for every job]
set -euo pipefail
out=${1:?usage: experiments/scenes_verifier_tasks.sh OUT_DIR [overrides...]}
shift
py=${PYTHON:-.venv/bin/python}
common=(model=scenes benchmark=scenes budget.nfe=7,28,112 progress=false "$@")
"$py" -m inference_scaling.reporting.wandb_logger group "$out" > /dev/null

"$py" -m inference_scaling -m "${common[@]}" verifier=scene_checker \
  "label='scene_checker (exact, count and relation)'" hydra.sweep.dir="$out/checker"
"$py" -m inference_scaling -m "${common[@]}" verifier=scene_classifier \
  "label='scene_classifier, p(count)·p(relation)'" hydra.sweep.dir="$out/classifier"
"$py" -m inference_scaling -m "${common[@]}" verifier=scene_classifier verifier.aspect=count \
  "label='scene_classifier, p(count) alone'" hydra.sweep.dir="$out/classifier_count"
"$py" -m inference_scaling -m "${common[@]}" verifier=scene_classifier verifier.aspect=relation \
  "label='scene_classifier, p(relation) alone'" hydra.sweep.dir="$out/classifier_relation"
report=()
[[ " $* " == *" logger=none "* ]] || report=(--wandb)
"$py" -m inference_scaling.reporting.curves "$out" ${report[@]+"${report[@]}"}
