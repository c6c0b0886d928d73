"""What every search algorithm is given and what it returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import torch
from torch import Tensor

from inference_scaling.denoiser import Denoiser
from inference_scaling.noise import candidate_noise
from inference_scaling.verifiers.base import Verifier


@dataclass
class SearchTask:
    """One search problem: a set of conditions to produce one sample each for."""

    denoiser: Denoiser  # guided and NFE-counted; the algorithm never counts by hand
    solver: Callable[..., Tensor]  # a sampler from inference_scaling.sampling
    sigmas: Tensor  # the search sampler's grid
    cost_per_sample: int  # NFEs of one solve on `sigmas`, guidance included
    conds: Tensor  # (C, ...) model conditions
    condition_ids: Tensor  # (C,) ids naming each condition's noises
    noise_shape: tuple[int, ...]
    seed: int
    verifier: Verifier
    max_batch_size: int
    device: str = "cpu"

    def noise(self, rows: Tensor, indices: Tensor) -> Tensor:
        """Noise of candidate `indices` for conditions at positions `rows`."""
        return candidate_noise(self.seed, self.condition_ids[rows], indices, self.noise_shape).to(self.device)

    def solve(self, x: Tensor, rows: Tensor) -> Tensor:
        return self.solver(self.denoiser, x, self.sigmas, self.conds[rows].to(self.device))


@dataclass
class SearchResult:
    """Per condition: the chosen noise's candidate index, its score and the search's spending."""

    images: Tensor  # (C, ...) the chosen candidates as the search sampler rendered them
    chosen: Tensor  # (C,) candidate index of the winner (its noise is candidate_noise(seed, id, index))
    scores: Tensor  # (C,) verifier score of the winner
    candidate_scores: Tensor  # (C, N) every candidate's score
    n_candidates: int
    verifier_calls: int  # images scored


def batches(total: int, size: int) -> Iterator[slice]:
    for start in range(0, total, size):
        yield slice(start, min(start + size, total))


def keep_best(best: Tensor, images: Tensor, rows: Tensor, scores: Tensor, x: Tensor) -> None:
    """Update the running best score and image of each condition in place from one scored batch.

    A candidate replaces the best only if it scores strictly higher; among equal scores in the batch the
    first wins, so the kept image is always the candidate `argmax` over all scores names.
    """
    batch_best = torch.full_like(best, float("-inf")).scatter_reduce(0, rows, scores, "amax")
    improved = batch_best > best
    hit = (scores == batch_best[rows]) & improved[rows]
    position = torch.arange(len(rows))
    first = torch.full(best.shape, len(rows), dtype=torch.long).scatter_reduce(0, rows[hit], position[hit], "amin")
    won = improved.nonzero().squeeze(1)
    best[won] = batch_best[won]
    images[won] = x[first[won]]
