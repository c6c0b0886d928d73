"""Evolutionary search over initial noises: a population evolved by elitism and Gaussian-preserving mutation.

He, Liang, Wang, Wan, Zhang, Gai, Pan, "Scaling Image and Video Generation via Test-Time Evolutionary Search"
(EvoSearch, arXiv 2505.17618, 2025), the part of it that evolves initial noises:

    1. Sample a population of P initial noises; solve and score each.
    2. Keep the E best as elites.
    3. Fill the population with P − E children, each a mutation of a parent:
           child = sqrt(1 − β²)·parent + β·ε,   ε ~ N(0, I),
       which keeps a N(0, I) parent N(0, I), so children stay noise the model was trained on.
    4. Solve and score the children; repeat 2-4 for G generations; return the best noise ever scored.

Two deviations: elites are not re-solved (under our deterministic ODE their samples would not change; EvoSearch
re-generates them with its SDE sampler), and parents are chosen by truncation rather than EvoSearch's tournament
(child j mutates the (j mod E)-th best elite), which needs no random draws beyond the mutations. This is a (μ + λ) evolution strategy with μ = E, λ = P − E; zero-order search is its (1 + N) special
case with mutations at a fixed distance. EvoSearch also evolves intermediate states with SDE noise; that part
is left out (search over paths and FK steering cover renoising of intermediate states).

Defaults P = 8, E = 2, β = 0.5: on the embedded model β = 0.5 beat 0.3 and 0.8 at every budget tried (42 to 192
NFEs); P = 4, E = 1 did better still at small budgets, but is nearly zero-order search.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from tqdm.auto import tqdm

from inference_scaling.nfe import BudgetError, check_budget
from inference_scaling.search.base import (SearchResult, SearchTask, batches, comparable, keep_best, lineage_rows,
                                           no_best, refuse_set_level)


def mutate(parent: Tensor, eps: Tensor, beta: float) -> Tensor:
    """EvoSearch's mutation sqrt(1 − β²)·parent + β·ε: variance-preserving, so N(0, I) stays N(0, I)."""
    return math.sqrt(1.0 - beta**2) * parent + beta * eps


def descendant_noise(task: SearchTask, row: Tensor, entry: dict) -> Tensor:
    """One condition's chosen noise: its generation-0 noise mutated by each recorded mutation in turn."""
    row = row.view(1)
    x = task.noise(row, torch.tensor([entry["initial"]]))
    for index in entry["mutations"]:
        x = mutate(x, task.noise(row, torch.tensor([index])), entry["mutation"])
    return x


class EvolutionarySearch:
    """Evolutionary search with population P, E elites and mutation strength β; G generations from the budget.

    Candidate indices per condition: generation 0 is 0..P−1; child j of generation g >= 1 is
    P + (g − 1)·(P − E) + j, and that index names its mutation noise. The lineage of the chosen noise lists its
    generation-0 index and the mutation indices along its ancestry. `candidate_scores` is (C, P + (G − 1)·(P − E))
    in index order.
    """

    passes_x0 = True  # candidates are full solves from noise: x0-predictions along them reach the verifier

    def __init__(self, population: int = 8, elites: int = 2, mutation: float = 0.5, progress: bool = False):
        if not 1 <= elites < population:
            raise ValueError(f"need 1 <= search.elites < search.population; got elites={elites}, population={population}")
        if not 0.0 < mutation <= 1.0:
            raise ValueError(f"search.mutation={mutation} must be in (0, 1] (β = 1 replaces the parent by fresh noise)")
        self.population = population
        self.elites = elites
        self.mutation = mutation
        self.progress = progress

    def generations(self, task: SearchTask, budget: int) -> int:
        """G = 1 + (budget // cost − P) // (P − E); refuses a budget that buys no generation of children."""
        P, E = self.population, self.elites
        samples = check_budget(budget, task.cost_per_sample)
        g = 1 + (samples - P) // (P - E) if samples >= P else 0
        if g < 2:
            need = (2 * P - E) * task.cost_per_sample
            raise BudgetError(
                f"budget.nfe={budget} buys {samples} sample(s); evolutionary search needs P + (P − E) = {2 * P - E} "
                f"(population {P} and one generation of {P - E} children at {task.cost_per_sample} NFEs each); "
                f"use budget.nfe >= {need} or a smaller search.population"
            )
        return g

    plan = generations  # the common name: the free parameter a budget buys (refuses one that buys none)

    def nfe(self, task: SearchTask, g: int) -> int:
        """NFEs per condition of G generations: (P + (G − 1)·(P − E))·cost_per_sample."""
        return (self.population + (g - 1) * (self.population - self.elites)) * task.cost_per_sample

    def __call__(self, task: SearchTask, budget: int) -> SearchResult:
        refuse_set_level(task, "evolutionary search")  # elites keep the scores of earlier calls
        P, E, G = self.population, self.elites, self.generations(task, budget)
        c = len(task.condition_ids)
        everyone = torch.arange(c)
        total = P + (G - 1) * (P - E)
        candidate_scores = torch.empty(c, total)
        best = no_best(c)
        # 1. Generation 0: P noises per condition. Members are kept per condition: (C, P) indices and noises.
        members = torch.arange(P).repeat(c, 1)
        noises = task.noise(everyone.repeat_interleave(P), members.flatten()).cpu()
        images = self._evaluate(task, everyone.repeat_interleave(P), members.flatten(), noises, candidate_scores,
                                best, None)
        noises = noises.view(c, P, *noises.shape[1:])
        chains = [[{"initial": i, "mutations": []} for i in range(P)] for _ in range(c)]
        for g in tqdm(range(1, G), desc="evolutionary search", disable=not self.progress, leave=False):
            # 2. Elites: the E best members; a stable sort keeps the older of equal scores first, so the first
            #    best noise ever scored is never dropped.
            scores = comparable(candidate_scores.gather(1, members))
            rank = torch.sort(scores, dim=1, descending=True, stable=True).indices
            elite = rank[:, :E]
            # 3. Children: child j mutates the (j mod E)-th best elite with the noise of its own index.
            parent = elite[:, torch.arange(P - E) % E]
            child_index = P + (g - 1) * (P - E) + torch.arange(P - E)
            rows = everyone.repeat_interleave(P - E)
            children = torch.cat([
                mutate(noises[rows[p], parent.flatten()[p]].to(task.device),
                       task.noise(rows[p], child_index.repeat(c)[p]), self.mutation).cpu()
                for p in batches(c * (P - E), task.max_batch_size)])
            # 4. Solve and score the children (elites keep their scores: the ODE would give the same samples).
            images = self._evaluate(task, rows, child_index.repeat(c), children, candidate_scores, best, images)
            chains = [[chains[r][e] for e in elite[r].tolist()]
                      + [{"initial": chains[r][a]["initial"], "mutations": chains[r][a]["mutations"] + [i]}
                         for a, i in zip(parent[r].tolist(), child_index.tolist())] for r in range(c)]
            members = torch.cat([members.gather(1, elite), child_index.repeat(c, 1)], dim=1)
            noises = torch.cat([noises[everyone[:, None], elite], children.view(c, P - E, *noises.shape[2:])], dim=1)
        chosen = comparable(candidate_scores).argmax(dim=1)  # the first best in index order: the image keep_best kept
        slot = (members == chosen[:, None]).int().argmax(dim=1)
        assert torch.equal(members[everyone, slot], chosen), "the best noise ever scored is a member of the last generation"
        lineage = [{"algorithm": "evolutionary", "row": r, "condition_id": int(task.condition_ids[r]),
                    "mutation": self.mutation, **chains[r][slot[r]]} for r in range(c)]
        return SearchResult(images=images, chosen=chosen, scores=candidate_scores.gather(1, chosen[:, None]).squeeze(1),
                            candidate_scores=candidate_scores, n_candidates=total, verifier_calls=c * total,
                            lineage=lineage)

    @staticmethod
    def _evaluate(task: SearchTask, rows: Tensor, index: Tensor, noises: Tensor, candidate_scores: Tensor,
                  best: Tensor, images: Tensor | None) -> Tensor:
        """Solve and score candidate noises in flat batches; record their scores and keep each condition's best."""
        for part in batches(len(rows), task.max_batch_size):
            x, s = task.solve_and_score(noises[part].to(task.device), rows[part])
            candidate_scores[rows[part], index[part]] = s
            if images is None:
                images = torch.zeros(len(best), *x.shape[1:], dtype=x.dtype)
            keep_best(best, images, rows[part], s, x.cpu())
        return images

    @staticmethod
    def replay(task: SearchTask, lineage: list[dict]) -> Tensor:
        """Re-render chosen samples: each generation-0 noise mutated along its ancestry, then all solved (batched).
        A task with another grid renders the same noises with that sampler."""
        rows = lineage_rows(task, lineage)
        return task.solve(torch.cat([descendant_noise(task, row, entry) for row, entry in zip(rows, lineage)]), rows)
