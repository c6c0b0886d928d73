"""Turn a multirun folder into scaling curves: each evaluation metric against search NFEs.

    inference-scaling-report outputs/multirun/2026-11-25_12-00-00

Reads every finished job (a folder with metrics.json) below the given folder, groups jobs into one line per
(search, verifier, model sampler) and writes, into the folder: scaling.png (one panel per metric),
scaling.csv and scaling.md (the same numbers as a table).
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

METRICS_SHOWN = [("accuracy", "accuracy"), ("count_accuracy", "count accuracy"),
                 ("relation_accuracy", "relation accuracy"), ("checker_score", "mean checker score"),
                 ("verifier_score", "mean verifier score (own)"), ("is", "IS"), ("fid", "FID"), ("kid", "KID"),
                 ("precision", "precision"), ("recall", "recall")]
COLUMNS = ["line", "nfe", "n_candidates", *[k for k, _ in METRICS_SHOWN], "nfe_search_per_condition",
           "search_seconds", "job"]


def collect(folder: Path) -> list[dict]:
    """One row per finished job below `folder`, sorted by line then NFE."""
    rows = []
    for metrics_file in sorted(folder.rglob(METRICS)):
        job = metrics_file.parent
        metrics = json.loads(metrics_file.read_text())
        cfg = OmegaConf.load(job / "config.yaml")
        line = cfg.get("label") or (f"{cfg.search.name} / {cfg.verifier.name} / {cfg.model.name} "
                                    f"{cfg.model.solver}-{cfg.model.search_steps}")
        rows.append({"line": line, **metrics, "job": str(job.relative_to(folder))})
    return sorted(rows, key=lambda r: (r["line"], r["nfe"]))


def write_table(rows: list[dict], folder: Path) -> None:
    text = io.StringIO()
    columns = [c for c in COLUMNS if any(c in r for r in rows)]
    writer = csv.DictWriter(text, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    _atomic_write(folder / "scaling.csv", text.getvalue().encode())
    shown = [c for c in columns if c not in ("job", "search_seconds", "nfe_search_per_condition")]
    lines = ["| " + " | ".join(shown) + " |", "|" + "---|" * len(shown)]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r.get(c)) for c in shown) + " |")
    _atomic_write(folder / "scaling.md", ("\n".join(lines) + "\n").encode())


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def plot(rows: list[dict], folder: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plotted = [(k, t) for k, t in METRICS_SHOWN if any(k in r for r in rows)]
    columns = 4
    rows_of_panels = -(-(len(plotted) + 1) // columns)  # one spare panel holds the legend
    fig, axes = plt.subplots(rows_of_panels, columns, figsize=(3.4 * columns, 3.0 * rows_of_panels), squeeze=False)
    lines = sorted({r["line"] for r in rows})
    for ax, (key, title) in zip(axes.flat, plotted):
        for line in lines:
            points = [(r["nfe"], r[key]) for r in rows if r["line"] == line and key in r]
            if points:
                x, y = zip(*points)
                ax.plot(x, y, marker="o", label=line)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("NFEs per sample (search)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(plotted):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    axes.flat[-1].legend(handles, labels, loc="center", fontsize=8, title="line")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    _atomic_write(folder / "scaling.png", buffer.getvalue())


def report(folder: Path) -> list[dict]:
    rows = collect(folder)
    if not rows:
        raise FileNotFoundError(f"no finished job (a folder with {METRICS}) below {str(folder)!r}")
    write_table(rows, folder)
    plot(rows, folder)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Scaling curves (PNG) and a table (CSV, markdown) from a multirun folder.")
    parser.add_argument("folder", type=Path, help="a multirun folder, e.g. outputs/multirun/<date>")
    args = parser.parse_args(argv)
    try:
        rows = report(args.folder)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    print((args.folder / "scaling.md").read_text(), end="")
    print(f"wrote {len(rows)} jobs: {args.folder / 'scaling.png'}, {args.folder / 'scaling.csv'}, {args.folder / 'scaling.md'}")


if __name__ == "__main__":
    main()
