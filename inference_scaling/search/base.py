"""What every search algorithm is given and what it returns."""

from __future__ import annotations

import math
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

import numpy as np
import torch
from torch import Tensor

from inference_scaling.denoiser import Denoiser, Rows, x0_from_velocity
from inference_scaling.noise import candidate_noise, noise_seed, prefetch_noise
from inference_scaling.sampling import SDE_SCALE, is_stochastic, solver_nfe
from inference_scaling.verifiers.base import Verifier

# The tag that derives a stochastic solver's per-step seeds from the run seed, noise_seed(seed, SDE_NOISE, step),
# so the noise of step t of candidate i, candidate_noise(that seed, condition, i), never repeats a candidate noise.
SDE_NOISE = 0x736465  # "sde"


@dataclass
class SearchTask:
    """One search problem: a set of conditions to produce one sample each for."""

    denoiser: Denoiser  # guided and NFE-counted; the algorithm never counts by hand
    solver: Callable[..., Tensor]  # a sampler from inference_scaling.sampling
    sigmas: Tensor  # the search sampler's grid (the model's own schedule)
    cost_per_sample: int  # NFEs of one solve on `sigmas`, guidance included
    conds: Rows  # (C rows) the model's condition rows (class indices, tokens, text embeddings)
    condition_ids: Tensor  # (C,) ids naming each condition's noises
    noise_shape: tuple[int, ...]
    seed: int
    verifier: Verifier
    max_batch_size: int
    device: str = "cpu"
    prompts: Optional[list[str]] = None  # per condition, for verifiers that read text (`takes_prompts`)
    labels: Optional[Tensor] = None  # (C, ...) what class verifiers read; None: `conds`
    decode: Callable[[Tensor], Tensor] = lambda x: x  # search states → images in [-1, 1] (a latent model's VAE)
    noise_generator: str = "counter"  # inference_scaling.noise.GENERATORS: counter (batched, on the device) | torch
    # States carried between rounds (paths' beams, FK particles, pivots, populations) stay on the model's device up
    # to this many bytes, so a round does not copy them to the host and back; larger sets wait on the host.
    hold_bytes: int = 2 << 30
    sde_scale: float = SDE_SCALE  # a stochastic solver's g(σ) = sde_scale·σ² (model.sde_scale); ODE solvers ignore it
    # Draw the noises a search names ahead (`prefetch`) in a background thread while the denoiser runs (the `torch`
    # generator's host loop); the values are the same either way. None: on when the model runs off the host (the
    # host is then idle while the device denoises); off on the CPU, where the thread competes with the denoiser
    # for the same cores (measured within the machine's spread: README, "Noise").
    noise_ahead: Optional[bool] = None

    @property
    def sigma_top(self) -> float:
        """The grid's first level: 1 for flow models; below 1 for ε-prediction models on a VP schedule."""
        return float(self.sigmas[0])

    def noise(self, rows: Tensor, indices: Tensor) -> Tensor:
        """Noise of candidate `indices` for conditions at positions `rows`."""
        return candidate_noise(self.seed, self.condition_ids[rows], indices, self.noise_shape, self.noise_generator,
                               self.device)

    def prefetch(self, rows: Tensor, indices: Tensor) -> None:
        """Start drawing `noise(rows, indices)` in the background: a search calls it for its next batch (or round)
        before solving the current one, so the denoiser does not wait on the noise generator."""
        if self.noise_ahead or (self.noise_ahead is None and not str(self.device).startswith("cpu")):
            prefetch_noise(self.seed, self.condition_ids[rows], indices, self.noise_shape, self.noise_generator)

    def hold(self, x: Tensor) -> Tensor:
        """`x` kept where the next round reads it: on the model's device while it fits in `hold_bytes`, else on
        the host (the caller moves each batch back with `.to(task.device)`, a no-op for a state already there)."""
        return x if x.numel() * x.element_size() <= self.hold_bytes else x.cpu()

    def enter(self, x: Tensor, sigma: float) -> tuple[Tensor, float]:
        """A state at level σ as a state on the model's grid: above its top level (pure noise at σ = 1) the state
        is scaled to the top level, x·σ_top/σ, the linear interpolant's noise term there. Identity when σ_top = 1."""
        top = self.sigma_top
        return (x, sigma) if sigma <= top else (x * (top / sigma), top)

    def step_noise(self, rows: Tensor, indices: Tensor) -> Callable[[int], Tensor]:
        """A stochastic solver's noise: step t of candidate `indices` of the conditions at `rows` draws
        candidate_noise(noise_seed(seed, SDE_NOISE, t), condition id, index), so it depends on (seed, condition,
        index, step) alone, not on batch size or order, and never repeats a candidate noise."""
        ids = self.condition_ids[rows]
        return lambda step: candidate_noise(noise_seed(self.seed, SDE_NOISE, step), ids, indices, self.noise_shape,
                                            self.noise_generator, self.device)

    def solve_on(self, grid: Tensor, x: Tensor, rows: Tensor, callback=None,
                 indices: Optional[Tensor] = None) -> Tensor:
        """Solve states x (at grid[0]) for the conditions at positions `rows` down to grid[-1], in denoiser calls
        of at most `max_batch_size` rows; `callback` sees every step of every call, in row order. `indices`: the
        candidate index naming each row, from which a stochastic solver draws its noise (`step_noise`); ODE solvers
        ignore it, and a stochastic one refuses to run without it."""
        stochastic = is_stochastic(self.solver)
        if stochastic and indices is None:
            raise ValueError(f"solver {self.solver.__name__!r} draws noise at every step from each row's candidate "
                             f"index, but this search solved rows without indices=; use an ODE solver (euler, heun, "
                             f"heun2) with it")
        parts = []
        for part in batches(len(rows), self.max_batch_size):
            cond = self.conds[rows[part]].to(self.device)
            if stochastic:
                parts.append(self.solver(self.denoiser, x[part], grid, cond, callback,
                                         noise=self.step_noise(rows[part], indices[part]), scale=self.sde_scale))
            else:
                parts.append(self.solver(self.denoiser, x[part], grid, cond, callback))
        return torch.cat(parts)

    def solve(self, x: Tensor, rows: Tensor, indices: Optional[Tensor] = None) -> Tensor:
        """Solve initial noises on the search grid (`indices` as in `solve_on`)."""
        return self.solve_on(self.sigmas, self.enter(x, 1.0)[0], rows, indices=indices)

    def x0_step(self, sigma: float) -> int:
        """The step of the search grid whose level is nearest `sigma` (where x0-predictions are read)."""
        return nearest_step(self.sigmas, sigma)

    def solve_with_x0(self, x: Tensor, rows: Tensor, sigma: float,
                      indices: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        """`solve`, also returning each sample's x0-prediction at the grid level nearest `sigma`. It costs no
        extra NFE: it is the prediction of the denoiser evaluation that step makes anyway."""
        step, seen = self.x0_step(sigma), []
        final = self.solve_on(self.sigmas, self.enter(x, 1.0)[0], rows,
                              callback=lambda s: seen.append(s.x0) if s.index == step else None, indices=indices)
        return final, torch.cat(seen)

    def solve_and_score(self, x: Tensor, rows: Tensor, indices: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        """Solve initial noises on the search grid and score the samples: (samples, CPU scores). A verifier that
        reads x0-predictions (`needs_x0`) gets them from the same solve, at no extra NFE."""
        if getattr(self.verifier, "needs_x0", False):
            final, x0 = self.solve_with_x0(x, rows, self.verifier.sigma, indices)
            return final, self.score(final, rows, x0=x0)
        final = self.solve(x, rows, indices)
        return final, self.score(final, rows)

    def score(self, x: Tensor, rows: Tensor, x0: Optional[Tensor] = None) -> Tensor:
        """Verifier scores (on the CPU) of search states `x` (decoded to images first) for the conditions at
        positions `rows`; a set-level verifier is told which candidates belong to the same condition, a
        self-supervised one gets the decoded x0-predictions `x0`."""
        return self.score_images(self.decode(x), rows, None if x0 is None else self.decode(x0))

    def score_images(self, x: Tensor, rows: Tensor, x0: Optional[Tensor] = None) -> Tensor:
        """`score` of images already decoded."""
        if getattr(self.verifier, "takes_prompts", False):
            cond = [self.prompts[r] for r in rows.tolist()]
        else:
            cond = (self.conds if self.labels is None else self.labels)[rows].to(x.device)
        if getattr(self.verifier, "set_level", False):
            return self.verifier(x, cond, groups=rows).float().cpu()
        if getattr(self.verifier, "needs_x0", False):
            return self.verifier(x, cond, x0=x0).float().cpu()
        return self.verifier(x, cond).float().cpu()

    @property
    def overlap(self) -> bool:
        """Whether scoring runs beside the denoiser (`ScoringQueue`): for verifiers whose calls wait on something
        other than this process's compute (`remote = True`: an API), not for ones that read x0-predictions."""
        return bool(getattr(self.verifier, "remote", False)) and not getattr(self.verifier, "needs_x0", False)

    def group_size(self, n: int) -> int:
        """Candidates per verifier call: every candidate for verifiers that score the whole selected set (the
        FID-oracle), whole conditions (multiples of n) for set-level verifiers that rank within a condition,
        otherwise `max_batch_size`. Denoiser calls stay within `max_batch_size` either way (see `solve`)."""
        if getattr(self.verifier, "needs_all_conditions", False):
            return n * len(self.condition_ids)
        if getattr(self.verifier, "set_level", False):
            return max(n, self.max_batch_size // n * n)
        return self.max_batch_size


class ScoringQueue:
    """Scores solved batches in the order they are submitted and hands each batch's scores to its continuation.

    With a verifier that waits on the network (`SearchTask.overlap`), a batch is scored in one worker thread while
    the caller solves the next batch, so the denoiser never waits on an API; at most one batch is in flight, and
    continuations run in the caller's thread in submission order, so a search selects exactly as when every batch is
    scored inline. Otherwise `submit` scores inline. Use as a context manager: leaving it waits for the last batch.
    """

    def __init__(self, task: "SearchTask"):
        self.task = task
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="verifier") if task.overlap else None
        self.pending: Optional[tuple[Future, Tensor, Tensor, Callable]] = None

    def submit(self, x: Tensor, rows: Tensor, then: Callable[[Tensor, Tensor], None]) -> None:
        """Score states `x` of conditions `rows`, then call `then(x, scores)` (after every earlier batch's)."""
        if self.pool is None:
            then(x, self.task.score(x, rows))
            return
        self.drain()
        self.pending = (self.pool.submit(self.task.score, x, rows), x, rows, then)

    def solve(self, x: Tensor, rows: Tensor, then: Callable[[Tensor, Tensor], None],
              indices: Optional[Tensor] = None) -> None:
        """Solve initial noises `x` on the search grid and `submit` the samples (`SearchTask.solve_and_score`'s
        work: a verifier that reads x0-predictions is scored inline, from the same solve)."""
        if getattr(self.task.verifier, "needs_x0", False):
            then(*self.task.solve_and_score(x, rows, indices))
        else:
            self.submit(self.task.solve(x, rows, indices), rows, then)

    def drain(self) -> None:
        """Wait for the batch in flight, if any, and run its continuation."""
        if self.pending is not None:
            future, x, _, then = self.pending
            self.pending = None
            then(x, future.result())

    def __enter__(self) -> "ScoringQueue":
        return self

    def __exit__(self, kind, value, traceback) -> None:
        try:
            if kind is None:
                self.drain()
        finally:
            if self.pool is not None:
                self.pool.shutdown(wait=True, cancel_futures=True)


@dataclass
class SearchResult:
    """Per condition: the chosen noise's candidate index, its score and the search's spending."""

    images: Tensor  # (C, ...) the chosen candidates as the search sampler rendered them
    chosen: Tensor  # (C,) candidate index of the winner (its noise is candidate_noise(seed, id, index))
    scores: Tensor  # (C,) verifier score of the winner; not finite where it `failed`
    candidate_scores: Tensor  # (C, N) every candidate's score, as the verifier returned it (failures included)
    n_candidates: int
    verifier_calls: int  # images scored
    # Per condition, a JSON-ready record that re-renders the chosen sample from the seed alone (pivot history,
    # noise indices along a path, particle ancestry); None where `chosen` names the noise (random search).
    lineage: Optional[list[dict]] = None
    # (C,) candidates each condition got, where conditions spend unequally (adaptive budgets; `candidate_scores`
    # is then NaN past a condition's count); None where every condition got `n_candidates`.
    candidates_per_condition: Optional[Tensor] = None

    @property
    def failed(self) -> Tensor:
        """(C,) True where the winner has no real score: every candidate of the final comparison failed, so the
        search kept the one it picks among equal scores (candidate 0, the pivot, the first survivor)."""
        return is_failed(self.scores)


def nearest_step(sigmas: Tensor, sigma: float) -> int:
    """The step of a grid (levels sigmas[0] > … > sigmas[-1]) whose starting level is nearest `sigma`."""
    return int((sigmas[:-1] - sigma).abs().argmin())


def batches(total: int, size: int) -> Iterator[slice]:
    for start in range(0, total, size):
        yield slice(start, min(start + size, total))


Request = tuple[Tensor, Tensor]  # (rows, indices): the candidates a batch's noise belongs to


def noised(task: SearchTask, requests: list[Request],
           after: Optional[Request] = None) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
    """(rows, indices, noise) of each request in turn; while the caller works on one, the next one's noise (after the
    last, `after`'s: the first batch of the search's next round) is drawn in the background (`SearchTask.prefetch`)."""
    for k, (rows, indices) in enumerate(requests):
        noise = task.noise(rows, indices)
        upcoming = requests[k + 1] if k + 1 < len(requests) else after
        if upcoming is not None:
            task.prefetch(*upcoming)
        yield rows, indices, noise


# Failed scores. A score is real only when it is finite: NaN (a verifier that could not score), −inf and +inf
# (an overflow, not a sample infinitely better than the rest) are failures. Every selection ranks scores through
# `comparable`, where a failure is −inf, strictly below every real score, so it never wins against a real score
# and never blocks one (NaN compares false, `argmax` would pick it); among failures the first wins as among ties.

FAILED = float("-inf")  # a failed score as the search ranks it
NO_CANDIDATE = float("nan")  # a running best that holds no candidate yet (`keep_best`)


def is_failed(scores: Tensor) -> Tensor:
    """True where a score is not real (NaN, −inf or +inf)."""
    return ~torch.isfinite(scores)


def comparable(scores: Tensor) -> Tensor:
    """Scores as every selection ranks them: failures become −inf (`FAILED`), real scores stay."""
    return torch.where(is_failed(scores), torch.full_like(scores, FAILED), scores)


def no_best(c: int) -> Tensor:
    """The running best of `c` conditions before any candidate is scored (see `keep_best`)."""
    return torch.full((c,), NO_CANDIDATE)


def keep_best(best: Tensor, images: Tensor, rows: Tensor, scores: Tensor, x: Tensor) -> Tensor:
    """Update the running best score and image of each condition in place from one scored batch; returns the
    batch positions of the candidates kept (at most one per condition).

    `best` holds `comparable` scores, NaN where no candidate is kept yet (`no_best`). A candidate replaces the
    best only if it scores strictly higher, or if nothing is kept yet; among equal scores in the batch the first
    wins, so the kept image is always the candidate `argmax` over all `comparable` scores names, and a condition
    whose candidates all fail keeps its first one.
    """
    scores = comparable(scores)
    counts = torch.bincount(rows, minlength=len(best))
    if len(rows) and int(counts.max()) == 1:  # one candidate per condition (random search's calls): no scatter
        held = best[rows]
        kept = (held.isnan() | (scores > held)).nonzero().squeeze(1)
        best[rows[kept]] = scores[kept]
        images[rows[kept]] = x[kept]
        return kept
    batch_best = torch.full_like(best, FAILED).scatter_reduce(0, rows, scores, "amax")
    improved = (counts > 0) & ((batch_best > best) | best.isnan())
    hit = (scores == batch_best[rows]) & improved[rows]
    position = torch.arange(len(rows))
    first = torch.full(best.shape, len(rows), dtype=torch.long).scatter_reduce(0, rows[hit], position[hit], "amin")
    won = improved.nonzero().squeeze(1)
    best[won] = batch_best[won]
    images[won] = x[first[won]]
    return first[won]


# Helpers for algorithms that stop, renoise and resume the sampler at intermediate noise levels.


def evals_per_call(task: SearchTask) -> int:
    """NFEs that one denoiser evaluation of one sample costs (2 under classifier-free guidance)."""
    per_solve = solver_nfe(task.solver.__name__, task.sigmas)
    assert task.cost_per_sample % per_solve == 0, f"cost_per_sample={task.cost_per_sample} is not a multiple of {per_solve}"
    return task.cost_per_sample // per_solve


def segment_sigmas(sigmas: Tensor, sigma_from: float, sigma_to: float) -> Tensor:
    """The levels that solve from `sigma_from` down to `sigma_to`, never coarser than the search grid `sigmas`.

    Steps are equal in grid position (the fractional step index along `sigmas`), so a segment follows the grid's
    spacing (e.g. a shifted schedule), and the number of steps is the grid's count over that stretch rounded up;
    the segment from 1 to 0 is `sigmas` itself.
    """
    assert 0.0 <= sigma_to < sigma_from <= 1.0, f"need 0 <= sigma_to < sigma_from <= 1, got {sigma_from}, {sigma_to}"
    grid = sigmas.double().cpu().numpy()
    position = np.arange(len(grid), dtype=np.float64)
    t_from, t_to = np.interp([-sigma_from, -sigma_to], -grid, position)  # np.interp needs increasing abscissae
    steps = max(1, math.ceil(t_to - t_from - 1e-9))
    levels = torch.from_numpy(np.interp(np.linspace(t_from, t_to, steps + 1), position, grid))
    levels[0], levels[-1] = sigma_from, sigma_to  # exact ends: the next segment starts where this one stops
    return levels


def segment_cost(task: SearchTask, sigma_from: float, sigma_to: float) -> int:
    """NFEs per sample of one solve from `sigma_from` to `sigma_to` (guidance included)."""
    grid = segment_sigmas(task.sigmas, min(sigma_from, task.sigma_top), sigma_to)
    return solver_nfe(task.solver.__name__, grid) * evals_per_call(task)


def solve_between(task: SearchTask, x: Tensor, rows: Tensor, sigma_from: float, sigma_to: float,
                  indices: Optional[Tensor] = None) -> Tensor:
    """Solve states x at level `sigma_from` down to `sigma_to`, in denoiser calls of at most `max_batch_size` rows;
    a state above the grid's top level (initial noise at σ = 1) enters at the top (`SearchTask.enter`). `indices`
    as in `SearchTask.solve_on`: a stochastic solver's steps count from 0 on each segment, so a search gives every
    segment of a path its own index (a round's renoising index)."""
    x, sigma_from = task.enter(x, sigma_from)
    return task.solve_on(segment_sigmas(task.sigmas, sigma_from, sigma_to), x, rows, indices=indices)


@torch.no_grad()
def predict_x0(task: SearchTask, x: Tensor, rows: Tensor, sigma: float) -> Tensor:
    """The x0-prediction x − σ·v at level σ: one (counted) denoiser evaluation per row, none at σ = 0."""
    if sigma == 0.0:
        return x
    out = []
    for part in batches(len(rows), task.max_batch_size):
        levels = torch.full((len(rows[part]),), sigma, dtype=x.dtype, device=x.device)
        out.append(x0_from_velocity(x[part], levels, task.denoiser(x[part], levels, task.conds[rows[part]].to(x.device))))
    return torch.cat(out)


def refuse_set_level(task: SearchTask, algorithm: str) -> None:
    """Algorithms that compare scores from different verifier calls cannot use a set-level verifier (ranks
    among one call's candidates, e.g. the ensemble): its scores are only comparable within a call."""
    if getattr(task.verifier, "set_level", False):
        raise ValueError(f"{algorithm} compares scores from different verifier calls; verifier "
                         f"{getattr(task.verifier, 'name', type(task.verifier).__name__)!r} scores each call's "
                         f"candidates relative to each other (set_level); use a per-image verifier")


def renoise(x: Tensor, sigma: float, sigma_up: float, eps: Tensor) -> Tensor:
    """The forward (noising) process of the linear interpolant from level σ up to σ' >= σ, with fresh noise ε'.

    From x_σ = (1 − σ)·x0 + σ·ε, the Gaussian transition x_σ' = a·x_σ + b·ε' has the marginal
    x_σ' = (1 − σ')·x0 + σ'·ε̃ exactly when a·(1 − σ) = 1 − σ' and (a·σ)² + b² = σ'², i.e.
        a = (1 − σ') / (1 − σ),   b = sqrt(σ'² − (a·σ)²),
    real for σ' >= σ (the transition q(x_t | x_s) of Kingma et al. 2021, Variational Diffusion Models, with
    α = 1 − σ). At σ' = 1 it returns ε' itself.
    """
    assert 0.0 <= sigma <= sigma_up <= 1.0 and sigma < 1.0, f"renoise needs 0 <= σ <= σ' <= 1, σ < 1; got {sigma}, {sigma_up}"
    a = (1.0 - sigma_up) / (1.0 - sigma)
    b = math.sqrt(max(sigma_up**2 - (a * sigma) ** 2, 0.0))
    return a * x + b * eps


def lineage_rows(task: SearchTask, lineage: list[dict]) -> Tensor:
    """The condition positions that lineage entries name, checked against the task's condition ids."""
    rows = torch.tensor([entry["row"] for entry in lineage])
    ids = torch.tensor([entry["condition_id"] for entry in lineage])
    assert torch.equal(task.condition_ids[rows].cpu(), ids), "lineage entries belong to another condition set"
    return rows


def _path_levels(entry: dict) -> tuple:
    return entry["sigma_start"], [(r["sigma"], r["sigma_up"], r["sigma_down"]) for r in entry["rounds"]]


def replay_path(task: SearchTask, lineage: list[dict]) -> Tensor:
    """Re-render chosen samples from renoised-path lineage entries (search over paths, FK steering), batched.

    An entry holds the row, the initial noise index, the level the first solve stops at and, per round, the
    levels (σ, σ + Δf, end) and the noise index of that round's renoising; entries of one search share the
    levels. Passing a task with another grid re-renders the same paths on that grid (the segments follow it); with
    a stochastic solver a segment also draws its solver noise from that index (the initial index for the first
    solve), and a round whose σ + Δf is σ (FK steering with Δf = 0) is not renoised.
    """
    rows = lineage_rows(task, lineage)
    first = lineage[0]
    assert all(_path_levels(e) == _path_levels(first) for e in lineage), "entries replayed together share their levels"
    initial = torch.tensor([e["initial"] for e in lineage])
    x = solve_between(task, task.noise(rows, initial), rows, 1.0, first["sigma_start"], indices=initial)
    for r, step in enumerate(first["rounds"]):
        index = torch.tensor([e["rounds"][r]["noise"] for e in lineage])
        if step["sigma_up"] > step["sigma"]:
            x = renoise(x, step["sigma"], step["sigma_up"], task.noise(rows, index))
        x = solve_between(task, x, rows, step["sigma_up"], step["sigma_down"], indices=index)
    return x
