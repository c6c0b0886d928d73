"""Scaling-law fits (inference_scaling.reporting.fits) on synthetic curves with known parameters, and in the report."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from scipy.optimize import curve_fit
from test_report_status import job, sweep

from inference_scaling.reporting.curves import FIT_COLUMNS, curve_fits, main
from inference_scaling.reporting.fits import SATURATION, STILL_RISING_RULE, fit_curve, predict, profile_fit

NFE = np.array([3.0, 6.0, 12.0, 24.0, 48.0, 96.0])


def power_law(nfe, c, a, b, n0=3.0):
    return c - a * (np.asarray(nfe) / n0) ** (-b)


def nfe90(b, n0=3.0):
    return n0 * (1 - SATURATION) ** (-1 / b)


def paired_values(c, a, b, n=300, seed=0, condition_sd=0.2, noise_sd=0.1, nfe=NFE):
    """(K, n) per-condition values: the curve, plus a condition's own offset shared by its budgets, plus noise."""
    rng = np.random.default_rng(seed)
    return (power_law(nfe, c, a, b)[:, None] + rng.normal(0, condition_sd, n)[None, :]
            + rng.normal(0, noise_sd, (len(nfe), n)))


@pytest.mark.parametrize("c,a,b", [(0.9, 0.4, 0.7), (0.6, 0.1, 1.5), (5.0, -20.0, 0.5), (2.0, 1.0, 0.25)])
def test_the_fit_recovers_known_parameters(c, a, b):
    rng = np.random.default_rng(1)
    means = power_law(NFE, c, a, b) + rng.normal(0, 0.002 * abs(a), len(NFE))
    fit = fit_curve(NFE, means)
    assert fit.ok and fit.direction == ("rising" if a > 0 else "falling")
    assert fit.ceiling == pytest.approx(c, abs=0.03 * abs(a))
    assert fit.gap == pytest.approx(a, rel=0.05) and fit.exponent == pytest.approx(b, rel=0.1)
    assert fit.nfe90 == pytest.approx(nfe90(b), rel=0.3)
    assert fit.gap_closed == pytest.approx(1 - 32 ** -b, abs=0.03)
    assert np.abs(predict(fit, NFE) - power_law(NFE, c, a, b)).max() < 0.01 * abs(a)
    exact = fit_curve(NFE, power_law(NFE, c, a, b))
    assert (exact.ceiling, exact.gap, exact.exponent) == pytest.approx((c, a, b), rel=1e-6)


def test_the_fit_is_the_least_squares_fit_that_curve_fit_finds():
    rng = np.random.default_rng(2)
    means = power_law(NFE, 0.8, 0.5, 0.6) + rng.normal(0, 0.01, len(NFE))
    c, a, b = (v[0] for v in profile_fit(NFE / 3, means[None]))
    reference, _ = curve_fit(lambda n, c, a, b: power_law(n, c, a, b), NFE, means, p0=(0.8, 0.5, 0.6))
    assert (c, a, b) == pytest.approx(tuple(reference), rel=1e-4)
    sse = ((means - power_law(NFE, c, a, b)) ** 2).sum()
    assert sse <= ((means - power_law(NFE, *reference)) ** 2).sum() * (1 + 1e-9)


def test_the_bootstrap_interval_covers_the_truth():
    c, a, b = 0.7, 0.5, 0.6
    covered = {"ceiling": 0, "exponent": 0, "nfe90": 0}
    truth = {"ceiling": c, "exponent": b, "nfe90": nfe90(b)}
    replicates = 20
    for seed in range(replicates):
        values = paired_values(c, a, b, seed=seed)
        fit = fit_curve(NFE, values.mean(axis=1), values)
        assert fit.ok and fit.interval_reason == ""
        for name in covered:
            lo, hi = getattr(fit, f"{name}_lo"), getattr(fit, f"{name}_hi")
            assert lo <= getattr(fit, name) <= hi
            covered[name] += lo <= truth[name] <= hi
        assert fit.exponent_hi - fit.exponent_lo < b  # an interval that says something
    assert all(k >= 0.8 * replicates for k in covered.values()), covered


def test_the_bootstrap_draws_the_same_conditions_at_every_budget():
    """Conditions differ far more than a condition's budgets do. Matched across budgets, a resample shifts every
    budget's mean alike, which moves the ceiling but not the curve's shape: the exponent's interval is narrow. With
    each budget's conditions shuffled (no longer matched), the same values give a much wider one."""
    values = paired_values(0.7, 0.5, 0.6, condition_sd=0.5, noise_sd=0.02)
    matched = fit_curve(NFE, values.mean(axis=1), values)
    rng = np.random.default_rng(3)
    shuffled = np.stack([rng.permutation(row) for row in values])
    unmatched = fit_curve(NFE, shuffled.mean(axis=1), shuffled)
    assert matched.ceiling == pytest.approx(unmatched.ceiling)  # the same means
    assert matched.exponent_hi - matched.exponent_lo < 0.3 * (unmatched.exponent_hi - unmatched.exponent_lo)
    assert matched.nfe90_hi - matched.nfe90_lo < 0.3 * (unmatched.nfe90_hi - unmatched.nfe90_lo)


def test_failed_scores_and_missing_conditions_are_left_out_of_the_resampled_means():
    values = paired_values(0.7, 0.5, 0.6)
    holed = values.copy()
    holed[2, ::7] = np.nan  # failed scores at one budget
    fit = fit_curve(NFE, np.nanmean(holed, axis=1), holed)
    assert fit.ok and fit.interval_reason == "" and np.isfinite([fit.ceiling_lo, fit.exponent_hi]).all()
    assert fit.ceiling_lo <= 0.7 <= fit.ceiling_hi


def test_a_curve_that_saturates_early_is_not_rising_and_a_steep_one_is():
    early = fit_curve(NFE, power_law(NFE, 0.9, 0.4, 2.0))
    assert early.still_rising is False and early.state == "saturated" and early.nfe90 < 12
    assert early.gap_closed > 0.99
    steep = fit_curve(NFE, power_law(NFE, 0.9, 0.4, 0.3))
    assert steep.still_rising is True and steep.state == "still rising" and steep.nfe90 > 96
    assert steep.gap_closed == pytest.approx(1 - 32 ** -0.3)
    falling = fit_curve(NFE, power_law(NFE, 5.0, -20.0, 0.3))
    assert falling.still_rising is True and falling.state == "still falling"
    # the rule's boundary: 90 % of the gap closed exactly at the largest budget
    b = np.log(10) / np.log(32)
    assert fit_curve(NFE, power_law(NFE, 0.9, 0.4, b * 1.05)).still_rising is False
    assert fit_curve(NFE, power_law(NFE, 0.9, 0.4, b * 0.95)).still_rising is True
    assert "nfe90 > largest budget" in STILL_RISING_RULE


def test_a_straight_line_in_log_nfes_and_a_step_have_no_exponent():
    line = fit_curve(NFE, 0.3 + 0.05 * np.log2(NFE))
    assert not line.ok and "no saturation" in line.reason and line.still_rising is True
    assert np.isnan([line.ceiling, line.exponent, line.nfe90]).all()  # no numbers made up
    step = fit_curve(NFE, [0.4, 0.9, 0.9, 0.9, 0.9, 0.9])
    assert not step.ok and "not identified" in step.reason and step.still_rising is False
    accelerating = fit_curve(NFE, [0.1, 0.11, 0.13, 0.17, 0.25, 0.41])  # convex in log n: no saturating fit
    assert not accelerating.ok and accelerating.still_rising is True


@pytest.mark.parametrize("nfe,means,reason", [
    ([3, 6], [0.5, 0.6], "2 budgets (a fit needs 3)"),
    ([3], [0.5], "1 budget (a fit needs 3)"),
    ([], [], "0 budgets (a fit needs 3)"),
    ([3, 6, 12], [0.5, np.nan, 0.7], "2 budgets (a fit needs 3)"),  # a failed metric is left out
    ([3, 3, 6, 6], [0.5, 0.52, 0.6, 0.61], "2 budgets (a fit needs 3)"),  # two jobs at a budget are one budget
    ([3, 6, 12, 24], [1.0, 1.0, 1.0, 1.0], "flat (every budget scores 1)"),
])
def test_too_few_budgets_or_a_flat_curve_is_no_fit(nfe, means, reason):
    fit = fit_curve(np.array(nfe, dtype=float), np.array(means, dtype=float),
                    np.ones((len(nfe), 5)) if nfe else None)
    assert not fit.ok and fit.reason == reason
    assert np.isnan([fit.ceiling, fit.exponent, fit.nfe90, fit.ceiling_lo, fit.nfe90_hi]).all()


def test_a_ceiling_stays_in_the_metrics_range():
    nfe = np.array([7.0, 28.0, 112.0])
    means = power_law(nfe, 1.15, 0.74, 0.54, n0=7.0)  # three budgets of a steep accuracy curve
    free = fit_curve(nfe, means)
    assert free.ceiling == pytest.approx(1.15, rel=1e-4) and not free.ceiling_at_bound
    bounded = fit_curve(nfe, means, ceiling_range=(0.0, 1.0))
    assert bounded.ceiling == 1.0 and bounded.ceiling_at_bound and bounded.ok
    assert bounded.exponent > free.exponent  # the same points under a lower ceiling flatten sooner
    floor = fit_curve(NFE, power_law(NFE, -0.5, -1.0, 0.5), ceiling_range=(0.0, 1.0))  # falls towards 0
    assert floor.ceiling == 0.0 and floor.direction == "falling"


def write_results(folder, values: dict[str, float], column: str = "eval_accuracy") -> None:
    """A job's results.csv as the runner writes it (a row per condition), here in the given order of ids."""
    with (folder / "results.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["condition_id", "final_score", column])
        writer.writeheader()
        writer.writerows({"condition_id": i, "final_score": v, column: v} for i, v in values.items())


def test_the_report_writes_a_fit_per_line_and_metric(tmp_path, capsys):
    """Line "a": five budgets of an accuracy curve that saturates at 0.9 (a condition, by its difficulty, is solved
    from some budget on) and an FID that falls to 10; line "b": two budgets. Each results.csv lists its conditions in
    another order, so only matching them by id gives the fit of the matrix in id order."""
    c, a, b, n = 0.9, 0.5, 0.8, 400
    s = sweep(tmp_path / "sweep", "budget.nfe=3,6,12,24,48")
    difficulty = (np.arange(n) + 0.5) / n
    rng = np.random.default_rng(0)
    matrix = []
    for num, nfe in enumerate((3, 6, 12, 24, 48)):
        solved = (difficulty < power_law(nfe, c, a, b)).astype(float)
        matrix.append(solved)
        fid = power_law(nfe, 10.0, -20.0, 1.0)
        folder = job(s / str(num), f"budget.nfe={nfe}", label="a",
                     metrics={"nfe": nfe, "n_candidates": nfe // 3, "accuracy": solved.mean(),
                              "verifier_score": solved.mean(), "fid": fid})
        order = rng.permutation(n)
        write_results(folder, {str(i): solved[i] for i in order})
    for nfe in (3, 6):
        job(tmp_path / "other" / str(nfe), label="b", metrics={"nfe": nfe, "n_candidates": nfe // 3, "accuracy": 0.5})
    main([str(tmp_path)])
    out = capsys.readouterr().out
    rows = list(csv.DictReader((tmp_path / "fits.csv").open()))
    assert list(rows[0]) == FIT_COLUMNS
    by = {(r["line"], r["metric"]): r for r in rows}
    assert set(by) == {("a", "accuracy"), ("a", "verifier_score"), ("a", "fid"), ("b", "accuracy")}
    accuracy = by["a", "accuracy"]
    assert float(accuracy["ceiling"]) == pytest.approx(c, abs=0.02)
    assert float(accuracy["exponent"]) == pytest.approx(b, rel=0.15)
    for name, truth in (("ceiling", c), ("exponent", b), ("nfe90", nfe90(b))):
        assert float(accuracy[f"{name}_lo"]) <= truth <= float(accuracy[f"{name}_hi"])
    assert accuracy["still_rising"] == "True" and accuracy["direction"] == "rising"  # nfe90 ≈ 53 > 48
    expected = fit_curve([3, 6, 12, 24, 48], [m.mean() for m in matrix], np.array(matrix), ceiling_range=(0.0, 1.0))
    assert float(accuracy["ceiling_lo"]) == pytest.approx(expected.ceiling_lo, rel=1e-9)
    assert float(accuracy["nfe90_hi"]) == pytest.approx(expected.nfe90_hi, rel=1e-9)
    fid = by["a", "fid"]
    assert (float(fid["ceiling"]), float(fid["exponent"])) == pytest.approx((10.0, 1.0), rel=1e-6)
    assert fid["direction"] == "falling" and fid["still_rising"] == "False" and float(fid["nfe90"]) == pytest.approx(30)
    assert fid["ceiling_lo"] == "" and fid["interval_reason"] == "no per-condition values"
    assert by["b", "accuracy"]["reason"] == "2 budgets (a fit needs 3)" and by["b", "accuracy"]["ceiling"] == ""
    printed = [line for line in out.splitlines() if line.startswith("fit ")]
    assert len(printed) == 3 and printed[0].startswith(f"fit accuracy | a: ceiling {float(accuracy['ceiling']):.3g} [")
    assert printed[0].endswith("still rising") and out.count(STILL_RISING_RULE) == 1
    assert ("fit fid | a: ceiling 10, exponent 1, 90 % of the ceiling at 30 NFEs (largest budget 48: 94 % of the gap "
            "closed): saturated") in printed
    assert "no fit (fewer than 3 budgets): 1 line × metric pairs, listed in fits.md" in out
    md = (tmp_path / "fits.md").read_text()
    assert "| b | accuracy | 2 | — | — | — | — | — | 2 budgets (a fit needs 3) |" in md and STILL_RISING_RULE in md
    assert json.loads((s / "0" / "metrics.json").read_text())["nfe"] == 3  # the jobs are left as they were


def test_curves_without_per_condition_values_are_fitted_without_an_interval(tmp_path):
    for nfe, accuracy in ((3, 0.5), (6, 0.7), (12, 0.8), (24, 0.85)):
        job(tmp_path / str(nfe), label="a", metrics={"nfe": nfe, "n_candidates": nfe // 3, "accuracy": accuracy})
    rows = [{"line": "a", "nfe": nfe, "accuracy": acc, "job": str(nfe)}
            for nfe, acc in ((3, 0.5), (6, 0.7), (12, 0.8), (24, 0.85))]
    fit = curve_fits(rows, tmp_path)["a", "accuracy"]
    assert fit.ok and fit.interval_reason == "no per-condition values" and np.isnan(fit.ceiling_lo)
