"""Adaptive budgets: one NFE pool for a set of conditions, dealt out in rounds to the conditions not yet solved.

Random search gives every condition the same N = budget // c candidates, so an easy condition that is solved by
its first candidate spends as much as a hard one. Here the budget is a pool, budget.nfe × C NFEs for the C
conditions of the task (the runner's chunk of `benchmark.chunk_size` conditions: the pool is per chunk, and
budget.nfe stays the per-condition average), spent in rounds:

    1. Every active condition gets its next candidate (random search's candidate i: `task.noise` with index i,
       the same solver), solved and scored in denoiser and verifier calls of `max_batch_size` flat
       (condition, index) pairs across conditions.
    2. A condition whose best score reaches `success_threshold` is solved and gets no more candidates (for
       `scene_checker` the threshold 0 is its "correct": its graded score is 0 exactly when the image satisfies
       the condition); so is one that holds `max_candidates_per_condition`.
    3. Repeat while the pool buys a candidate and some condition is active. When the pool cannot give every
       active condition one more, the last candidates go to the conditions whose best score is lowest.

The allocation rule is a bandit rule, round-robin over the unsolved conditions, and not successive halving.
Successive halving serves best-arm identification: it keeps the arms that score best and drops the rest, while
here each condition needs its own success and the compute should go where none has been seen. The rule is the
greedy one for "solve as many conditions as possible": with an exchangeable prior on each condition's
per-candidate success rate p (Beta(α, β)), the chance that one more candidate solves a condition that failed m
times is α / (α + β + m), largest for the unsolved condition with the fewest candidates. Without a threshold
scores carry no such signal in general: one more i.i.d. candidate beats the best of m with probability
1 / (m + 1) whatever the score distribution, so the rule is then uniform and selects exactly what random search
selects. It never loses to random search at the same pool (with no cap below N): a condition still unsolved
when the pool runs out holds at least N candidates (had every active condition fewer, the pool of C·N would have
bought the next round), so on every condition the search score is at least min(best-of-N score, threshold);
with the checker, whose threshold 0 is its highest score, adaptive is correct wherever best-of-N is.

Candidate i of a condition is random search's candidate i, so a condition that got m candidates selects what
random search's best-of-m selects, and `chosen` names the noise (no lineage). Compute left when every condition
has stopped is not spent: the NFEs counted never exceed the pool. `candidate_scores` is (C, M), M the most
candidates any condition got, NaN where a condition got fewer; `candidates_per_condition` says how many, and
`n_candidates` is N, the average the budget buys (what random search would give each). Candidate reuse across a
sweep's budgets (`inference_scaling.reuse`) does not apply: a condition's share depends on the budget.
Batches shrink as conditions are solved (the last rounds hold only the hard conditions); a cap bounds the rounds.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor
from tqdm.auto import tqdm

from inference_scaling.nfe import check_budget
from inference_scaling.search.base import (SearchResult, SearchTask, ScoringQueue, batches, comparable, keep_best,
                                           no_best, noised, refuse_set_level)


class AdaptiveSearch:
    """Round-robin over the unsolved conditions of a pool of budget.nfe × C NFEs; see the module docstring."""

    passes_x0 = True  # candidates are full solves from noise: x0-predictions along them reach the verifier
    passes_indices = True  # every solve names its rows' candidate indices: a stochastic solver can run (`solve_on`)

    def __init__(self, success_threshold: Optional[float] = None, max_candidates_per_condition: Optional[int] = None,
                 progress: bool = False):
        if max_candidates_per_condition is not None and max_candidates_per_condition < 1:
            raise ValueError(f"search.max_candidates_per_condition={max_candidates_per_condition} must be >= 1 "
                             f"(or null: no cap beyond the pool)")
        self.success_threshold = success_threshold
        self.max_candidates_per_condition = max_candidates_per_condition
        self.progress = progress

    def plan(self, task: SearchTask, budget: int) -> int:
        """N = budget // cost, the candidates per condition the pool buys on average; refuses a budget below one."""
        return check_budget(budget, task.cost_per_sample)

    def pool(self, task: SearchTask, budget: int) -> int:
        """Candidates the task's pool of budget × C NFEs buys."""
        return budget * len(task.condition_ids) // task.cost_per_sample

    def __call__(self, task: SearchTask, budget: int) -> SearchResult:
        refuse_set_level(task, "adaptive search")  # a condition's best comes from different rounds' calls
        if getattr(task.verifier, "needs_all_conditions", False):
            raise ValueError(f"adaptive search stops conditions one by one; verifier "
                             f"{getattr(task.verifier, 'name', type(task.verifier).__name__)!r} scores the whole "
                             f"selected set at once (needs_all_conditions); use a per-image verifier")
        n = self.plan(task, budget)
        c = len(task.condition_ids)
        left = self.pool(task, budget)
        cap = self.max_candidates_per_condition or left
        drawn = torch.zeros(c, dtype=torch.long)  # candidates each condition got so far
        solved = torch.zeros(c, dtype=torch.bool)
        best, images = no_best(c), None
        seen_rows, seen_index, seen_scores = [], [], []
        with tqdm(total=left, desc="adaptive search", disable=not self.progress, mininterval=2.0, leave=False) as bar:
            while left > 0:
                rows = (~solved & (drawn < cap)).nonzero().squeeze(1)
                if not len(rows):
                    break  # every condition solved or capped: the rest of the pool is not spent
                if len(rows) > left:  # the last candidates go to the lowest best scores (first in row order)
                    rows = rows[best[rows].argsort(stable=True)[:left]].sort().values
                index = drawn[rows]

                def record(x: Tensor, s: Tensor, rows: Tensor, index: Tensor) -> None:
                    nonlocal images
                    x = x.cpu()
                    if images is None:
                        images = torch.zeros(c, *x.shape[1:], dtype=x.dtype)
                    keep_best(best, images, rows, s, x)
                    seen_rows.append(rows)
                    seen_index.append(index)
                    seen_scores.append(s)

                requests = [(rows[part], index[part]) for part in batches(len(rows), task.max_batch_size)]
                with ScoringQueue(task) as queue:  # an API verifier scores a batch while the next one is solved
                    for r, i, noise in noised(task, requests):
                        queue.solve(noise, r, lambda x, s, r=r, i=i: record(x, s, r, i), indices=i)
                drawn[rows] += 1
                left -= len(rows)
                bar.update(len(rows))
                if self.success_threshold is not None:
                    solved = best >= self.success_threshold  # failures rank −inf: never solved
        candidate_scores = torch.full((c, int(drawn.max())), float("nan"))
        candidate_scores[torch.cat(seen_rows), torch.cat(seen_index)] = torch.cat(seen_scores)
        # The first best among each condition's own candidates (the one keep_best kept); NaN where a condition got
        # fewer candidates ranks −inf after them, so it is never chosen.
        chosen = comparable(candidate_scores).argmax(dim=1)
        return SearchResult(images=images, chosen=chosen, scores=candidate_scores.gather(1, chosen[:, None]).squeeze(1),
                            candidate_scores=candidate_scores, n_candidates=n, verifier_calls=int(drawn.sum()),
                            candidates_per_condition=drawn)
