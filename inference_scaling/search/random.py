"""Random search: Best-of-N over i.i.d. initial noises (Ma et al. 2025, §3.2)."""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from inference_scaling.nfe import check_budget
from inference_scaling.search.base import SearchResult, SearchTask, batches, comparable, keep_best, no_best


class RandomSearch:
    """For each condition draw N = budget // cost noises, solve each, keep the one the verifier ranks first.

    All C·N (condition, candidate) pairs are solved in flat batches of at most `max_batch_size` rows, so the
    denoiser sees full batches whatever C and N are; only the running best image per condition is kept.
    """

    passes_x0 = True  # candidates are full solves from noise: x0-predictions along them reach the verifier

    def __init__(self, progress: bool = False):
        self.progress = progress

    def plan(self, task: SearchTask, budget: int) -> int:
        """N = budget // cost of one candidate; refuses a budget below one candidate."""
        return check_budget(budget, task.cost_per_sample)

    def __call__(self, task: SearchTask, budget: int) -> SearchResult:
        n = self.plan(task, budget)
        c = len(task.condition_ids)
        rows = torch.arange(c).repeat_interleave(n)  # condition position of each flat pair
        indices = torch.arange(n).repeat(c)  # candidate index of each flat pair
        scores = torch.empty(c * n)
        best = no_best(c)
        images = None
        for part in tqdm(list(batches(c * n, task.group_size(n))), desc="random search", disable=not self.progress,
                         mininterval=2.0, leave=False):
            noise = task.noise(rows[part], indices[part])
            x, s = task.solve_and_score(noise, rows[part])
            scores[part] = s
            if images is None:
                images = torch.zeros(c, *x.shape[1:], dtype=x.dtype)
            keep_best(best, images, rows[part], s, x.cpu())
        candidate_scores = scores.view(c, n)
        chosen = comparable(candidate_scores).argmax(dim=1)  # the first best: the image keep_best kept
        return SearchResult(images=images, chosen=chosen, scores=candidate_scores.gather(1, chosen[:, None]).squeeze(1),
                            candidate_scores=candidate_scores, n_candidates=n, verifier_calls=c * n)
