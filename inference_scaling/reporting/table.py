"""Search with A, evaluate with B: the paper's Table 2 from a study folder.

    inference-scaling-table FOLDER [--nfe N]

Rows are the verifier that searched, per search algorithm; columns are the evaluation metrics every job scored
its selected images with (`benchmark.metrics`, `metric_<label>` in metrics.json). The no-search row is the study's
job with one candidate (`budget=one_sample`). Each search row uses its largest budget (or `--nfe`). Writes, into
FOLDER: table.md (the scores, then the percentage gain of every cell over the no-search row, the paper's Figures
8 and 9), table.csv and table.png (a heatmap of the gains with the scores written in).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path

from omegaconf import OmegaConf

from inference_scaling.reporting.records import METRICS, _atomic_write

BASELINE = "no search"


def collect(folder: Path, per_category: str = "") -> list[dict]:
    """Per finished whole job below `folder`: its verifier, search, NFEs, candidates and metric_* scores, or with
    `per_category` that metric's score per category (`<per_category>/<category>`, e.g. T2I-CompBench's)."""
    jobs = []
    for metrics_file in sorted(folder.rglob(METRICS)):
        cfg = OmegaConf.load(metrics_file.parent / "config.yaml")
        if OmegaConf.select(cfg, "benchmark.shard", default=""):
            continue
        metrics = json.loads(metrics_file.read_text())
        jobs.append({"verifier": cfg.verifier.name, "search": cfg.search.name, "nfe": metrics["nfe"],
                     "n_candidates": metrics["n_candidates"], "job": str(metrics_file.parent.relative_to(folder)),
                     "scores": ({k[len(per_category) + 1:]: v for k, v in metrics.items()
                                 if k.startswith(per_category + "/")} if per_category else
                                {k[len("metric_"):]: v for k, v in metrics.items()
                                 if k.startswith("metric_") and "/" not in k})})
    return jobs


def build(jobs: list[dict], nfe: int | None = None) -> tuple[list[str], list[tuple[str, dict]]]:
    """(metric labels, [(row name, {metric: score})]) with the no-search row first."""
    metrics = sorted({m for job in jobs for m in job["scores"]})
    if not metrics:
        raise ValueError("no job scored evaluation metrics (run the study with benchmark.metrics=[...]), or none "
                         "has the --per-category metric")
    baseline = [job for job in jobs if job["n_candidates"] == 1]
    rows = []
    if baseline:
        rows.append((BASELINE, baseline[0]["scores"]))
    searched = {}
    for job in jobs:
        if job["n_candidates"] == 1 or (nfe is not None and job["nfe"] != nfe):
            continue
        key = (job["search"], job["verifier"])
        if key not in searched or job["nfe"] > searched[key]["nfe"]:
            searched[key] = job
    if not searched:
        raise ValueError(f"no search job{f' at nfe={nfe}' if nfe is not None else ''} below the folder")
    for (search, verifier), job in sorted(searched.items()):
        rows.append((f"{verifier} ({search}, {job['nfe']} NFEs)", job["scores"]))
    return metrics, rows


def gains(metrics: list[str], rows: list[tuple[str, dict]]) -> list[tuple[str, dict]]:
    """Each cell's percentage change over the no-search row (empty without one)."""
    if not rows or rows[0][0] != BASELINE:
        return []
    base = rows[0][1]
    return [(name, {m: 100.0 * (scores[m] - base[m]) / abs(base[m]) for m in metrics
                    if m in scores and m in base and scores[m] is not None and base[m]})
            for name, scores in rows[1:]]


def _fmt(value) -> str:
    return "—" if value is None else f"{value:.4g}"


def write(folder: Path, metrics: list[str], rows: list[tuple[str, dict]]) -> None:
    gained = gains(metrics, rows)
    lines = ["| search verifier | " + " | ".join(metrics) + " |", "|---|" + "---|" * len(metrics)]
    lines += ["| " + name + " | " + " | ".join(_fmt(scores.get(m)) for m in metrics) + " |" for name, scores in rows]
    if gained:
        lines += ["", f"Gain over {BASELINE} (%):", "", "| search verifier | " + " | ".join(metrics) + " |",
                  "|---|" + "---|" * len(metrics)]
        lines += ["| " + name + " | " + " | ".join(f"{g[m]:+.1f}" if m in g else "—" for m in metrics) + " |"
                  for name, g in gained]
    _atomic_write(folder / "table.md", ("\n".join(lines) + "\n").encode())
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["search verifier", *metrics, *(f"gain_{m}" for m in metrics)])
    by_name = dict(gained)
    for name, scores in rows:
        writer.writerow([name, *(scores.get(m) for m in metrics), *(by_name.get(name, {}).get(m) for m in metrics)])
    _atomic_write(folder / "table.csv", text.getvalue().encode())
    _heatmap(folder / "table.png", metrics, rows, gained)


def _heatmap(path: Path, metrics: list[str], rows: list[tuple[str, dict]], gained: list[tuple[str, dict]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    shown = gained or [(name, {}) for name, _ in rows]
    scores = dict(rows)
    values = np.array([[g.get(m, np.nan) for m in metrics] for _, g in shown], dtype=float)
    fig, ax = plt.subplots(figsize=(1.6 * len(metrics) + 3, 0.5 * len(shown) + 1.5))
    limit = np.nanmax(np.abs(values)) if np.isfinite(values).any() else 1.0
    ax.imshow(values, cmap="RdYlGn", vmin=-limit, vmax=limit, aspect="auto")
    for i, (name, g) in enumerate(shown):
        for j, m in enumerate(metrics):
            score = scores[name].get(m)
            text = _fmt(score) + (f"\n{g[m]:+.1f}%" if m in g else "")
            ax.text(j, i, text, ha="center", va="center", fontsize=7)
    ax.set_xticks(range(len(metrics)), metrics, rotation=30, ha="right")
    ax.set_yticks(range(len(shown)), [name for name, _ in shown], fontsize=7)
    ax.set_title(f"evaluation metric (columns) of searching with a verifier (rows): gain over {BASELINE}"
                 if gained else "evaluation metric (columns) of searching with a verifier (rows)", fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    _atomic_write(path, buffer.getvalue())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Search verifier × evaluation metric table (the paper's Table 2).")
    parser.add_argument("folder", type=Path, help="a study folder (multirun folders of the verifiers' sweeps)")
    parser.add_argument("--nfe", type=int, default=None, help="the search budget to show (default: each row's largest)")
    parser.add_argument("--per-category", default="", metavar="METRIC",
                        help="columns: METRIC per category (METRIC/<category> in metrics.json, e.g. compbench) "
                             "instead of the evaluation metrics")
    parser.add_argument("--wandb", action="store_true",
                        help="also log the table and the heatmap as the study group's run 'report'")
    parser.add_argument("--wandb-mode", choices=["offline", "online", "disabled"], default="offline")
    parser.add_argument("--wandb-project", default="inference-scaling")
    args = parser.parse_args(argv)
    try:
        metrics, rows = build(collect(args.folder, args.per_category), args.nfe)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    write(args.folder, metrics, rows)
    print((args.folder / "table.md").read_text(), end="")
    print(f"wrote {args.folder / 'table.md'}, {args.folder / 'table.csv'}, {args.folder / 'table.png'}")
    if args.wandb:
        from inference_scaling.config import WandbConfig
        from inference_scaling.reporting.wandb_logger import log_table, study_group

        log_table(WandbConfig(mode=args.wandb_mode, project=args.wandb_project), args.folder, metrics, rows,
                  study_group(args.folder))


if __name__ == "__main__":
    main()
