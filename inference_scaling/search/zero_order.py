"""Zero-order search: hill-climbing from a pivot noise through its neighbours (Ma et al. 2025, §3.2).

    1. Start from a Gaussian noise n as the pivot.
    2. Find N candidates in the pivot's neighbourhood S_n^λ = {y : d(y, n) = λ}.
    3. Solve every candidate to a sample and score it with the verifier; the best candidate becomes the pivot.
    4. Repeat 2-3 for K iterations.

The neighbourhood is a sphere on the Gaussian shell: a neighbour keeps the pivot's norm and lies at Euclidean
distance λ·‖n‖ from it, i.e. at angle θ = 2·arcsin(λ/2) (cosine similarity 1 − λ²/2; λ = 0.32 is the
cosine similarity 0.95 public implementations use). Scaling by ‖n‖ makes λ mean the same for an 8×8 image and a
FLUX latent. With a random direction, a neighbour of a N(0, I) pivot is again N(0, I) (same radius, uniformly
random direction), so every candidate is noise the model was trained on. Default N = 4, λ = 0.6 (cosine
similarity 0.82): on the embedded model λ = 0.6 beat 0.3 and 1.0 at 96 and 192 NFEs (1.0 did better below);
larger models may want the smaller steps of λ ≈ 0.3.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
from torch import Tensor
from tqdm.auto import tqdm

from inference_scaling.nfe import BudgetError, check_budget
from inference_scaling.search.base import (SearchResult, SearchTask, ScoringQueue, batches, comparable, keep_best,
                                           lineage_rows, noised, refuse_set_level)


def neighbour(pivot: Tensor, direction: Tensor, lam: float) -> Tensor:
    """The point at distance λ·‖pivot‖ from each pivot row on the sphere of radius ‖pivot‖, towards `direction`.

    n = cos θ·p + sin θ·‖p‖·u with u the unit part of `direction` orthogonal to p and θ = 2·arcsin(λ/2), so
    ‖n‖ = ‖p‖ and ‖n − p‖ = 2·‖p‖·sin(θ/2) = λ·‖p‖. Computed in float64 so both hold to the dtype's rounding.
    """
    assert 0.0 < lam <= 2.0, f"λ={lam} must be in (0, 2]: 2 is the antipode on the shell"
    p, d = pivot.flatten(1).double(), direction.flatten(1).double()
    radius = p.norm(dim=1, keepdim=True)
    p_hat = p / radius
    u = d - (d * p_hat).sum(dim=1, keepdim=True) * p_hat
    u = u / u.norm(dim=1, keepdim=True)
    theta = 2.0 * math.asin(lam / 2.0)
    return (math.cos(theta) * p + math.sin(theta) * radius * u).to(pivot.dtype).view_as(pivot)


def pivot_noise(task: SearchTask, row: Tensor, entry: dict) -> Tensor:
    """The last pivot of one condition's history: candidate 0 moved to each recorded neighbour in turn."""
    row = row.view(1)
    pivot = task.noise(row, torch.tensor([0]))
    for index in entry["pivots"][1:]:
        pivot = neighbour(pivot, task.noise(row, torch.tensor([index])), entry["lam"])
    return pivot


@dataclass
class PivotWalk:
    """The first `n` iterations of every condition's walk: what any budget up to n iterations selects from.

    The pivot after K iterations is the last move before iteration K (or candidate 0); only moves keep an image.
    Empty (no pivot solved yet) while `scores` has no column.
    """

    n: int  # iterations done
    ids: Tensor  # (C,) condition ids
    scores: Tensor  # (C, 1 + n·N) every candidate's score, in index order
    pivot: Tensor  # (C, ...) the pivot noises after n iterations (to continue from)
    first_images: Tensor  # (C, ...) candidate 0's samples
    move_rows: Tensor  # (M,) per move: the condition, the iteration, the winning neighbour's index, its sample
    move_iteration: Tensor
    move_index: Tensor
    move_images: Tensor

    @classmethod
    def empty(cls, c: int) -> "PivotWalk":
        none = torch.empty(0, dtype=torch.long)
        return cls(0, none, torch.empty(c, 0), torch.empty(0), torch.empty(0), none, none, none, torch.empty(0))

    def tensors(self) -> dict[str, Tensor]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "n"}


class ZeroOrderSearch:
    """Zero-order search with N neighbours per iteration at relative distance λ; K comes from the budget.

    Candidate indices: the pivot is index 0 and neighbour j of iteration k is index 1 + k·N + j; that index
    names the neighbour's direction `candidate_noise(seed, condition id, index)`. A pivot's own score counts:
    it is solved and scored once, and a candidate replaces it only if it scores strictly higher, so the pivot
    stays where no neighbour beats it (and each condition's score never falls from one iteration to the next).
    Cost: (1 + K·N) samples per condition; `candidate_scores` is (C, 1 + K·N) in index order.
    """

    passes_x0 = True  # candidates are full solves from noise: x0-predictions along them reach the verifier
    passes_indices = True  # every solve names its rows' candidate indices: a stochastic solver can run (`solve_on`)

    def __init__(self, n: int = 4, lam: float = 0.6, progress: bool = False):
        if n < 1:
            raise ValueError(f"search.n={n} must be >= 1 neighbour per iteration")
        if not 0.0 < lam <= 2.0:
            raise ValueError(f"search.lam={lam} must be in (0, 2] (relative distance on the Gaussian shell)")
        self.n = n
        self.lam = lam
        self.progress = progress

    def iterations(self, task: SearchTask, budget: int) -> int:
        """K = (budget // cost − 1) // N; refuses a budget that buys no full iteration."""
        samples = check_budget(budget, task.cost_per_sample)
        k = (samples - 1) // self.n
        if k < 1:
            need = (1 + self.n) * task.cost_per_sample
            raise BudgetError(
                f"budget.nfe={budget} buys {samples} sample(s); zero-order search needs 1 + N = {1 + self.n} "
                f"(the pivot and one iteration of N={self.n} neighbours at {task.cost_per_sample} NFEs each); "
                f"use budget.nfe >= {need} or a smaller search.n"
            )
        return k

    plan = iterations  # the common name: the free parameter a budget buys (refuses one that buys none)

    def nfe(self, task: SearchTask, k: int) -> int:
        """NFEs per condition of K iterations: (1 + K·N)·cost_per_sample."""
        return (1 + k * self.n) * task.cost_per_sample

    @staticmethod
    def streams(task: SearchTask) -> bool:
        """Iteration k's calls do not depend on K, so budget K' < K is a prefix of K's walk (`extend`, `select`);
        not for a verifier that scores the whole selected set at once."""
        return not getattr(task.verifier, "needs_all_conditions", False)

    def __call__(self, task: SearchTask, budget: int) -> SearchResult:
        refuse_set_level(task, "zero-order search")  # a pivot keeps the score of an earlier call
        k = self.iterations(task, budget)
        return self.select(self.extend(task, PivotWalk.empty(len(task.condition_ids)), k), k)

    stream_type = PivotWalk

    def extend(self, task: SearchTask, walk: PivotWalk, K: int) -> PivotWalk:
        """The walk continued from its walk.n iterations to K."""
        refuse_set_level(task, "zero-order search")
        N, c = self.n, len(task.condition_ids)
        if K <= walk.n and walk.scores.numel():
            return walk
        everyone = torch.arange(c)
        rows = everyone.repeat_interleave(N)
        parts = list(batches(c * N, task.max_batch_size))

        def requests(k: int) -> list[tuple[Tensor, Tensor]]:
            """Iteration k's batches: the rows and direction indices (1 + k·N + j for neighbour j) they solve."""
            indices = 1 + k * N + torch.arange(N).repeat(c)
            return [(rows[p], indices[p]) for p in parts]

        if not walk.scores.numel():  # 1. The pivot: candidate 0 of each condition, solved and scored once.
            pivot = task.noise(everyone, torch.zeros(c, dtype=torch.long)).cpu()
            task.prefetch(*requests(walk.n)[0])  # the first neighbours' directions, drawn while the pivots solve
            first_images, first_score = self._solve_pivots(task, pivot)
            none = torch.empty(0, dtype=torch.long)
            walk = PivotWalk(n=0, ids=task.condition_ids.cpu(), scores=first_score[:, None], pivot=pivot,
                             first_images=first_images, move_rows=none, move_iteration=none, move_index=none,
                             move_images=first_images[:0])
        candidate_scores = torch.cat([walk.scores, torch.empty(c, (K - walk.n) * N)], dim=1)
        current = self.select(walk, walk.n)
        pivot, images = task.hold(walk.pivot.to(task.device)), current.images.clone()  # pivots stay on the device
        pivot_score = comparable(current.scores)  # a failed pivot is kept only until a neighbour scores
        moves = [(walk.move_rows, walk.move_iteration, walk.move_index, walk.move_images)]
        for k in tqdm(range(walk.n, K), desc="zero-order search", disable=not self.progress, leave=False):
            indices = 1 + k * N + torch.arange(N).repeat(c)
            # 2-3. N neighbours of each pivot, solved and scored; the running best starts at the pivot.
            best = pivot_score.clone()

            def record(x: Tensor, s: Tensor, part: slice) -> None:
                candidate_scores[rows[part], indices[part]] = s
                keep_best(best, images, rows[part], s, x.cpu())

            after = requests(k + 1)[0] if k + 1 < K else None  # the next iteration's first batch
            with ScoringQueue(task) as queue:  # an API verifier scores a batch while the next one is solved
                for part, (_, _, direction) in zip(parts, noised(task, requests(k), after)):
                    candidate = neighbour(pivot[rows[part]].to(task.device), direction, self.lam)
                    queue.solve(candidate, rows[part], lambda x, s, part=part: record(x, s, part),
                                indices=indices[part])
            # 4. Move the pivots that a neighbour beat (the first best neighbour, as keep_best kept its image).
            moved = (best > pivot_score).nonzero().squeeze(1)
            winner = 1 + k * N + comparable(candidate_scores[moved, 1 + k * N:1 + (k + 1) * N]).argmax(dim=1)
            pivot[moved] = neighbour(pivot[moved].to(task.device), task.noise(moved, winner), self.lam).to(pivot.device)
            pivot_score = best
            moves.append((moved, torch.full_like(moved, k), winner, images[moved].clone()))
        rows_, iteration, index, moved_images = (torch.cat(parts) for parts in zip(*moves))
        return PivotWalk(n=K, ids=walk.ids, scores=candidate_scores, pivot=pivot.cpu(), first_images=walk.first_images,
                         move_rows=rows_, move_iteration=iteration, move_index=index, move_images=moved_images)

    def select(self, walk: PivotWalk, K: int) -> SearchResult:
        """The pivots after the first K iterations of the walk (K <= walk.n): as a K-iteration run ends."""
        assert K <= walk.n, f"the walk holds {walk.n} iterations, not {K}"
        c = len(walk.first_images)
        history = [[0] for _ in range(c)]
        images = walk.first_images.clone()
        early = walk.move_iteration < K
        for row, index, image in zip(walk.move_rows[early].tolist(), walk.move_index[early].tolist(),
                                     walk.move_images[early]):
            history[row].append(index)
            images[row] = image
        candidate_scores = walk.scores[:, :1 + K * self.n]
        lineage = [{"algorithm": "zero_order", "row": row, "condition_id": int(walk.ids[row]), "lam": self.lam,
                    "pivots": history[row]} for row in range(c)]
        chosen = torch.tensor([h[-1] for h in history])
        return SearchResult(images=images, chosen=chosen, scores=candidate_scores.gather(1, chosen[:, None]).squeeze(1),
                            candidate_scores=candidate_scores, n_candidates=1 + K * self.n,
                            verifier_calls=c * (1 + K * self.n), lineage=lineage)

    def _solve_pivots(self, task: SearchTask, pivot: Tensor) -> tuple[Tensor, Tensor]:
        c = len(pivot)
        images, scores = [], []
        for part in batches(c, task.max_batch_size):
            rows = torch.arange(c)[part]
            x, s = task.solve_and_score(pivot[part].to(task.device), rows, torch.zeros(len(rows), dtype=torch.long))
            images.append(x.cpu())
            scores.append(s)
        return torch.cat(images), torch.cat(scores)

    @staticmethod
    def replay(task: SearchTask, lineage: list[dict]) -> Tensor:
        """Re-render chosen samples from their pivot histories: walk each condition's pivots from candidate 0, then
        solve them all (batched). A task with another grid renders the same noises with that sampler."""
        rows = lineage_rows(task, lineage)
        return task.solve(torch.cat([pivot_noise(task, row, entry) for row, entry in zip(rows, lineage)]), rows,
                          torch.tensor([entry["pivots"][-1] for entry in lineage]))
