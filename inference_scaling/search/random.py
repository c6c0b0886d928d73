"""Random search: Best-of-N over i.i.d. initial noises (Ma et al. 2025, §3.2)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from tqdm.auto import tqdm

from inference_scaling.nfe import check_budget
from inference_scaling.search.base import (SearchResult, SearchTask, ScoringQueue, batches, comparable, keep_best,
                                           no_best, noised)


@dataclass
class CandidateStream:
    """The first `n` candidates of every condition of a task, scored: what any budget up to n selects from.

    Best-of-m for m <= n is the last *record* below m: a candidate that scored strictly higher than every earlier
    candidate of its condition (the first candidate is always one). Only records keep their image.
    """

    n: int
    scores: Tensor  # (C, n) every candidate's score as the verifier returned it (failures included)
    record_rows: Tensor  # (R,) condition position of each record, records in the order they were set
    record_index: Tensor  # (R,) candidate index
    record_images: Tensor  # (R, ...) the record's search-rendered sample

    @classmethod
    def empty(cls, c: int) -> "CandidateStream":
        return cls(0, torch.empty(c, 0), torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.long),
                   torch.empty(0))

    def tensors(self) -> dict[str, Tensor]:
        return {"scores": self.scores, "record_rows": self.record_rows, "record_index": self.record_index,
                "record_images": self.record_images}


class RandomSearch:
    """For each condition draw N = budget // cost noises, solve each, keep the one the verifier ranks first.

    Candidates are solved candidate-major: one denoiser call holds candidate i of up to `max_batch_size` of the
    task's conditions. The calls therefore do not depend on N, so budget N's candidates are computed exactly as
    in any larger budget's run and a smaller budget is a prefix of a larger one's stream (`extend`, `select`),
    byte for byte. Verifiers that score candidates relative to each other (set-level) or the whole selected set
    see condition-major groups instead (`_flat`), and their streams are not prefixes.
    """

    passes_x0 = True  # candidates are full solves from noise: x0-predictions along them reach the verifier
    passes_indices = True  # every solve names its rows' candidate indices: a stochastic solver can run (`solve_on`)
    stream_type = CandidateStream

    def __init__(self, progress: bool = False):
        self.progress = progress

    def plan(self, task: SearchTask, budget: int) -> int:
        """N = budget // cost of one candidate; refuses a budget below one candidate."""
        return check_budget(budget, task.cost_per_sample)

    @staticmethod
    def streams(task: SearchTask) -> bool:
        """Whether this task's candidate scores are a prefix-stable stream (see the class docstring)."""
        return not (getattr(task.verifier, "set_level", False) or getattr(task.verifier, "needs_all_conditions", False))

    def __call__(self, task: SearchTask, budget: int) -> SearchResult:
        n = self.plan(task, budget)
        if not self.streams(task):
            return self._flat(task, n)
        return self.select(self.extend(task, CandidateStream.empty(len(task.condition_ids)), n), n)

    def extend(self, task: SearchTask, stream: CandidateStream, n: int) -> CandidateStream:
        """The stream with candidates stream.n .. n−1 of every condition solved and scored."""
        c = len(task.condition_ids)
        if n <= stream.n:
            return stream
        scores = torch.cat([stream.scores, torch.empty(c, n - stream.n)], dim=1)
        best = no_best(c)
        images = None
        if stream.n:  # the running best is the last record of each condition
            last = torch.full((c,), -1, dtype=torch.long).scatter_reduce(
                0, stream.record_rows, torch.arange(len(stream.record_rows)), "amax")
            best = comparable(scores[torch.arange(c), stream.record_index[last]])
            images = stream.record_images[last].clone()
        new_rows, new_index, new_images = [], [], []
        blocks = list(batches(c, task.max_batch_size))

        def record(x: Tensor, s: Tensor, rows: Tensor, index: Tensor) -> None:
            nonlocal images
            scores[rows, index] = s
            x = x.cpu()
            if images is None:
                images = torch.zeros(c, *x.shape[1:], dtype=x.dtype)
            won = keep_best(best, images, rows, s, x)  # one candidate per condition in a call: the records
            new_rows.append(rows[won])
            new_index.append(index[won])
            new_images.append(x[won])

        requests = [(torch.arange(c)[block], torch.full((block.stop - block.start,), i, dtype=torch.long))
                    for i in range(stream.n, n) for block in blocks]
        with ScoringQueue(task) as queue:  # an API verifier scores a batch while the next one is solved
            for rows, index, noise in tqdm(noised(task, requests), total=len(requests), desc="random search",
                                           disable=not self.progress, mininterval=2.0, leave=False):
                queue.solve(noise, rows, lambda x, s, rows=rows, index=index: record(x, s, rows, index), indices=index)
        record_images = torch.cat(([stream.record_images] if stream.n else []) + new_images)
        return CandidateStream(n, scores, torch.cat([stream.record_rows, *new_rows]),
                               torch.cat([stream.record_index, *new_index]), record_images)

    @staticmethod
    def select(stream: CandidateStream, n: int) -> SearchResult:
        """Best of the first `n` candidates of each condition (n <= stream.n): as a budget-n run chooses."""
        assert n <= stream.n, f"the stream holds {stream.n} candidates, not {n}"
        c = stream.scores.shape[0]
        candidate_scores = stream.scores[:, :n]
        chosen = comparable(candidate_scores).argmax(dim=1)  # the first best
        below = stream.record_index < n
        last = torch.full((c,), -1, dtype=torch.long).scatter_reduce(
            0, stream.record_rows[below], below.nonzero().squeeze(1), "amax")
        assert torch.equal(stream.record_index[last], chosen), "records disagree with the scores"
        return SearchResult(images=stream.record_images[last], chosen=chosen,
                            scores=candidate_scores.gather(1, chosen[:, None]).squeeze(1),
                            candidate_scores=candidate_scores, n_candidates=n, verifier_calls=c * n)

    def _flat(self, task: SearchTask, n: int) -> SearchResult:
        """All C·N (condition, candidate) pairs in flat condition-major batches of `group_size` pairs, so a
        verifier call holds whole conditions (set-level verifiers) or every candidate (the FID-oracle)."""
        c = len(task.condition_ids)
        rows = torch.arange(c).repeat_interleave(n)  # condition position of each flat pair
        indices = torch.arange(n).repeat(c)  # candidate index of each flat pair
        scores = torch.empty(c * n)
        best = no_best(c)
        images = None

        def record(x: Tensor, s: Tensor, part: slice) -> None:
            nonlocal images
            scores[part] = s
            if images is None:
                images = torch.zeros(c, *x.shape[1:], dtype=x.dtype)
            keep_best(best, images, rows[part], s, x.cpu())

        parts = list(batches(c * n, task.group_size(n)))
        with ScoringQueue(task) as queue:
            for part, (_, _, noise) in tqdm(zip(parts, noised(task, [(rows[p], indices[p]) for p in parts])),
                                            total=len(parts), desc="random search", disable=not self.progress,
                                            mininterval=2.0, leave=False):
                queue.solve(noise, rows[part], lambda x, s, part=part: record(x, s, part), indices=indices[part])
        candidate_scores = scores.view(c, n)
        chosen = comparable(candidate_scores).argmax(dim=1)  # the first best: the image keep_best kept
        return SearchResult(images=images, chosen=chosen, scores=candidate_scores.gather(1, chosen[:, None]).squeeze(1),
                            candidate_scores=candidate_scores, n_candidates=n, verifier_calls=c * n)
