"""Feynman–Kac steering: particles resampled by verifier potentials along the trajectory.

Singhal, Horvitz, Teehan, Ren, Yu, Cho, Ranganath, "A General Framework for Inference-time Scaling and Steering
of Diffusion Models" (arXiv 2501.06848, 2025; contemporary with Ma et al.), their FK-IPS sampler:

    1. Sample K particles x_1^i ~ p(x_1) (σ = 1 is noise here).
    2. At each resampling level σ_r: score every particle's x0-prediction with the reward r (our verifier),
       compute potentials G_r^i and resample the K particles with probabilities ∝ G_r^i.
    3. Propose the next state of each particle with a stochastic sampler; repeat 2-3 down to σ = 0.
    4. Return the highest-reward particle (best-of-K over the final particles).

Potentials, from the intermediate rewards r_s along a particle's ancestry (as in their paper and reference
code): "max" G_r = exp(λ·max_{s≤r} r_s), "add" G_r = exp(λ·Σ_{s≤r} r_s), "diff" G_r = exp(λ·(r_r − r_{r−1}));
at the first level all three are exp(λ·r_1). λ is the inverse temperature of the tilted target p(x0)·exp(λ·r(x0)).
A failed reward (NaN, ±inf; `comparable` in search/base.py) enters as −inf, so that particle's weight is 0 (under
"max" its ancestry's best real reward still counts); a condition whose weights are all 0 resamples uniformly.

Resampling under a deterministic ODE would leave the copies of a particle identical, so the proposal of step 3
is stochastic: every particle is renoised by the interpolant's forward process from σ_r up to σ_r + Δf with
fresh noise, then solved down to σ_{r+1} with the task's solver. Renoising maps the marginal p_σ to p_{σ+Δf}
exactly and the solve carries it down, so without potentials the particles still sample the model. With a
stochastic solver (model.solver=sde, the proposal their paper uses) the solve itself draws fresh noise for every
particle, so copies part ways without renoising: Δf = 0 is then allowed (and refused with an ODE solver). Resampling
levels are equally spaced, σ_r = 1 − r/(R+1); resampling is multinomial with uniforms u = Φ(z) from seeded
noise, so a run is reproducible from (seed, condition, index) like every other draw.

Defaults: λ = 10 and the "diff" potential, the reference code's text-to-image settings (it resamples every 5 of
100 steps over the first 30); R = 3 levels (0.75, 0.5, 0.25); Δf = 0.1, which scored best of 0.1, 0.25, 0.5 on
the embedded model at 96 and 192 NFEs (0.25 did slightly better below). Left out: adaptive (ESS-triggered) resampling, and the final-step correction that would make
the output an exact sample of the tilted target (search wants the best particle instead).
"""

from __future__ import annotations

import torch
from torch import Tensor
from tqdm.auto import tqdm

from inference_scaling.nfe import BudgetError, check_budget
from inference_scaling.noise import candidate_noise
from inference_scaling.sampling import is_stochastic
from inference_scaling.search.base import (SearchResult, SearchTask, batches, comparable, evals_per_call, noised,
                                           predict_x0, renoise, replay_path, segment_cost, segment_sigmas,
                                           solve_between)

POTENTIALS = ("max", "add", "diff")
MAX_RESAMPLINGS = 1000


def potential(kind: str, r: Tensor, past: Tensor | None) -> tuple[Tensor, Tensor]:
    """log G / λ of each particle at this level, and the statistic its descendants carry to the next level."""
    if past is None:
        return r, r
    if kind == "max":
        best = torch.maximum(past, r)
        return best, best
    if kind == "add":
        total = past + r
        return total, total
    return r - past, r  # "diff": the reward gained since the last level


def resample(log_weights: Tensor, u: Tensor) -> Tensor:
    """Multinomial resampling by inverse CDF, one row per condition: ancestor a_i = min{j : Σ_{l≤j} w_l > u_i}.

    log_weights (C, K), u (C, K) uniforms in [0, 1); returns ancestor slots (C, K). A log-weight that is not
    real (a failed score, an undefined potential) is weight 0; a condition with no real weight resamples
    uniformly, as if all its particles scored the same.
    """
    log_weights = comparable(log_weights.double())
    log_weights = torch.where(torch.isinf(log_weights).all(dim=1, keepdim=True), 0.0, log_weights)
    cdf = torch.softmax(log_weights, dim=1).cumsum(dim=1)
    ancestors = torch.searchsorted(cdf, u.double().contiguous(), right=True)
    return ancestors.clamp(max=log_weights.shape[1] - 1)  # cdf[-1] may round to just below u


def resampling_uniforms(task: SearchTask, index: int, k: int) -> Tensor:
    """K uniforms (C, K) per condition: Φ(z) of the K normals that candidate `index` draws (from the task's noise
    generator, on the host where the resampling runs)."""
    c = len(task.condition_ids)
    return torch.special.ndtr(candidate_noise(task.seed, task.condition_ids.cpu(), torch.full((c,), index), (k,),
                                              task.noise_generator))


class FKSteering:
    """FK steering with R resampling levels; the number of particles K comes from the budget.

    Noise indices per condition: the K initial noises are 0..K−1; round r (0-based) draws K + r·(K+1) + j to
    renoise slot j and, at K + r·(K+1) + K, the vector of K normals whose Φ are the resampling uniforms. A
    particle is named by the index of its last noise; its lineage lists its initial index and, per round, the
    levels and the noise index that renoised it (ancestry through resampling is implicit in those indices). A
    stochastic solver draws a segment's step noises from the same index (the first segment: the initial index),
    so (index, step) names every draw of a condition once; with Δf = 0 the index names those draws alone.
    `candidate_scores` is (C, (R + 1)·K): the particles' x0-prediction scores at each level before resampling,
    then the final samples' scores.
    """

    passes_indices = True  # every solve names its rows' candidate indices: a stochastic solver can run (`solve_on`)

    def __init__(self, resamplings: int = 3, delta_f: float = 0.1, lam: float = 10.0, potential: str = "diff",
                 progress: bool = False):
        if not 1 <= resamplings <= MAX_RESAMPLINGS:
            raise ValueError(f"search.resamplings={resamplings} must be in [1, {MAX_RESAMPLINGS}] (each level costs "
                             f"every particle at least one NFE)")
        if not 0.0 <= delta_f <= 1.0:
            raise ValueError(f"search.delta_f={delta_f} must be in [0, 1] (0 only with a stochastic solver)")
        if not lam > 0.0:
            raise ValueError(f"search.lam={lam} must be > 0 (the inverse temperature of the potentials exp(λ·r))")
        if potential not in POTENTIALS:
            raise ValueError(f"search.potential={potential!r}; choose one of: {', '.join(POTENTIALS)}")
        self.resamplings = resamplings
        self.delta_f = delta_f
        self.lam = lam
        self.potential = potential
        self.progress = progress

    def rounds(self) -> list[tuple[float, float, float]]:
        """(σ_r, σ_r + Δf, σ_{r+1}) per resampling level: resample at σ_r, renoise up (at most to 1), solve down."""
        levels = [1.0 - r / (self.resamplings + 1) for r in range(1, self.resamplings + 1)] + [0.0]
        return [(s, min(s + self.delta_f, 1.0), s_next) for s, s_next in zip(levels[:-1], levels[1:])]

    def particle_cost(self, task: SearchTask) -> int:
        """NFEs of one particle: the solve to σ_1, then per level one x0-evaluation and the renoised solve."""
        return segment_cost(task, 1.0, self.rounds()[0][0]) + sum(
            evals_per_call(task) + segment_cost(task, up, down) for _, up, down in self.rounds())

    def particles(self, task: SearchTask, budget: int) -> int:
        """K = budget // particle_cost; refuses a budget that does not buy one particle, and Δf = 0 where the
        resampled copies would stay identical (`check_fresh_noise`)."""
        self.check_fresh_noise(task)
        check_budget(budget, task.cost_per_sample)
        k = budget // self.particle_cost(task)
        if k < 1:
            raise BudgetError(
                f"budget.nfe={budget} is below the cost of one FK-steering particle ({self.particle_cost(task)} NFEs "
                f"with {self.resamplings} resampling levels); use budget.nfe >= {self.particle_cost(task)} or fewer "
                f"search.resamplings"
            )
        return k

    def check_fresh_noise(self, task: SearchTask) -> None:
        """With Δf = 0 only the solver parts resampled copies: refused for an ODE solver (or scale 0), and where the
        last segment is a single step to σ = 0, which adds no noise (it lands on the x0-prediction)."""
        if self.delta_f > 0.0:
            return
        if not is_stochastic(task.solver) or task.sde_scale == 0.0:
            solver = f"solver {task.solver.__name__!r}" + (" with sde_scale=0" if is_stochastic(task.solver) else "")
            raise ValueError(f"search.delta_f=0 leaves resampled particles identical under the deterministic {solver}: "
                             f"use search.delta_f > 0, or model.solver=sde with model.sde_scale > 0")
        sigma, up, down = self.rounds()[-1]
        if len(segment_sigmas(task.sigmas, min(up, task.sigma_top), down)) < 3:
            raise ValueError(f"search.delta_f=0: the last segment, σ = {up:g} to 0, is one solver step, which adds no "
                             f"noise, so particles resampled at σ = {sigma:g} would stay identical; use more "
                             f"model.search_steps or search.delta_f > 0")

    plan = particles  # the common name: the free parameter a budget buys (refuses one that buys none)

    def nfe(self, task: SearchTask, k: int) -> int:
        """NFEs per condition with K particles: K·(cost(1 → σ_1) + Σ_r [x0 evaluation + cost(σ_r + Δf → σ_{r+1})])."""
        return k * self.particle_cost(task)

    def __call__(self, task: SearchTask, budget: int) -> SearchResult:
        K = self.particles(task, budget)
        c = len(task.condition_ids)
        rows = torch.arange(c).repeat_interleave(K)
        slots = torch.arange(K).repeat(c)
        rounds = self.rounds()
        parts = list(batches(c * K, task.max_batch_size))

        def requests(r: int) -> list[tuple[Tensor, Tensor]]:
            """Round r's renoising batches: the rows and noise indices (K + r·(K + 1) + slot) they draw; none
            past the last round or where rounds do not renoise (Δf = 0)."""
            if r >= len(rounds) or rounds[r][1] <= rounds[r][0]:
                return []
            indices = K + r * (K + 1) + slots
            return [(rows[p], indices[p]) for p in parts]

        # 1. K particles per condition, solved to the first resampling level (while round 0's first noises are drawn).
        for request in requests(0)[:1]:
            task.prefetch(*request)
        x = task.hold(solve_between(task, task.noise(rows, slots), rows, 1.0, rounds[0][0], indices=slots))
        origin, history = slots, []  # per particle: its initial noise, and its noise index in every round
        candidate_scores = torch.empty(c, (len(rounds) + 1) * K)
        past = None
        for r, (sigma, up, down) in enumerate(tqdm(rounds, desc="FK steering", disable=not self.progress, leave=False)):
            # 2. Potentials of the x0-predictions at σ_r, then resampling.
            s = self._score(task, x, rows, sigma, K)
            candidate_scores[:, r * K:(r + 1) * K] = s.view(c, K)
            log_g, past = potential(self.potential, comparable(s), past)
            block = K + r * (K + 1)
            u = resampling_uniforms(task, block + K, K)
            ancestor = (resample(self.lam * log_g.view(c, K), u) + torch.arange(c)[:, None] * K).flatten()
            x, past = x[ancestor], past[ancestor]
            # 3. Fresh noise for every particle, so copies of one ancestor part ways, then solve to σ_{r+1}.
            indices = block + slots
            eps = noised(task, requests(r), next(iter(requests(r + 1)), None))  # none when Δf = 0
            x = task.hold(torch.cat([self._propose(task, x[p].to(task.device), rows[p], indices[p], (sigma, up, down),
                                                   next(eps)[2] if up > sigma else None) for p in parts]))
            origin = origin[ancestor]  # a particle's path: its ancestor's, then this round's noise
            history = [h[ancestor] for h in history] + [indices]
        # 4. Best-of-K over the final (clean) particles.
        s = self._score(task, x, rows, 0.0, K).view(c, K)
        candidate_scores[:, -K:] = s
        best = comparable(s).argmax(dim=1)
        flat = torch.arange(c) * K + best
        noises = torch.stack(history, dim=1)[flat].tolist()
        lineage = [{"algorithm": "fk_steering", "row": row, "condition_id": int(task.condition_ids[row]),
                    "sigma_start": rounds[0][0], "initial": int(origin[k]),
                    "rounds": [{"sigma": sigma, "sigma_up": up, "sigma_down": down, "noise": noise}
                               for (sigma, up, down), noise in zip(rounds, noises[row])]}
                   for row, k in enumerate(flat.tolist())]
        return SearchResult(images=x[flat].cpu(), chosen=torch.tensor([p["rounds"][-1]["noise"] for p in lineage]),
                            scores=s.gather(1, best[:, None]).squeeze(1), candidate_scores=candidate_scores,
                            n_candidates=candidate_scores.shape[1], verifier_calls=candidate_scores.numel(),
                            lineage=lineage)

    @staticmethod
    def _propose(task: SearchTask, x: Tensor, rows: Tensor, indices: Tensor, levels: tuple[float, float, float],
                 eps: Tensor | None = None) -> Tensor:
        """Renoise particles from σ_r to σ_r + Δf with the noises `indices` (`eps`, if drawn already; none when
        Δf = 0), solve to σ_{r+1}."""
        sigma, up, down = levels
        if up > sigma:
            x = renoise(x, sigma, up, task.noise(rows, indices) if eps is None else eps)
        return solve_between(task, x, rows, up, down, indices=indices)

    @staticmethod
    def _score(task: SearchTask, x: Tensor, rows: Tensor, sigma: float, k: int) -> Tensor:
        """Verifier scores of the particles' x0-predictions at σ; a call holds all K particles of its conditions."""
        return torch.cat([task.score(predict_x0(task, x[p].to(task.device), rows[p], sigma), rows[p])
                          for p in batches(len(x), task.group_size(k))])

    @staticmethod
    def replay(task: SearchTask, lineage: list[dict]) -> Tensor:
        """Re-render the chosen particles (batched) from their initial noises and the noises that renoised them."""
        return replay_path(task, lineage)
