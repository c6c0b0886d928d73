"""Scaling-law fits of a curve (a metric against search NFEs), with a bootstrap over conditions.

Form. q(n) = c − a·(n/n0)^(−b), with n the NFEs, n0 the curve's smallest budget, b > 0 the exponent and c the
asymptote (the ceiling). It is the saturating power law of scaling studies: a straight line in log NFEs when b → 0,
a step when b is large, and in between the gap to the ceiling shrinks by the same factor 2^(−b) at every doubling.
Dividing n by n0 makes a the fitted gap c − q(n0) at the smallest budget, so the three parameters are on the
metric's own scale. The sign of a is free: a > 0 is a rising curve (accuracy, IS), a < 0 a falling one, either one
where lower is better (FID, KID: c is then the floor it falls to) or a score that search hacks down. One form and
one fit serve both directions; nothing is negated. A metric with a range of its own (accuracy and precision in
[0, 1], FID ≥ 0) keeps c inside it: three budgets of an accuracy curve that is still steep would otherwise
extrapolate to a ceiling above 1; a ceiling at the range's end is marked (`ceiling_at_bound`).

Fit. Least squares on the per-budget means. For a fixed b the model is linear in (c, a), so both come in closed
form and only b is searched: on a grid in log b over B_BOUNDS, then by golden-section search between the best
grid point's neighbours. It is the least squares fit scipy.optimize.curve_fit reaches from a good start (checked
in tests/test_fits.py), without needing one: on noisy flat curves, whose sum of squares has several minima in b,
curve_fit from its default start stopped at a worse one in 46 of 200 tries. It takes a ceiling range exactly and
runs for all bootstrap resamples at once (200 refits: 0.09 s, against 1.5 s for 200 curve_fit calls).

90 % NFEs. `nfe90` is the n at which the fitted curve has closed 90 % of the gap between its smallest budget and
its ceiling: q(n) − q(n0) = 0.9·(c − q(n0)), i.e. the gap to the ceiling is 10 % of the gap at n0. For this form
that is n0·10^(1/b) (it depends on b alone). A fraction of c itself would depend on where the metric's zero
lies (FID, verifier logits), a fraction of the gap does not.

Still rising. A curve is still rising (or, falling, still falling) at its largest budget when it has not yet
reached 90 % of its fitted ceiling there: nfe90 > largest budget, i.e. `gap_closed` = 1 − (n_max/n0)^(−b) < 0.9.
It is the fit's own definition of saturation, scale-free, and independent of how many budgets the sweep has;
the last step's gain as a fraction of the remaining gap would depend on b and the step's ratio only, and a
bootstrap test of the last step's gain needs per-condition values, which set-level metrics (FID) do not have.

No fit. Fewer than MIN_BUDGETS distinct budgets, a flat curve (every budget scores the same), or an exponent at a
bound of B_BOUNDS give no parameters, with the reason: at the lower bound no saturation shows within the budgets
(the best fit is a straight line in log NFEs: still rising), at the upper bound the curve reaches its level by its
second budget and b is not identified (not rising).

Interval. Percentile bootstrap over conditions: each resample draws the conditions (by condition id) once and uses
that draw at every budget of the curve, as every budget scored the same conditions; each budget's mean leaves out
its missing or failed (non-finite) values, as the metric does; each resample is refitted. Intervals of b, c and
nfe90 are percentiles of the resamples that have a fit; an exponent at its bound enters as the bound (its interval
then reaches the bound). A fixed seed makes a report reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

B_BOUNDS = (0.01, 10.0)  # the exponent's range: a line in log n (n0·10^100 to 90 %) to a step (99.9 % per doubling)
GRID = 256  # exponents tried on a log grid before the golden-section refinement
GOLDEN_STEPS = 60
MIN_BUDGETS = 3  # the form has three parameters
SATURATION = 0.9  # the fraction of the gap to the ceiling that `nfe90` closes
FIT_RESAMPLES = 200
LEVEL = 0.95
MIN_RESAMPLES_FIT = 0.5  # below this fraction of resamples with a fit, no interval
STILL_RISING_RULE = (f"Still rising (falling): the fitted curve has closed less than {100 * SATURATION:.0f} % of its "
                     f"gap to the ceiling at its largest budget (nfe90 > largest budget)")


@dataclass(frozen=True)
class Fit:
    """A curve's fit; parameters and intervals are NaN where there is none, and `reason` says why."""

    budgets: int  # distinct budgets fitted
    nfe_min: float  # n0
    nfe_max: float
    ceiling: float = float("nan")  # c
    ceiling_at_bound: bool = False  # c is an end of the metric's range (accuracy 1), not the free fit's asymptote
    gap: float = float("nan")  # a = c − q(n0)
    direction: str = ""  # "rising" (a > 0) or "falling" (a < 0), also for an exponent at a bound; "" without a fit
    exponent: float = float("nan")  # b
    nfe90: float = float("nan")  # n0·10^(1/b)
    gap_closed: float = float("nan")  # 1 − (n_max/n0)^(−b): the fraction of the gap closed at the largest budget
    still_rising: bool | None = None  # None: unknown (no fit, and no reason to say)
    ceiling_lo: float = float("nan")
    ceiling_hi: float = float("nan")
    exponent_lo: float = float("nan")
    exponent_hi: float = float("nan")
    nfe90_lo: float = float("nan")
    nfe90_hi: float = float("nan")
    reason: str = ""  # why there is no fit ("" for a fit)
    interval_reason: str = ""  # why there is no interval ("" for one, or when there is no fit)

    @property
    def ok(self) -> bool:
        return not self.reason

    @property
    def state(self) -> str:
        """"still rising" / "still falling", "saturated", or "" when unknown."""
        return "" if self.still_rising is None else f"still {self.direction}" if self.still_rising else "saturated"


def predict(fit: Fit, nfe: np.ndarray) -> np.ndarray:
    """The fitted curve at `nfe`."""
    return fit.ceiling - fit.gap * (np.asarray(nfe, dtype=np.float64) / fit.nfe_min) ** (-fit.exponent)


def _linear(x: np.ndarray, y: np.ndarray, ceiling_range: tuple[float, float]) -> tuple[np.ndarray, ...]:
    """Least squares of y = c − a·x over the last axis (broadcasting), c in `ceiling_range`: c, a and the residual
    sum of squares. The problem is convex, so where the free c falls outside the range the constrained c is the
    nearest end and a the least squares of c − y on x."""
    dx = x - x.mean(-1, keepdims=True)
    dy = y - y.mean(-1, keepdims=True)
    slope = (dx * dy).sum(-1) / (dx * dx).sum(-1)
    free = y.mean(-1) - slope * x.mean(-1)
    c = np.clip(free, *ceiling_range)
    a = np.where(c == free, -slope, (x * (c[..., None] - y)).sum(-1) / (x * x).sum(-1))
    return c, a, ((y - c[..., None] + a[..., None] * x) ** 2).sum(-1)


def profile_fit(ratio: np.ndarray, means: np.ndarray, ceiling_range: tuple[float, float] = (-np.inf, np.inf)
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least squares c, a, b of q = c − a·ratio^(−b), b in B_BOUNDS and c in `ceiling_range`, for each row of
    `means` (R, K) at the budgets' ratios n/n0 (K,)."""
    log_ratio = np.log(ratio)
    t_grid = np.linspace(np.log(B_BOUNDS[0]), np.log(B_BOUNDS[1]), GRID)

    def sse(t: np.ndarray) -> np.ndarray:  # t: (R,) or (R, G) log exponents
        x = np.exp(-np.exp(t)[..., None] * log_ratio)
        return _linear(x, means if t.ndim == 1 else means[:, None, :], ceiling_range)[2]

    best = np.argmin(sse(np.broadcast_to(t_grid, (len(means), GRID))), axis=1)
    lo, hi = t_grid[np.maximum(best - 1, 0)], t_grid[np.minimum(best + 1, GRID - 1)]
    shrink = (np.sqrt(5) - 1) / 2
    for _ in range(GOLDEN_STEPS):  # golden-section search between the best grid point's neighbours
        t1, t2 = hi - shrink * (hi - lo), lo + shrink * (hi - lo)
        left = sse(t1) < sse(t2)
        lo, hi = np.where(left, lo, t1), np.where(left, t2, hi)
    t = (lo + hi) / 2
    t = np.where(sse(t) <= sse(t_grid[best]), t, t_grid[best])
    c, a, _ = _linear(np.exp(-np.exp(t)[:, None] * log_ratio), means, ceiling_range)
    return c, a, np.exp(t)


def _flat(means: np.ndarray) -> np.ndarray:
    return np.ptp(means, axis=-1) <= 1e-12 * np.maximum(1.0, np.abs(means).max(axis=-1))


def _at_bound(b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return b <= B_BOUNDS[0] * (1 + 1e-6), b >= B_BOUNDS[1] * (1 - 1e-6)


def fit_curve(nfe, means, values=None, ceiling_range: tuple[float, float] = (-np.inf, np.inf),
              resamples: int = FIT_RESAMPLES, level: float = LEVEL, seed: int = 0) -> Fit:
    """The fit of one curve: `nfe` (K,) its budgets, `means` (K,) the metric's mean at each, and optionally
    `values` (K, N) each condition's value at each budget (a column per condition, NaN where a budget lacks it or
    its score failed), which gives bootstrap intervals. `ceiling_range` is the metric's own range (accuracy: 0 to
    1), which the asymptote cannot leave. Budgets with a non-finite mean or NFEs ≤ 0 are left out."""
    nfe, means = np.asarray(nfe, dtype=np.float64), np.asarray(means, dtype=np.float64)
    keep = np.isfinite(means) & np.isfinite(nfe) & (nfe > 0)
    nfe, means = nfe[keep], means[keep]
    budgets = len(np.unique(nfe))
    if budgets < MIN_BUDGETS:
        ends = (float(nfe.min()), float(nfe.max())) if budgets else (float("nan"), float("nan"))
        return Fit(budgets, *ends, reason=f"{budgets} budget{'s' * (budgets != 1)} (a fit needs {MIN_BUDGETS})")
    n0, n_max = float(nfe.min()), float(nfe.max())
    if _flat(means):
        return Fit(budgets, n0, n_max, still_rising=False, reason=f"flat (every budget scores {means[0]:.4g})")
    ratio = nfe / n0
    c, a, b = (v[0] for v in profile_fit(ratio, means[None], ceiling_range))
    low, high = (v[()] for v in _at_bound(b))
    direction = "rising" if a > 0 else "falling"
    if low:
        return Fit(budgets, n0, n_max, direction=direction, still_rising=True,
                   reason=f"no saturation within the budgets: the best fit is a straight line in log NFEs "
                          f"(exponent at its bound {B_BOUNDS[0]})")
    if high:
        return Fit(budgets, n0, n_max, direction=direction, still_rising=False,
                   reason=f"exponent not identified: the curve reaches its level by its second budget "
                          f"(exponent at its bound {B_BOUNDS[1]})")
    nfe90 = n0 * (1 - SATURATION) ** (-1 / b)
    fit = dict(budgets=budgets, nfe_min=n0, nfe_max=n_max, ceiling=float(c), ceiling_at_bound=bool(c in ceiling_range),
               gap=float(a), direction=direction, exponent=float(b), nfe90=float(nfe90),
               gap_closed=float(1 - (n_max / n0) ** (-b)), still_rising=bool(nfe90 > n_max))
    if values is None:
        return Fit(**fit, interval_reason="no per-condition values")
    bounds, why = bootstrap(ratio, np.asarray(values, dtype=np.float64)[keep], n0, ceiling_range, resamples, level,
                            seed)
    return Fit(**fit, **bounds, interval_reason=why)


def resampled_means(values: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """(R, K) budget means of `resamples` draws of the conditions (the columns of `values` (K, N)) with
    replacement, one draw for all budgets; each mean leaves out its non-finite values (NaN if all are)."""
    n = values.shape[1]
    index = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    counts = np.bincount((np.arange(resamples)[:, None] * n + index).ravel(), minlength=resamples * n)
    counts = counts.reshape(resamples, n).astype(np.float64)  # times each condition is drawn
    finite = np.isfinite(values)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (counts @ np.where(finite, values, 0.0).T) / (counts @ finite.T)


def bootstrap(ratio: np.ndarray, values: np.ndarray, n0: float,
              ceiling_range: tuple[float, float] = (-np.inf, np.inf), resamples: int = FIT_RESAMPLES,
              level: float = LEVEL, seed: int = 0) -> tuple[dict, str]:
    """Percentile intervals of the ceiling, the exponent and nfe90 over refits of resampled conditions (`values`
    (K, N) at the budgets' ratios n/n0), and "" or why there are none."""
    means = resampled_means(values, resamples, seed)
    usable = np.isfinite(means).all(axis=1) & ~_flat(np.nan_to_num(means))
    if usable.mean() < MIN_RESAMPLES_FIT:
        return {}, f"only {usable.sum()} of {resamples} resamples can be fitted"
    c, _, b = profile_fit(ratio, means[usable], ceiling_range)
    tail = (1 - level) / 2 * 100
    out = {}
    for name, sample in (("ceiling", c), ("exponent", b), ("nfe90", n0 * (1 - SATURATION) ** (-1 / b))):
        out[f"{name}_lo"], out[f"{name}_hi"] = (float(v) for v in np.percentile(sample, [tail, 100 - tail]))
    return out, ""
