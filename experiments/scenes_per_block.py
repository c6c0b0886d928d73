"""Checker accuracy by block count for every job of a scenes multirun folder (the no-search table's last row).

    python experiments/scenes_per_block.py SWEEP_DIR

Reads each job's `results.csv` (its `prompt` starts with the block count, `eval_accuracy` is the checker's
verdict) and `config.yaml`; prints one Markdown row per job: Heun steps, NFEs, seed, noise generator, conditions and
the accuracy for 1 … 6 blocks.
"""

from __future__ import annotations

import csv
import sys
from collections import defaultdict
from pathlib import Path

from omegaconf import OmegaConf


def main() -> None:
    if len(sys.argv) != 2 or not Path(sys.argv[1]).is_dir():
        sys.exit(f"usage: {Path(sys.argv[0]).name} SWEEP_DIR (a multirun folder of scenes jobs)")
    rows = []
    for results in sorted(Path(sys.argv[1]).glob("*/results.csv")):
        cfg = OmegaConf.load(results.parent / "config.yaml")
        correct = defaultdict(list)
        with open(results, newline="") as f:
            for record in csv.DictReader(f):
                correct[int(record["prompt"].split()[0])].append(float(record["eval_accuracy"]))
        accuracy = " / ".join(f"{sum(v) / len(v):.2f}" for _, v in sorted(correct.items()))
        rows.append((cfg.model.search_steps, cfg.budget.nfe, cfg.seed, cfg.noise, sum(map(len, correct.values())),
                     accuracy))
    print("| Heun steps | NFEs | seed | noise | conditions | accuracy by block count (1 / 2 / … ) |")
    print("|---|---|---|---|---|---|")
    for row in sorted(rows):
        print("| " + " | ".join(str(v) for v in row) + " |")


if __name__ == "__main__":
    main()
