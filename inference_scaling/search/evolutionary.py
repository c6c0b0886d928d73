"""Evolutionary search over initial noises: a population evolved by elitism and Gaussian-preserving mutation.

He, Liang, Wang, Wan, Zhang, Gai, Pan, "Scaling Image and Video Generation via Test-Time Evolutionary Search"
(EvoSearch, arXiv 2505.17618, 2025), the part of it that evolves initial noises:

    1. Sample a population of P initial noises; solve and score each.
    2. Keep the E best as elites.
    3. Fill the population with P − E children, each a mutation of a parent:
           child = sqrt(1 − β²)·parent + β·ε,   ε ~ N(0, I),
       which keeps a N(0, I) parent N(0, I), so children stay noise the model was trained on.
    4. Solve and score the children; repeat 2-4 for G generations; return the best noise ever scored.

Two deviations: elites are not re-solved (under our deterministic ODE their samples would not change, nor under
model.solver=sde, whose noise is named by the candidate's index; EvoSearch re-generates them with fresh SDE noise),
and parents are chosen by truncation rather than EvoSearch's tournament (child j mutates the (j mod E)-th best
elite), which needs no random draws beyond the mutations. This is a (μ + λ) evolution strategy with μ = E,
λ = P − E; zero-order search is its (1 + N) special case with mutations at a fixed distance. EvoSearch also
evolves intermediate states with SDE noise; that part is left out (search over paths and FK steering cover
renoising of intermediate states).

Defaults P = 8, E = 2, β = 0.5: on the embedded model β = 0.5 beat 0.3 and 0.8 at every budget tried (42 to 192
NFEs); P = 4, E = 1 did better still at small budgets, but is nearly zero-order search.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
from torch import Tensor
from tqdm.auto import tqdm

from inference_scaling.nfe import BudgetError, check_budget
from inference_scaling.search.base import (SearchResult, SearchTask, ScoringQueue, batches, comparable, keep_best,
                                           lineage_rows, no_best, refuse_set_level)


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


@dataclass
class Population:
    """The first `n` generations of every condition's evolution: what any budget up to n generations selects from.

    The best of the first G generations is the last *record* below their candidates (a candidate that scored
    strictly higher than every earlier one of its condition); only records keep their sample, and each candidate's
    parent names its ancestry (−1 for generation 0). Empty while `scores` has no column.
    """

    n: int  # generations done
    ids: Tensor  # (C,) condition ids
    scores: Tensor  # (C, P + (n − 1)·(P − E)) every candidate's score, in index order
    parent: Tensor  # (C, same) the candidate each one mutated; −1 for generation 0
    members: Tensor  # (C, P) the population after n generations (to continue from): indices and noises
    noises: Tensor
    record_rows: Tensor  # (R,) per record: the condition, the candidate index, its sample
    record_index: Tensor
    record_images: Tensor

    @classmethod
    def empty(cls, c: int) -> "Population":
        none = torch.empty(0, dtype=torch.long)
        return cls(0, none, torch.empty(c, 0), torch.empty(c, 0, dtype=torch.long), none, torch.empty(0), none, none,
                   torch.empty(0))

    def tensors(self) -> dict[str, Tensor]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "n"}


class EvolutionarySearch:
    """Evolutionary search with population P, E elites and mutation strength β; G generations from the budget.

    Candidate indices per condition: generation 0 is 0..P−1; child j of generation g >= 1 is
    P + (g − 1)·(P − E) + j, and that index names its mutation noise. The lineage of the chosen noise lists its
    generation-0 index and the mutation indices along its ancestry. `candidate_scores` is (C, P + (G − 1)·(P − E))
    in index order.
    """

    passes_x0 = True  # candidates are full solves from noise: x0-predictions along them reach the verifier
    passes_indices = True  # every solve names its rows' candidate indices: a stochastic solver can run (`solve_on`)

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

    stream_type = Population

    @staticmethod
    def streams(task: SearchTask) -> bool:
        """Generation g's calls do not depend on G (the population does not depend on the budget), so budget G' < G
        is a prefix of G's run (`extend`, `select`); not for a verifier that scores the whole selected set."""
        return not getattr(task.verifier, "needs_all_conditions", False)

    def __call__(self, task: SearchTask, budget: int) -> SearchResult:
        refuse_set_level(task, "evolutionary search")  # elites keep the scores of earlier calls
        g = self.generations(task, budget)
        return self.select(self.extend(task, Population.empty(len(task.condition_ids)), g), g)

    def total(self, g: int) -> int:
        """Candidates per condition of g generations."""
        return self.population + (g - 1) * (self.population - self.elites)

    def extend(self, task: SearchTask, pop: Population, G: int) -> Population:
        """The population evolved from its pop.n generations to G."""
        refuse_set_level(task, "evolutionary search")
        P, E = self.population, self.elites
        c = len(task.condition_ids)
        if G <= pop.n:
            return pop
        everyone = torch.arange(c)
        candidate_scores = torch.cat([pop.scores, torch.empty(c, self.total(G) - pop.scores.shape[1])], dim=1)
        parents = torch.cat([pop.parent, torch.full((c, self.total(G) - pop.parent.shape[1]), -1)], dim=1)
        records = [(pop.record_rows, pop.record_index, pop.record_images)]
        first = next(batches(c * (P - E), task.max_batch_size))  # each generation's first batch of children

        def draw_ahead(g: int) -> None:
            """Start drawing generation g's first mutation noises while the current generation solves."""
            if g < G:
                child_index = (self.total(g) + torch.arange(P - E)).repeat(c)
                task.prefetch(everyone.repeat_interleave(P - E)[first], child_index[first])

        if pop.n == 0:  # 1. Generation 0: P noises per condition. Members are kept per condition: (C, P) indices.
            best, images = no_best(c), None
            members = torch.arange(P).repeat(c, 1)
            noises = task.hold(task.noise(everyone.repeat_interleave(P), members.flatten()))
            draw_ahead(1)
            images = self._evaluate(task, everyone.repeat_interleave(P), members.flatten(), noises, candidate_scores,
                                    best, None, records)
            noises = noises.view(c, P, *noises.shape[1:])
        else:
            current = self.select(pop, pop.n)
            best, images = comparable(current.scores), current.images.clone()
            members, noises = pop.members, task.hold(pop.noises.to(task.device))
        for g in tqdm(range(max(pop.n, 1), G), desc="evolutionary search", disable=not self.progress, leave=False):
            # 2. Elites: the E best members; a stable sort keeps the older of equal scores first, so the first
            #    best noise ever scored is never dropped.
            scores = comparable(candidate_scores.gather(1, members))
            rank = torch.sort(scores, dim=1, descending=True, stable=True).indices
            elite = rank[:, :E]
            # 3. Children: child j mutates the (j mod E)-th best elite with the noise of its own index.
            parent = elite[:, torch.arange(P - E) % E]
            child_index = self.total(g) + torch.arange(P - E)
            rows = everyone.repeat_interleave(P - E)
            children = torch.cat([
                mutate(noises[rows[p], parent.flatten()[p]].to(task.device),
                       task.noise(rows[p], child_index.repeat(c)[p]), self.mutation).to(noises.device)
                for p in batches(c * (P - E), task.max_batch_size)])  # where the population is held
            parents[:, child_index] = members.gather(1, parent)  # each child's parent candidate
            # 4. Solve and score the children (elites keep their scores: the ODE would give the same samples).
            draw_ahead(g + 1)
            images = self._evaluate(task, rows, child_index.repeat(c), children, candidate_scores, best, images,
                                    records)
            members = torch.cat([members.gather(1, elite), child_index.repeat(c, 1)], dim=1)
            noises = torch.cat([noises[everyone[:, None], elite], children.view(c, P - E, *noises.shape[2:])], dim=1)
        record_rows, record_index, record_images = (torch.cat(parts) for parts in zip(*records))
        return Population(n=G, ids=task.condition_ids.cpu(), scores=candidate_scores, parent=parents, members=members,
                          noises=noises.cpu(), record_rows=record_rows, record_index=record_index,
                          record_images=record_images)

    def select(self, pop: Population, G: int) -> SearchResult:
        """The best noise of the first G generations (G <= pop.n), as a G-generation run chooses it."""
        assert G <= pop.n, f"the population holds {pop.n} generations, not {G}"
        c, total = len(pop.ids), self.total(G)
        candidate_scores = pop.scores[:, :total]
        chosen = comparable(candidate_scores).argmax(dim=1)  # the first best in index order: the image keep_best kept
        below = pop.record_index < total
        last = torch.full((c,), -1, dtype=torch.long).scatter_reduce(
            0, pop.record_rows[below], below.nonzero().squeeze(1), "amax")
        assert torch.equal(pop.record_index[last], chosen), "records disagree with the scores"
        lineage, parents, ids = [], pop.parent.tolist(), pop.ids.tolist()
        for r, best in enumerate(chosen.tolist()):
            path = [best]
            while parents[r][path[-1]] >= 0:
                path.append(parents[r][path[-1]])
            lineage.append({"algorithm": "evolutionary", "row": r, "condition_id": ids[r],
                            "mutation": self.mutation, "initial": path[-1], "mutations": path[-2::-1]})
        return SearchResult(images=pop.record_images[last], chosen=chosen,
                            scores=candidate_scores.gather(1, chosen[:, None]).squeeze(1),
                            candidate_scores=candidate_scores, n_candidates=total, verifier_calls=c * total,
                            lineage=lineage)

    @staticmethod
    def _evaluate(task: SearchTask, rows: Tensor, index: Tensor, noises: Tensor, candidate_scores: Tensor,
                  best: Tensor, images: Tensor | None, records: list) -> Tensor:
        """Solve and score candidate noises in flat batches; record their scores, keep each condition's best and
        append the candidates that set a new best (row, index, sample) to `records`."""

        def record(x: Tensor, s: Tensor, part: slice) -> None:
            nonlocal images
            x = x.cpu()
            candidate_scores[rows[part], index[part]] = s
            if images is None:
                images = torch.zeros(len(best), *x.shape[1:], dtype=x.dtype)
            before = best.clone()
            keep_best(best, images, rows[part], s, x)
            won = (best > before) | (before.isnan() & ~best.isnan())
            # The candidate keep_best kept for a condition that won: its first position with the batch's best score.
            hit = (comparable(s) == best[rows[part]]) & won[rows[part]]
            first = torch.full((len(best),), len(s), dtype=torch.long).scatter_reduce(
                0, rows[part][hit], torch.arange(len(s))[hit], "amin")
            won = won.nonzero().squeeze(1)
            records.append((won, index[part][first[won]], images[won].clone()))

        with ScoringQueue(task) as queue:  # an API verifier scores a batch while the next one is solved
            for part in batches(len(rows), task.max_batch_size):
                queue.solve(noises[part].to(task.device), rows[part], lambda x, s, part=part: record(x, s, part),
                            indices=index[part])
        return images

    @staticmethod
    def replay(task: SearchTask, lineage: list[dict]) -> Tensor:
        """Re-render chosen samples: each generation-0 noise mutated along its ancestry, then all solved (batched).
        A task with another grid renders the same noises with that sampler."""
        rows = lineage_rows(task, lineage)
        chosen = torch.tensor([(entry["mutations"] or [entry["initial"]])[-1] for entry in lineage])
        return task.solve(torch.cat([descendant_noise(task, row, entry) for row, entry in zip(rows, lineage)]), rows,
                          chosen)
