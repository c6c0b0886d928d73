"""Search over paths: beam search along the sampling trajectory with renoising (Ma et al. 2025, §3.2).

    1. Sample N initial i.i.d. noises and run the ODE solver to a noise level σ.
    2. For each of the N states x_σ, sample M i.i.d. noises and run the forward (noising) process from σ to
       σ + Δf.
    3. Run the ODE solver from each x_{σ+Δf} down to σ + Δf − Δb; score the N·M results with the verifier and
       keep the top N. Repeat 2-3 until the solver reaches σ = 0.
    4. Run a random search over the N remaining samples: keep the best.

Δb > Δf, so the level falls by Δb − Δf per round; the last round is clipped to end exactly at 0, and a renoising
that would pass σ = 1 stops at 1 (pure noise). Verifiers score clean images, so, as in the paper, each path is
scored on its x0-prediction at the level it reached: one extra denoiser evaluation per path and round
(counted like every other; none in the last round, where the path is already clean). The forward process is
the interpolant's exact Gaussian transition (`renoise` in search/base.py).

Defaults, for our σ (1 = noise, 0 = data): M = 2, start at σ = 0.5, renoise by Δf = 0.1 and solve down by
Δb = 0.35, i.e. 0.5 → 0.6 → 0.25 → 0.35 → 0: two rounds of selection. Renoising 0.5 → 0.6 already makes more than
half of the noise variance fresh (b² = 0.2 of σ'² = 0.36), enough for the M branches to part ways, while most
of each round's solve moves the level on. A public review reports σ = 0.11, Δf = 0.78, Δb = 0.81 for the paper
(Appendix A.3, time convention not stated); read in our convention they solve to 0.11, then run four rounds
that renoise to ~0.9 and re-solve almost from scratch (0.11 → 0.89 → 0.08 → … → 0), about three full solves per
branch. On the embedded model (Heun, 2 steps, 400 conditions) our defaults scored slightly higher than both
those values and Δf = 0.25, Δb = 0.5 at every budget from 24 to 192 NFEs; set the review's values to compare.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor
from tqdm.auto import tqdm

from inference_scaling.nfe import BudgetError, check_budget
from inference_scaling.search.base import (SearchResult, SearchTask, ScoringQueue, batches, comparable, evals_per_call,
                                           noised, predict_x0, renoise, replay_path, segment_cost,
                                           solve_between)

MAX_ROUNDS = 1000  # a finer schedule than any sampler grid: each round solves at least one step per branch
_END = 1e-9  # a round that would end within this of σ = 0 ends at 0, so float drift adds no sliver of a round


class SearchOverPaths:
    """Search over paths with M branches per path; the beam width N comes from the budget.

    Noise indices per condition: the N initial noises are 0..N−1; in round r, branch m of survivor n renoises
    with index N + r·N·M + n·M + m, which also names that candidate. The lineage of the chosen sample lists its
    initial index and each round's levels and noise index. `candidate_scores` is (C, rounds·N·M) in noise-index
    order: each round's branches scored on their x0-predictions (the last round's are final samples). A stochastic
    solver draws a segment's step noises from the same index (the first solve: the initial index), so (index,
    step) names every draw of a condition once.
    """

    passes_indices = True  # every solve names its rows' candidate indices: a stochastic solver can run (`solve_on`)

    def __init__(self, m: int = 2, sigma_start: float = 0.5, delta_f: float = 0.1, delta_b: float = 0.35,
                 progress: bool = False):
        if m < 1:
            raise ValueError(f"search.m={m} must be >= 1 noise per path and round")
        if not 0.0 < sigma_start < 1.0:
            raise ValueError(f"search.sigma_start={sigma_start} must be in (0, 1)")
        if not 0.0 < delta_f < delta_b:
            raise ValueError(f"need 0 < search.delta_f < search.delta_b so that σ falls each round; "
                             f"got delta_f={delta_f}, delta_b={delta_b}")
        rounds = int(-(-(sigma_start - _END) // (delta_b - delta_f)))  # σ falls by Δb − Δf a round, as in rounds()
        if rounds > MAX_ROUNDS:
            raise ValueError(f"search.delta_b − search.delta_f = {delta_b - delta_f:g} takes {rounds} rounds from "
                             f"sigma_start={sigma_start}; at most {MAX_ROUNDS}: widen the gap")
        self.m = m
        self.sigma_start = sigma_start
        self.delta_f = delta_f
        self.delta_b = delta_b
        self.progress = progress

    def rounds(self) -> list[tuple[float, float, float]]:
        """(σ, σ + Δf, σ + Δf − Δb) of every round: renoise from σ up to σ + Δf (at most 1), solve down to the end."""
        levels, r = [], 0
        sigma = self.sigma_start
        while sigma > 0.0:
            r += 1
            down = self.sigma_start - r * (self.delta_b - self.delta_f)  # from σ_start, so no drift accumulates
            down = 0.0 if down < _END else down
            levels.append((sigma, min(sigma + self.delta_f, 1.0), down))
            sigma = down
        return levels

    def path_cost(self, task: SearchTask) -> int:
        """NFEs per condition of one unit of beam width: the initial solve plus M branches in every round."""
        branch = sum(segment_cost(task, up, down) + (evals_per_call(task) if down > 0 else 0)
                     for _, up, down in self.rounds())
        return segment_cost(task, 1.0, self.sigma_start) + self.m * branch

    def beam_width(self, task: SearchTask, budget: int) -> int:
        """N = budget // path_cost; refuses a budget that does not buy one path."""
        check_budget(budget, task.cost_per_sample)
        n = budget // self.path_cost(task)
        if n < 1:
            raise BudgetError(
                f"budget.nfe={budget} is below the cost of one path of search over paths "
                f"({self.path_cost(task)} NFEs with M={self.m}, {len(self.rounds())} rounds from σ={self.sigma_start}); "
                f"use budget.nfe >= {self.path_cost(task)}, a smaller search.m or a larger search.delta_b - search.delta_f"
            )
        return n

    plan = beam_width  # the common name: the free parameter a budget buys (refuses one that buys none)

    def nfe(self, task: SearchTask, n: int) -> int:
        """NFEs per condition with beam width N: N·(cost(1 → σ_start) + M·Σ_rounds [cost(σ+Δf → end) + x0 evaluation])."""
        return n * self.path_cost(task)

    def __call__(self, task: SearchTask, budget: int) -> SearchResult:
        N, M = self.beam_width(task, budget), self.m
        c = len(task.condition_ids)
        rows = torch.arange(c).repeat_interleave(N)
        rounds = self.rounds()
        branch_rows = rows.repeat_interleave(M)
        first = next(batches(c * N * M, task.group_size(N * M)))  # each round's first batch of branches

        def upcoming(r: int) -> Optional[tuple[Tensor, Tensor]]:
            """The first batch of round r's renoising noises (None past the last round), to draw ahead."""
            return (branch_rows[first], self.branch_indices(N, M, r, c)[first]) if r < len(rounds) else None

        # 1. N initial noises per condition, solved to σ_start (while round 0's first noises are drawn).
        initial = torch.arange(N).repeat(c)
        if upcoming(0) is not None:
            task.prefetch(*upcoming(0))
        states = task.hold(solve_between(task, task.noise(rows, initial), rows, 1.0, self.sigma_start,
                                         indices=initial))
        origin = initial  # per survivor: its initial noise, and below its branch's noise index in every round
        history: list[Tensor] = []
        candidate_scores = torch.empty(c, len(rounds) * N * M)
        for r, (sigma, up, down) in enumerate(tqdm(rounds, desc="search over paths", disable=not self.progress,
                                                  leave=False)):
            # 2-3. M renoised branches of every path, solved down and scored; the top N of N·M survive.
            parent = torch.arange(c * N).repeat_interleave(M)
            indices = self.branch_indices(N, M, r, c)
            states, s = self._branch(task, states, parent, branch_rows, indices, (sigma, up, down), upcoming(r + 1))
            candidate_scores[:, r * N * M:(r + 1) * N * M] = s.view(c, N * M)
            keep = torch.sort(comparable(s).view(c, N * M), dim=1, descending=True, stable=True).indices[:, :N]
            keep = (keep + torch.arange(c)[:, None] * N * M).flatten()
            states = states[keep]
            origin = origin[parent[keep]]  # the survivors' paths: their parents' paths, then this round's noise
            history = [h[parent[keep]] for h in history] + [indices[keep]]
            survivor_scores = s[keep].view(c, N)
        # 4. Random search over the N survivors, now clean samples scored in the last round: they are sorted.
        best = torch.arange(c) * N
        noises = torch.stack(history, dim=1)[best].tolist() if history else [[] for _ in range(c)]
        lineage = [{"algorithm": "paths", "row": row, "condition_id": int(task.condition_ids[row]),
                    "sigma_start": self.sigma_start, "initial": int(origin[best[row]]),
                    "rounds": [{"sigma": sigma, "sigma_up": up, "sigma_down": down, "noise": noise}
                               for (sigma, up, down), noise in zip(rounds, noises[row])]} for row in range(c)]
        return SearchResult(images=states[best].cpu(), chosen=torch.tensor([p["rounds"][-1]["noise"] for p in lineage]),
                            scores=survivor_scores[:, 0], candidate_scores=candidate_scores,
                            n_candidates=candidate_scores.shape[1], verifier_calls=candidate_scores.numel(),
                            lineage=lineage)

    @staticmethod
    def branch_indices(n: int, m: int, r: int, c: int) -> Tensor:
        """The noise index of each of the N·M branches of every condition in round r (condition-major)."""
        return n + r * n * m + torch.arange(n * m).repeat(c)

    def _branch(self, task: SearchTask, states: Tensor, parent: Tensor, rows: Tensor, indices: Tensor,
                levels: tuple[float, float, float], after: Optional[tuple[Tensor, Tensor]] = None,
                ) -> tuple[Tensor, Tensor]:
        """Renoise states[parent] from σ to σ + Δf with the noises `indices`, solve to the end level, score x0
        (`after`: the next round's first noises, drawn ahead while this round's last batch solves).

        Each verifier call holds all N·M branches of its conditions (`group_size`), so a set-level verifier ranks
        exactly the candidates the selection compares.
        """
        sigma, up, down = levels
        out, scores = [], []
        branches = len(parent) // len(task.condition_ids)  # N·M per condition, condition-major
        parts = list(batches(len(parent), task.group_size(branches)))
        with ScoringQueue(task) as queue:  # an API verifier scores a batch while the next one is solved
            for part, (_, _, eps) in zip(parts, noised(task, [(rows[p], indices[p]) for p in parts], after)):
                x = renoise(states[parent[part]].to(task.device), sigma, up, eps)
                x = solve_between(task, x, rows[part], up, down, indices=indices[part])
                queue.submit(predict_x0(task, x, rows[part], down), rows[part], lambda _, s: scores.append(s))
                out.append(x)
        return task.hold(torch.cat(out)), torch.cat(scores)

    @staticmethod
    def replay(task: SearchTask, lineage: list[dict]) -> Tensor:
        """Re-render the chosen paths (batched): initial noises, then each round's renoising and solve."""
        return replay_path(task, lineage)
