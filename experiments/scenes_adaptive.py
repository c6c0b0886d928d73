"""Adaptive budgets against uniform best-of-N on the scenes benchmark: checker accuracy against the search NFEs
actually spent, and where the adaptive pool's NFEs went (by block count).

Four Hydra multiruns over the same budgets: random search and `search=adaptive`, each with the exact checker
(success threshold 0, its "correct") and with the learned scene classifier (thresholds `--classifier-thresholds`
on p(count)·p(relation); 0.5: both heads call the condition most likely), every job evaluated by the checker. The
pool is per chunk; the default chunk (1,024 conditions) holds the whole set. Tables go to OUT/adaptive.md and
OUT/adaptive.csv. Finished jobs are skipped on a rerun (the CLI's own resume).

Usage: OMP_NUM_THREADS=1 .venv/bin/python experiments/scenes_adaptive.py OUT [--per-class 20]
       [--budgets 7,14,28,56,112] [--classifier-thresholds 0.5,0.9,0.99] [extra Hydra overrides for every job]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from omegaconf import OmegaConf

VERIFIERS = ("scene_checker", "scene_classifier")
COUNTS = range(1, 7)


def sweep(out: Path, verifier: str, search: str, thresholds: str, budgets: str, per_class: int,
          extra: list[str]) -> list[str]:
    """The command line of one multirun (the study's unit)."""
    args = ["model=scenes", "benchmark=scenes", f"benchmark.per_class={per_class}", f"verifier={verifier}",
            f"search={search}", f"budget.nfe={budgets}", "logger=none", "progress=false", *extra,
            f"hydra.sweep.dir={out / f'{verifier}_{search}'}"]
    if search == "adaptive":
        args.insert(5, f"search.success_threshold={thresholds}")
    return [sys.executable, "-m", "inference_scaling", "-m", *args]


def jobs(folder: Path) -> list[tuple[dict, list[dict], object]]:
    """(metrics, records, success threshold or None) of each job of a multirun, by threshold and budget."""
    found = []
    for metrics_file in folder.glob("*/metrics.json"):
        threshold = OmegaConf.load(metrics_file.parent / "config.yaml").search.get("success_threshold")
        with open(metrics_file.parent / "results.csv", newline="") as f:
            found.append((json.loads(metrics_file.read_text()), list(csv.DictReader(f)), threshold))
    return sorted(found, key=lambda job: (job[2] or 0.0, job[0]["nfe"]))


def blocks(record: dict) -> int:
    return int(record["prompt"].split()[0])  # "<n> block[s], most on the <left|right>"


def by_count(records: list[dict], key: str) -> list[float]:
    groups = defaultdict(list)
    for r in records:
        groups[blocks(r)].append(float(r[key]))
    return [sum(groups[n]) / len(groups[n]) for n in COUNTS]


def tables(out: Path) -> tuple[str, list[dict]]:
    rows, lines = [], []
    lines += ["| verifier | search | budget.nfe | NFEs spent per condition | unspent | accuracy | count acc. | "
              "relation acc. | verifier's own score |", "|---|---|---|---|---|---|---|---|---|"]
    spent = []
    for verifier in VERIFIERS:
        for search in ("random", "adaptive"):
            for metrics, records, threshold in jobs(out / f"{verifier}_{search}"):
                row = {"verifier": verifier, "search": search, "budget": metrics["nfe"],
                       "threshold": threshold if search == "adaptive" else "",
                       "nfe_spent": metrics["nfe_search_per_condition"],
                       "unspent": metrics["nfe"] - metrics["nfe_search_per_condition"],
                       "accuracy": metrics["accuracy"], "count_accuracy": metrics["count_accuracy"],
                       "relation_accuracy": metrics["relation_accuracy"], "verifier_score": metrics["verifier_score"],
                       **{f"nfe_{n}_blocks": v for n, v in zip(COUNTS, by_count(records, "nfe_search"))},
                       **{f"accuracy_{n}_blocks": v for n, v in zip(COUNTS, by_count(records, "eval_accuracy"))}}
                rows.append(row)
                name = f"adaptive (≥ {row['threshold']:g})" if search == "adaptive" else "random (best-of-N)"
                lines.append(f"| `{verifier}` | {name} | {row['budget']} | {row['nfe_spent']:.1f} | "
                             f"{row['unspent']:.1f} | {row['accuracy']:.3f} | {row['count_accuracy']:.3f} | "
                             f"{row['relation_accuracy']:.3f} | {row['verifier_score']:.3f} |")
                if search == "adaptive":
                    spent.append(row)
    lines += ["", "Adaptive: search NFEs per condition by block count (random search spends budget.nfe on every "
              "condition), and checker accuracy by block count (adaptive / random).", "",
              "| verifier | budget.nfe | " + " | ".join(f"{n} blocks" for n in COUNTS) + " |",
              "|---|---|" + "---|" * len(COUNTS)]
    uniform = {(r["verifier"], r["budget"]): r for r in rows if r["search"] == "random"}
    for row in spent:
        other = uniform.get((row["verifier"], row["budget"]))
        cells = []
        for n in COUNTS:
            acc = f"{row[f'accuracy_{n}_blocks']:.2f}" + (f" / {other[f'accuracy_{n}_blocks']:.2f}" if other else "")
            cells.append(f"{row[f'nfe_{n}_blocks']:.1f} NFEs, acc. {acc}")
        lines.append(f"| `{row['verifier']}` ≥ {row['threshold']:g} | {row['budget']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n", rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--per-class", type=int, default=20)
    parser.add_argument("--budgets", default="7,14,28,56,112")
    parser.add_argument("--classifier-thresholds", default="0.5,0.9,0.99")
    args, extra = parser.parse_known_args()
    thresholds = {"scene_checker": "0", "scene_classifier": args.classifier_thresholds}
    env = {**os.environ, "WANDB_SILENT": "true", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    for verifier in VERIFIERS:
        for search in ("random", "adaptive"):
            command = sweep(args.out, verifier, search, thresholds[verifier], args.budgets, args.per_class, extra)
            print("$", " ".join(command[1:]), flush=True)
            subprocess.run(command, check=True, env=env)
    text, rows = tables(args.out)
    (args.out / "adaptive.md").write_text(text)
    with open(args.out / "adaptive.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(text)


if __name__ == "__main__":
    main()
