"""The scenes benchmark's learned verifier: a classifier trained on clean scenes (the role CLIP/DINO
classifiers play in the paper's supervised verifiers). Its score is p(count)·p(relation) of the condition.
Searching against it shows whether a verifier that is right on real data can be fooled.

`aspect: count` or `aspect: relation` scores one head alone (p(count), or p(relation)): a verifier that judges one
aspect of the condition, as the paper's verifiers each favour some aspects of a prompt over others."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import Tensor

from inference_scaling.config import VerifierConfig
from inference_scaling.models.scenes import CLASSIFIER_WEIGHTS, load_classifier
from inference_scaling.verifiers.base import VerifierCost

ASPECTS = ("both", "count", "relation")


@dataclass
class SceneClassifierConfig(VerifierConfig):
    name: str = "scene_classifier"
    weights: str = CLASSIFIER_WEIGHTS
    aspect: str = "both"  # both: p(count)·p(relation); count: p(count) alone; relation: p(relation) alone


class SceneClassifierVerifier:
    name = "scene_classifier"
    benchmarks = ("scenes",)
    differentiable = True  # `differentiable_score`: the same score with the graph kept (gradient search)

    def __init__(self, weights: str = CLASSIFIER_WEIGHTS, device: str = "cpu", aspect: str = "both"):
        if aspect not in ASPECTS:
            raise ValueError(f"aspect={aspect!r}; choose one of: {', '.join(ASPECTS)}")
        self.net = load_classifier(weights, device)
        self.device = device
        self.aspect = aspect
        self.cost = VerifierCost()

    @classmethod
    def check(cls, cfg: SceneClassifierConfig) -> None:
        if cfg.aspect not in ASPECTS:
            raise ValueError(f"verifier.aspect={cfg.aspect!r}; choose one of: {', '.join(ASPECTS)}")

    @classmethod
    def from_config(cls, cfg: SceneClassifierConfig, device: str) -> "SceneClassifierVerifier":
        return cls(cfg.weights, device, getattr(cfg, "aspect", "both"))

    def __call__(self, images: Tensor, cond: Tensor) -> Tensor:
        return self._score(images, cond, keep_graph=False)

    def differentiable_score(self, images: Tensor, cond: Tensor) -> Tensor:
        """`__call__`'s scores with the graph kept, differentiable in `images`."""
        return self._score(images, cond, keep_graph=True)

    def _score(self, images: Tensor, cond: Tensor, keep_graph: bool) -> Tensor:
        start = time.perf_counter()
        with torch.set_grad_enabled(keep_graph):
            log_p = self.net.condition_log_prob(images.to(self.device), cond.to(self.device), self.aspect)
            score = log_p.exp().float()
        self.cost.calls += 1
        self.cost.images += len(images)
        self.cost.seconds += time.perf_counter() - start
        return score
