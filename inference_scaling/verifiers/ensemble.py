"""Verifier Ensemble (Ma et al. 2025, §5.1): the average of each member verifier's rank among the candidates.

Scores of different verifiers live on different scales (aesthetic 1–10, CLIPScore 0–2.5, ImageReward about
N(0, 1)), so the ensemble compares ranks instead: for the N candidates of one condition, each member's scores
become ranks 0 (worst) … N−1 (best), ties sharing their average rank, and the ensemble score is the (weighted)
mean rank over members. Higher is better; the paper weighs the members equally.

Set-level: a rank depends on the other candidates, so one call must hold *every* candidate of each condition it
scores (`set_level = True` tells the search algorithm so); candidates of a condition split over two calls get
ranks among each part only, which the ensemble cannot detect. Within a call, candidates are grouped by identical
prompt, the prompt being the condition; pass `groups` (B,) to group otherwise (e.g. two conditions that share a
prompt). A group of one candidate scores 0.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional, Sequence

import torch
from torch import Tensor

from inference_scaling.config import VerifierConfig
from inference_scaling.verifiers._images import check_inputs
from inference_scaling.verifiers.aesthetic import DEFAULT_HEAD, Aesthetic, AestheticConfig, load_head
from inference_scaling.verifiers.base import Verifier, VerifierCost
from inference_scaling.verifiers.clip_score import ClipEncoder, ClipScore, ClipScoreConfig
from inference_scaling.verifiers.image_reward import ImageReward, ImageRewardConfig

MEMBERS = ("aesthetic", "clip_score", "image_reward")  # the paper's ensemble


@dataclass
class EnsembleConfig(VerifierConfig):
    name: str = "ensemble"
    weights: str = ""  # unused: each member names its own weights below
    # member name → weight of its rank; the paper's ensemble: the three below, equally weighted
    members: dict[str, float] = field(
        default_factory=lambda: {"aesthetic": 1.0, "clip_score": 1.0, "image_reward": 1.0})
    aesthetic: AestheticConfig = field(default_factory=AestheticConfig)
    clip_score: ClipScoreConfig = field(default_factory=ClipScoreConfig)
    image_reward: ImageRewardConfig = field(default_factory=ImageRewardConfig)


def average_ranks(scores: Tensor) -> Tensor:
    """Ranks along dim 0, 0 = lowest, ties given the mean of the ranks they span; (N, ...) → (N, ...) float."""
    s = scores.float()
    below = (s.unsqueeze(1) < s.unsqueeze(0)).sum(0)  # below[j] = #{i : s_i < s_j}
    equal = (s.unsqueeze(1) == s.unsqueeze(0)).sum(0)  # includes j itself
    return below + (equal - 1) / 2


def rank_average(member_scores: Tensor, weights: Optional[Tensor] = None) -> Tensor:
    """Weighted mean over members of each candidate's rank among the N candidates of one condition.

    member_scores: (N, M), column m the scores of member m (higher is better); weights: (M,) non-negative,
    not all zero (default: equal). Returns (N,) in [0, N−1]; higher is better.
    """
    assert member_scores.ndim == 2, f"member_scores must be (N, M), got {tuple(member_scores.shape)}"
    m = member_scores.shape[1]
    w = torch.ones(m) if weights is None else weights.float().cpu()
    assert w.shape == (m,), f"weights must be ({m},), got {tuple(w.shape)}"
    assert (w >= 0).all() and w.sum() > 0, f"weights must be non-negative and not all zero, got {w.tolist()}"
    return average_ranks(member_scores.cpu()) @ w / w.sum()


def prompt_groups(prompts: Sequence[str]) -> Tensor:
    """(B,) group ids: equal prompts, equal ids."""
    ids = {p: i for i, p in enumerate(dict.fromkeys(prompts))}
    return torch.tensor([ids[p] for p in prompts])


class Ensemble:
    """Mean rank of each candidate under several verifiers, among the candidates of its condition."""

    name = "ensemble"
    set_level = True  # a call must hold all candidates of each of its conditions
    takes_prompts = True  # scores images against the benchmark's prompts (any benchmark)

    def __init__(self, members: Sequence[Verifier], weights: Optional[Sequence[float]] = None):
        if not members:
            raise ValueError("an ensemble needs at least one member verifier")
        self.members = list(members)
        self.weights = torch.ones(len(members)) if weights is None else torch.tensor(weights, dtype=torch.float32)
        if self.weights.shape != (len(members),) or (self.weights < 0).any() or self.weights.sum() <= 0:
            raise ValueError(f"weights {list(self.weights.tolist())} must be one non-negative number per member "
                             f"({len(members)}), not all zero")
        self.cost = VerifierCost()  # calls: the members' forward passes together

    @classmethod
    def from_config(cls, cfg: EnsembleConfig, device: str = "cpu") -> "Ensemble":
        return build_ensemble(cfg, device)

    def __call__(self, images: Tensor, prompts: Sequence[str], groups: Optional[Tensor] = None) -> Tensor:
        check_inputs(images, prompts)
        groups = prompt_groups(prompts) if groups is None else groups.cpu()
        assert groups.shape == (len(images),), f"groups must be ({len(images)},), got {tuple(groups.shape)}"
        start = time.perf_counter()
        calls_before = sum(member.cost.calls for member in self.members)
        member_scores = torch.stack([member(images, prompts).float().cpu() for member in self.members], dim=1)
        scores = torch.empty(len(images))
        for g in groups.unique():
            rows = (groups == g).nonzero().squeeze(1)
            scores[rows] = rank_average(member_scores[rows], self.weights)
        self.cost.calls += sum(member.cost.calls for member in self.members) - calls_before
        self.cost.images += len(images)
        self.cost.seconds += time.perf_counter() - start
        return scores


EncoderCache = dict[tuple[str, str, str], ClipEncoder]


def _clip(cache: EncoderCache, clip: str, device: str, dtype: str) -> ClipEncoder:
    """One CLIP per (model, device, dtype), shared by CLIPScore and the aesthetic predictor."""
    if (clip, device, dtype) not in cache:
        cache[clip, device, dtype] = ClipEncoder.from_pretrained(clip, device, dtype)
    return cache[clip, device, dtype]


def _member(name: str, cfg: EnsembleConfig, device: str, cache: EncoderCache) -> Verifier:
    sub = getattr(cfg, name)
    dev = sub.device or device
    if name == "clip_score":
        return ClipScore(_clip(cache, sub.clip, dev, sub.dtype), sub.scale, sub.batch_size)
    if name == "aesthetic":
        head = load_head(sub.weights or DEFAULT_HEAD, sub.input_size)
        return Aesthetic(_clip(cache, sub.clip, dev, sub.dtype), head, sub.batch_size)
    return ImageReward.from_config(sub, device)


def build_ensemble(cfg: EnsembleConfig, device: str = "cpu") -> Ensemble:
    """The ensemble of `cfg.members`, each loaded from its config; a member whose device is None runs on `device`."""
    unknown = sorted(set(cfg.members) - set(MEMBERS))
    if unknown:
        raise ValueError(f"unknown ensemble members {unknown}; choose from: {', '.join(MEMBERS)}")
    cache: EncoderCache = {}
    return Ensemble([_member(name, cfg, device, cache) for name in cfg.members], list(cfg.members.values()))
