"""Turn a study folder into scaling curves: each evaluation metric against search NFEs.

    inference-scaling-report outputs/multirun/2026-11-25_12-00-00 [--strict] [--wandb]

Reads every finished job (a folder with metrics.json) below the given folder, groups jobs into one line per
(search, verifier, model sampler) and writes, into the folder: scaling.png (one panel per metric),
scaling.csv and scaling.md (the same numbers as a table), and fits.csv and fits.md: per line and metric, a
saturating power law fitted against search NFEs (inference_scaling.reporting.fits: its ceiling, exponent and the
NFEs at which it reaches 90 % of its ceiling, with bootstrap intervals over conditions, and whether it is still
rising at its largest budget), drawn dashed in scaling.png. It also lists what the curves leave out: jobs that have
not finished (with their chunk progress), jobs that each sweep below the folder (its Hydra multirun.yaml) expects
but that have no folder, and shard jobs, which are one point only once merged.
"""

from __future__ import annotations

import argparse
import csv
import io
import itertools
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ValueType
from hydra.errors import HydraException
import numpy as np
from omegaconf import OmegaConf

from inference_scaling.config import WandbConfig
from inference_scaling.reporting.fits import MIN_BUDGETS, STILL_RISING_RULE, Fit, fit_curve, predict
from inference_scaling.reporting.records import METRICS, _atomic_write
from inference_scaling.reporting.wandb_logger import log_report, study_group
from inference_scaling.store import CHUNKS, PLAN

METRICS_SHOWN = [("accuracy", "accuracy"), ("count_accuracy", "count accuracy"),
                 ("relation_accuracy", "relation accuracy"), ("checker_score", "mean checker score"),
                 ("verifier_score", "mean verifier score (own)"), ("is", "IS"), ("fid", "FID"), ("kid", "KID"),
                 ("precision", "precision"), ("recall", "recall")]
COLUMNS = ["line", "nfe", "n_candidates", *[k for k, _ in METRICS_SHOWN], "nfe_search_per_condition",
           "gflops_per_nfe", "gflops_per_condition",
           "search_seconds", *[f"{k}_{end}" for k, _ in METRICS_SHOWN for end in ("lo", "hi")], "job"]
MULTIRUN = "multirun.yaml"
BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
UNLISTABLE = {ValueType.GLOB_CHOICE_SWEEP: "a glob sweep", ValueType.INTERVAL_SWEEP: "an interval sweep"}


def _shard(cfg) -> str:
    """A finished job's `benchmark.shard` ("i/n"), or "" for a whole job."""
    return OmegaConf.select(cfg, "benchmark.shard", default="") or ""


# Metrics that are means over conditions, and the results.csv column of each condition's value.
PER_CONDITION = {"verifier_score": "final_score", "accuracy": "eval_accuracy", "count_accuracy": "eval_count_accuracy",
                 "relation_accuracy": "eval_relation_accuracy", "checker_score": "eval_checker_score"}
RESAMPLES = 1000  # bootstrap resamples of the conditions
LEVEL = 0.95


def bootstrap_interval(values: np.ndarray, resamples: int = RESAMPLES, level: float = LEVEL,
                       seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean over conditions (failed, non-finite values left out as the
    metric leaves them out); a fixed seed, so a report is reproducible."""
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return float("nan"), float("nan")
    index = np.random.default_rng(seed).integers(0, len(values), size=(resamples, len(values)))
    means = values[index].mean(axis=1)
    tail = (1 - level) / 2 * 100
    return float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))


def condition_values(job: Path) -> dict[str, dict[int, float]]:
    """Per per-condition metric a job's results.csv holds: condition id → that condition's value, in file order."""
    table = job / "results.csv"
    if not table.exists():
        return {}
    with table.open(newline="") as f:
        records = list(csv.DictReader(f))
    return {metric: {int(r["condition_id"]): float(r[column]) for r in records}
            for metric, column in PER_CONDITION.items() if records and column in records[0]}


def intervals(job: Path) -> dict[str, float]:
    """`<metric>_lo` and `<metric>_hi` of every per-condition metric a job's results.csv holds."""
    out = {}
    for metric, values in condition_values(job).items():
        out[f"{metric}_lo"], out[f"{metric}_hi"] = bootstrap_interval(np.fromiter(values.values(), dtype=np.float64))
    return out


def collect(folder: Path) -> list[dict]:
    """One row per finished whole job (not shard) below `folder`, sorted by line then NFE, with bootstrap intervals
    over conditions (`<metric>_lo`, `<metric>_hi`) of its per-condition metrics."""
    rows = []
    for metrics_file in sorted(folder.rglob(METRICS)):
        job = metrics_file.parent
        cfg = OmegaConf.load(job / "config.yaml")
        if _shard(cfg):
            continue
        metrics = json.loads(metrics_file.read_text())
        line = cfg.get("label") or (f"{cfg.search.name} / {cfg.verifier.name} / {cfg.model.name} "
                                    f"{cfg.model.solver}-{cfg.model.search_steps}")
        rows.append({"line": line, **metrics, **intervals(job), "job": str(job.relative_to(folder))})
    return sorted(rows, key=lambda r: (r["line"], r["nfe"]))


# The x axes of the curves: the NFE budget per sample, or the denoising compute per sample (GFLOPs per NFE, as
# inference_scaling.flops counts it, times the search's and the final render's NFEs), which compares model sizes.
X_AXES = {"nfe": ("nfe", "NFEs per sample (search)"),
          "gflops": ("gflops_per_condition", "GFLOPs per sample (denoising: search + final)")}


def series(rows: list[dict], key: str, x: str = "nfe") -> dict[str, list[tuple[float, float]]]:
    """Per line, its (x, value) points of metric `key` in increasing x, skipping jobs without either; `x` is a key
    of X_AXES."""
    column = X_AXES[x][0]
    points: dict[str, list[tuple[float, float]]] = {}
    for r in rows:
        if r.get(key) is not None and r.get(column) is not None:
            points.setdefault(r["line"], []).append((r[column], r[key]))
    return {line: sorted(p) for line, p in sorted(points.items())}


# The range of a metric's values, which a fitted ceiling (or floor) stays in; metrics not named are unbounded (a
# verifier's score depends on the verifier, KID's unbiased estimate can be negative).
METRIC_RANGES = {"accuracy": (0.0, 1.0), "count_accuracy": (0.0, 1.0), "relation_accuracy": (0.0, 1.0),
                 "precision": (0.0, 1.0), "recall": (0.0, 1.0), "fid": (0.0, np.inf), "is": (1.0, np.inf)}


def curve_fits(rows: list[dict], folder: Path) -> dict[tuple[str, str], Fit]:
    """(line, metric) → the fit of that curve against search NFEs (fits.fit_curve) on the jobs' means; a metric
    every job of the line has per condition (results.csv) gets bootstrap intervals, its conditions matched by id
    across the line's budgets; the ceiling stays in the metric's range (METRIC_RANGES)."""
    values = {}
    fits = {}
    for metric, _ in METRICS_SHOWN:
        for line in sorted({r["line"] for r in rows}):
            jobs = sorted((r["nfe"], r[metric], r["job"]) for r in rows
                          if r["line"] == line and r.get(metric) is not None and r.get("nfe") is not None)
            if not jobs:
                continue
            per_condition = None
            if metric in PER_CONDITION:
                for _, _, job in jobs:
                    if job not in values:
                        values[job] = condition_values(folder / job)
                by_job = [values[job].get(metric) for _, _, job in jobs]
                if all(v is not None for v in by_job):
                    ids = sorted(set().union(*by_job))
                    per_condition = np.array([[v.get(i, np.nan) for i in ids] for v in by_job], dtype=np.float64)
            nfe, means, _ = zip(*jobs)
            fits[line, metric] = fit_curve(np.array(nfe, dtype=np.float64), np.array(means, dtype=np.float64),
                                           per_condition, METRIC_RANGES.get(metric, (-np.inf, np.inf)))
    return fits


FIT_COLUMNS = ["line", "metric", "budgets", "nfe_min", "nfe_max", "direction", "ceiling", "ceiling_lo", "ceiling_hi",
               "ceiling_at_bound", "gap", "exponent", "exponent_lo", "exponent_hi", "nfe90", "nfe90_lo", "nfe90_hi",
               "gap_closed", "still_rising", "reason", "interval_reason"]


def fit_rows(fits: dict[tuple[str, str], Fit]) -> list[dict]:
    """The fits as fits.csv's rows (FIT_COLUMNS); a missing number is an empty cell."""
    return [{"line": line, "metric": metric,
             **{c: None if isinstance(v := getattr(fit, c), float) and not np.isfinite(v) else v
                for c in FIT_COLUMNS[2:]}} for (line, metric), fit in fits.items()]


def _with_interval(value: float, lo: float, hi: float) -> str:
    if not np.isfinite(value):
        return "—"
    return f"{value:.3g} [{lo:.3g}, {hi:.3g}]" if np.isfinite(lo) and np.isfinite(hi) else f"{value:.3g}"


def fit_line(line: str, metric: str, fit: Fit) -> str:
    """One curve's fit in words: `fit accuracy | line: ceiling 0.91 [0.9, 0.93], exponent 0.7 [...], 90 % of
    the ceiling at 80 NFEs [...] (largest budget 96: 91 % of the gap closed): saturated`, or `no fit: <why>`."""
    head = f"fit {metric} | {line}: "
    if not fit.ok:
        return head + f"no fit: {fit.reason}" + (f"; {fit.state}" if fit.state else "")
    bound = " (the metric's bound)" if fit.ceiling_at_bound else ""
    return head + (f"ceiling {_with_interval(fit.ceiling, fit.ceiling_lo, fit.ceiling_hi)}{bound}, "
                   f"exponent {_with_interval(fit.exponent, fit.exponent_lo, fit.exponent_hi)}, "
                   f"90 % of the ceiling at {_with_interval(fit.nfe90, fit.nfe90_lo, fit.nfe90_hi)} NFEs "
                   f"(largest budget {fit.nfe_max:g}: {100 * fit.gap_closed:.0f} % of the gap closed): {fit.state}")


def write_fits(fits: dict[tuple[str, str], Fit], folder: Path) -> None:
    """fits.csv (FIT_COLUMNS) and fits.md (the same, intervals in brackets, then the still-rising rule)."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=FIT_COLUMNS)
    writer.writeheader()
    writer.writerows(fit_rows(fits))
    _atomic_write(folder / "fits.csv", text.getvalue().encode())
    lines = ["| line | metric | budgets | ceiling | exponent | NFEs to 90 % | gap closed | state | note |",
             "|" + "---|" * 9]
    for (line, metric), f in fits.items():
        ceiling = _with_interval(f.ceiling, f.ceiling_lo, f.ceiling_hi) + (" (bound)" if f.ceiling_at_bound else "")
        closed = f"{100 * f.gap_closed:.0f} %" if np.isfinite(f.gap_closed) else "—"
        cells = [line, metric, str(f.budgets), ceiling, _with_interval(f.exponent, f.exponent_lo, f.exponent_hi),
                 _with_interval(f.nfe90, f.nfe90_lo, f.nfe90_hi), closed, f.state or "—",
                 f.reason or f.interval_reason]
        lines.append("| " + " | ".join(cells) + " |")
    rule = (f"\nFit: q(n) = c − a·(n/n0)^(−b) on the per-budget means (n0 the smallest budget); ceiling c, "
            f"exponent b, NFEs to 90 % = n0·10^(1/b); 95 % bootstrap intervals over conditions. {STILL_RISING_RULE}.\n")
    _atomic_write(folder / "fits.md", ("\n".join(lines) + "\n" + rule).encode())


def fit_summary(fits: dict[tuple[str, str], Fit]) -> list[str]:
    """What the command prints: a line per curve of MIN_BUDGETS budgets or more, one line counting the shorter
    ones, and the still-rising rule."""
    curves = [fit_line(line, metric, f) for (line, metric), f in fits.items() if f.budgets >= MIN_BUDGETS]
    short = sum(f.budgets < MIN_BUDGETS for f in fits.values())
    if short:
        curves.append(f"no fit (fewer than {MIN_BUDGETS} budgets): {short} line × metric pairs, listed in fits.md")
    return curves + ([STILL_RISING_RULE] if curves else [])


class SweepNotListed(ValueError):
    """A sweep whose jobs cannot be listed up front: another sweeper, or a glob or interval sweep."""


def expected_jobs(multirun) -> tuple[list[str], list[dict[str, str]]]:
    """The swept keys of a multirun (its multirun.yaml) and the overrides of each of its jobs, as Hydra's BasicSweeper
    makes them: hydra.sweeper.params, then the command line's overrides, a later one of a key replacing an earlier
    one; the jobs are the cartesian product of the keys' values."""
    sweeper = OmegaConf.select(multirun, "hydra.sweeper._target_")
    if sweeper != BASIC_SWEEPER:
        raise SweepNotListed(f"its sweeper {sweeper} chooses the jobs")
    params = OmegaConf.select(multirun, "hydra.sweeper.params") or {}
    lines = [f"{k}={v}" for k, v in params.items()] + list(multirun.hydra.overrides.task)
    try:
        overrides = OverridesParser.create().parse_overrides(lines)
    except HydraException as err:
        raise SweepNotListed(f"its overrides do not parse: {str(err).splitlines()[0]}") from None
    values: dict[str, list[str]] = {}
    swept: dict[str, bool] = {}
    for override in overrides:
        key = override.get_key_element()
        swept[key] = override.is_sweep_override()
        if not swept[key]:
            values[key] = [override.get_value_element_as_str()]
        elif override.value_type in UNLISTABLE:
            raise SweepNotListed(f"{override.input_line} is {UNLISTABLE[override.value_type]}")
        else:
            values[key] = list(override.sweep_string_iterator())
    jobs = [dict(zip(values, combination)) for combination in itertools.product(*values.values())]
    return [key for key, is_swept in swept.items() if is_swept], jobs


def _job_overrides(job: Path) -> dict[str, str]:
    """key → value of a job's own overrides (its .hydra/overrides.yaml), spelled as the sweeper spells them."""
    file = job / ".hydra" / "overrides.yaml"
    if not file.exists():
        return {}
    # The file is a list of override strings; `${...}` in one is the override's own text, not resolved here.
    overrides = OverridesParser.create().parse_overrides(OmegaConf.to_container(OmegaConf.load(file), resolve=False))
    return {o.get_key_element(): o.get_value_element_as_str() for o in overrides}


def chunk_progress(job: Path) -> str:
    """`3/10 chunks` from the job's plan.json and chunk files; `not started` before its plan is written."""
    plan = job / PLAN
    if not plan.exists():
        return "not started"
    done = len(list((job / CHUNKS).glob("[0-9]*.safetensors")))
    return f"{done}/{json.loads(plan.read_text())['n_chunks']} chunks"


@dataclass
class StudyStatus:
    """The jobs of a study folder that its curves leave out; folders are relative to the study folder."""

    unfinished: list[tuple[str, str]] = field(default_factory=list)  # (job folder, chunk progress)
    missing: list[tuple[str, str]] = field(default_factory=list)  # (sweep folder, overrides of a job with no folder)
    shards: list[str] = field(default_factory=list)  # finished shard jobs: one point only once merged
    not_listed: list[tuple[str, str]] = field(default_factory=list)  # (sweep folder, why its jobs are unknown)

    @property
    def incomplete(self) -> bool:
        """Whether a job is unfinished or missing (what --strict refuses)."""
        return bool(self.unfinished or self.missing)

    def lines(self) -> list[str]:
        """One line per left-out job (all shard jobs on one line)."""
        lines = [f"unfinished: {job} ({progress})" for job, progress in self.unfinished]
        lines += [f"missing: {_in(sweep)}{overrides}" for sweep, overrides in self.missing]
        if self.shards:
            lines.append(f"shard jobs (merge with inference-scaling-merge): {', '.join(self.shards)}")
        lines += [f"not checked for missing jobs: {_in(sweep)}{why}" for sweep, why in self.not_listed]
        return lines


def _in(sweep: str) -> str:
    """The sweep's name as a line's prefix; none for the study folder itself."""
    return "" if sweep == "." else f"{sweep}: "


def _sweep_of(job: Path, sweeps: list[Path]) -> Path | None:
    """The innermost sweep folder that holds `job`."""
    return max((s for s in sweeps if s in job.parents), key=lambda s: len(s.parts), default=None)


def study_status(folder: Path) -> StudyStatus:
    """Unfinished, missing and shard jobs below `folder`. A job folder holds .hydra/overrides.yaml, plan.json or
    metrics.json; a sweep's expected jobs come from its multirun.yaml, matched to its job folders on the swept
    keys' values."""
    jobs = sorted({p.parent.parent for p in folder.rglob(".hydra/overrides.yaml")}
                  | {p.parent for p in folder.rglob(PLAN)} | {p.parent for p in folder.rglob(METRICS)})
    status = StudyStatus()
    for job in jobs:
        name = str(job.relative_to(folder))
        if not (job / METRICS).exists():
            status.unfinished.append((name, chunk_progress(job)))
        elif _shard(OmegaConf.load(job / "config.yaml")):
            status.shards.append(name)
    sweeps = sorted(p.parent for p in folder.rglob(MULTIRUN))
    for sweep in sweeps:
        name = str(sweep.relative_to(folder))
        try:
            keys, expected = expected_jobs(OmegaConf.load(sweep / MULTIRUN))
        except SweepNotListed as err:
            status.not_listed.append((name, str(err)))
            continue
        own = [job for job in jobs if _sweep_of(job, sweeps) == sweep]
        present = {tuple(overrides.get(k) for k in keys) for overrides in map(_job_overrides, own)}
        for overrides in expected:
            if tuple(overrides[k] for k in keys) not in present:
                shown = {k: overrides[k] for k in keys} if keys else overrides  # a sweep of one job: all of them
                status.missing.append((name, " ".join(f"{k}={v}" for k, v in shown.items())))
    return status


def markdown_table(rows: list[dict]) -> str:
    """The rows as a markdown table of the metrics they have (what the command prints)."""
    columns = [c for c in COLUMNS if any(c in r for r in rows) and c not in ("job", "search_seconds",
                                                                              "nfe_search_per_condition")
               and not c.endswith(("_lo", "_hi"))]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(r, c) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _cell(row: dict, column: str) -> str:
    """A value, with its 95 % bootstrap interval over conditions where it has one: `0.61 [0.57, 0.65]`."""
    lo, hi = row.get(f"{column}_lo"), row.get(f"{column}_hi")
    if lo is None or hi is None or not (np.isfinite(lo) and np.isfinite(hi)):
        return _fmt(row.get(column))
    return f"{_fmt(row.get(column))} [{lo:.3g}, {hi:.3g}]"


def write_table(rows: list[dict], folder: Path, status: StudyStatus) -> None:
    """scaling.csv, and scaling.md: the table, then the jobs the curves leave out."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=[c for c in COLUMNS if any(c in r for r in rows)], extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    _atomic_write(folder / "scaling.csv", text.getvalue().encode())
    left_out = "".join(f"- {line}\n" for line in status.lines())
    notes = f"\n## Jobs not in the curves\n\n{left_out}" if left_out else ""
    _atomic_write(folder / "scaling.md", (markdown_table(rows) + notes).encode())


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def plot(rows: list[dict], folder: Path, x: str = "nfe", fits: dict[tuple[str, str], Fit] | None = None) -> None:
    """scaling.png: a panel per metric, a line per line with its bootstrap band, and (against NFEs) its fit dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    column, xlabel = X_AXES[x]
    plotted = [(k, t) for k, t in METRICS_SHOWN if any(k in r for r in rows)]
    columns = 4
    rows_of_panels = -(-(len(plotted) + 1) // columns)  # one spare panel holds the legend
    fig, axes = plt.subplots(rows_of_panels, columns, figsize=(3.4 * columns, 3.0 * rows_of_panels), squeeze=False)
    for ax, (key, title) in zip(axes.flat, plotted):
        for line, points in series(rows, key, x).items():
            xs, ys = zip(*points)
            (drawn,) = ax.plot(xs, ys, marker="o", label=line)
            band = sorted((r[column], r[f"{key}_lo"], r[f"{key}_hi"]) for r in rows
                          if r["line"] == line and r.get(column) is not None and r.get(f"{key}_lo") is not None)
            if len(band) == len(points):  # the 95 % bootstrap interval over conditions
                bx, lo, hi = zip(*band)
                ax.fill_between(bx, lo, hi, color=drawn.get_color(), alpha=0.15, linewidth=0)
            fit = (fits or {}).get((line, key))
            if x == "nfe" and fit is not None and fit.ok:
                grid = np.geomspace(fit.nfe_min, fit.nfe_max, 64)
                ax.plot(grid, predict(fit, grid), linestyle="--", linewidth=1, color=drawn.get_color())
        ax.set_xscale("log", base=2)
        ax.set_xlabel(xlabel)
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


def report(folder: Path, x: str = "nfe") -> tuple[list[dict], StudyStatus, dict[tuple[str, str], Fit]]:
    """Write scaling.png (x axis: a key of X_AXES), scaling.csv, scaling.md, fits.csv and fits.md into `folder`;
    the rows drawn, the jobs left out and the curves' fits."""
    status = study_status(folder)
    rows = collect(folder)
    if not rows:
        pending = "".join(f"; {line}" for line in status.lines())
        raise FileNotFoundError(f"no finished job (a folder with {METRICS}) below {str(folder)!r}{pending}")
    write_table(rows, folder, status)
    fits = curve_fits(rows, folder)
    write_fits(fits, folder)
    plot(rows, folder, x, fits)
    return rows, status, fits


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Scaling curves (PNG) and a table (CSV, markdown) from a study "
                                                 "folder: a multirun folder, or a folder holding several.")
    parser.add_argument("folder", type=Path, help="a multirun folder, e.g. outputs/multirun/<date>")
    parser.add_argument("--strict", action="store_true", help="exit 1, after writing, if a job is unfinished or missing")
    parser.add_argument("--wandb", action="store_true",
                        help="also log the table, one line plot per metric and scaling.png as the study group's run 'report'")
    parser.add_argument("--x", choices=list(X_AXES), default="nfe",
                        help="the curves' x axis: NFEs per sample, or denoising GFLOPs per sample (compares model sizes)")
    parser.add_argument("--wandb-mode", choices=["offline", "online", "disabled"], default="offline")
    parser.add_argument("--wandb-project", default="inference-scaling")
    args = parser.parse_args(argv)
    try:
        rows, status, fits = report(args.folder, args.x)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    print(markdown_table(rows), end="")
    for line in fit_summary(fits):
        print(line)
    for line in status.lines():
        print(line, file=sys.stderr)
    written = ", ".join(str(args.folder / name) for name in ("scaling.png", "scaling.csv", "scaling.md", "fits.csv",
                                                            "fits.md"))
    print(f"wrote {len(rows)} jobs: {written}")
    if args.wandb:
        log_report(WandbConfig(mode=args.wandb_mode, project=args.wandb_project), args.folder, rows,
                   study_group(args.folder), args.x, fit_rows(fits))
    if args.strict and status.incomplete:
        sys.exit(1)


if __name__ == "__main__":
    main()
