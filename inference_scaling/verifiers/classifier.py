"""Supervised / oracle verifiers from a class-conditional classifier (Ma et al. 2025, §4.1).

`classifier_prob` is the IS-oracle analog: the classifier's probability of the conditioning class, as the
paper uses InceptionV3 on ImageNet. `classifier_logit` scores with the raw logit of that class instead.
For the embedded model the classifier is the committed digits classifier.
"""

from __future__ import annotations

import time

import torch
from torch import Tensor

from inference_scaling.models.digits_classifier import DEFAULT_WEIGHTS, load_classifier
from inference_scaling.verifiers.base import VerifierCost


class ClassifierProb:
    """p(y = condition | image) under the classifier."""

    name = "classifier_prob"
    benchmarks = ("digits",)  # conditions are digit classes

    def __init__(self, weights: str = DEFAULT_WEIGHTS, device: str = "cpu"):
        self.net = load_classifier(weights, device)
        self.device = device
        self.cost = VerifierCost()

    @classmethod
    def from_config(cls, cfg, device: str) -> "ClassifierProb":
        return cls(cfg.weights, device)

    def logits(self, images: Tensor) -> Tensor:
        start = time.perf_counter()
        with torch.no_grad():
            logits = self.net(images.to(self.device)).float()
        self.cost.calls += 1
        self.cost.images += len(images)
        self.cost.seconds += time.perf_counter() - start
        return logits

    def __call__(self, images: Tensor, cond: Tensor) -> Tensor:
        probs = self.logits(images).softmax(-1)
        return probs.gather(1, cond.to(probs.device).view(-1, 1)).squeeze(1)


class ClassifierLogit(ClassifierProb):
    """The classifier's logit of the conditioning class."""

    name = "classifier_logit"

    def __call__(self, images: Tensor, cond: Tensor) -> Tensor:
        logits = self.logits(images)
        return logits.gather(1, cond.to(logits.device).view(-1, 1)).squeeze(1)
