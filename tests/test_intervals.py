"""Bootstrap intervals over conditions in the report: the interval itself, and per-condition values of real jobs."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from omegaconf import OmegaConf

from inference_scaling.reporting.curves import bootstrap_interval, intervals, report
from inference_scaling.reporting.records import write_job
from inference_scaling.runner import run


def test_the_interval_of_known_samples():
    assert bootstrap_interval(np.full(50, 0.5)) == (0.5, 0.5)
    rng = np.random.default_rng(1)
    coin = (rng.random(400) < 0.3).astype(float)
    lo, hi = bootstrap_interval(coin)
    assert lo < coin.mean() < hi and hi - lo == pytest.approx(2 * 1.96 * np.sqrt(0.21 / 400), rel=0.2)
    assert bootstrap_interval(np.array([np.nan, 1.0, np.inf, 1.0])) == (1.0, 1.0)  # failed values left out
    assert bootstrap_interval(coin) == (lo, hi)  # a fixed seed: the same report twice


@pytest.mark.parametrize("benchmark", ["digits", "scenes"])
def test_a_jobs_per_condition_values_give_its_metrics_and_their_intervals(tmp_path, config, one_thread, benchmark):
    extra = ["model=scenes", "benchmark=scenes", "verifier=scene_checker", "budget.nfe=14",
             "benchmark.per_class=4"] if benchmark == "scenes" else ["budget.nfe=6", "benchmark.per_class=4"]
    cfg = config("logger=none", "progress=false", *extra)
    job = tmp_path / "sweep" / "0_job"
    write_job(job, OmegaConf.to_yaml(OmegaConf.structured(cfg)), run(cfg), save_images=False)
    metrics = json.loads((job / "metrics.json").read_text())
    records = list(csv.DictReader((job / "results.csv").open()))
    keys = ["accuracy"] + (["count_accuracy", "relation_accuracy", "checker_score"] if benchmark == "scenes" else [])
    bounds = intervals(job)
    for key in [*keys, "verifier_score"]:
        column = "final_score" if key == "verifier_score" else f"eval_{key}"
        assert np.mean([float(r[column]) for r in records]) == pytest.approx(metrics[key], rel=1e-6)
        assert bounds[f"{key}_lo"] <= metrics[key] <= bounds[f"{key}_hi"]
    rows, _, _ = report(tmp_path / "sweep")
    assert rows[0]["accuracy_lo"] == bounds["accuracy_lo"]
    assert "accuracy_lo" in (tmp_path / "sweep" / "scaling.csv").read_text().splitlines()[0]
    assert f"[{bounds['accuracy_lo']:.3g}, {bounds['accuracy_hi']:.3g}]" in (tmp_path / "sweep" / "scaling.md").read_text()
