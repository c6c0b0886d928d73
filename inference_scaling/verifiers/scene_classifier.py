"""The scenes benchmark's learned verifier: a classifier trained on clean scenes (the role CLIP/DINO
classifiers play in the paper's supervised verifiers). Its score is p(count)·p(relation) of the condition.
Searching against it shows whether a verifier that is right on real data can be fooled."""

from __future__ import annotations

import time

import torch
from torch import Tensor

from inference_scaling.models.scenes import CLASSIFIER_WEIGHTS, load_classifier
from inference_scaling.verifiers.base import VerifierCost


class SceneClassifierVerifier:
    name = "scene_classifier"
    benchmarks = ("scenes",)

    def __init__(self, weights: str = CLASSIFIER_WEIGHTS, device: str = "cpu"):
        self.net = load_classifier(weights, device)
        self.device = device
        self.cost = VerifierCost()

    @classmethod
    def from_config(cls, cfg, device: str) -> "SceneClassifierVerifier":
        return cls(cfg.weights, device)

    def __call__(self, images: Tensor, cond: Tensor) -> Tensor:
        start = time.perf_counter()
        with torch.no_grad():
            score = self.net.condition_log_prob(images.to(self.device), cond.to(self.device)).exp().float()
        self.cost.calls += 1
        self.cost.images += len(images)
        self.cost.seconds += time.perf_counter() - start
        return score
