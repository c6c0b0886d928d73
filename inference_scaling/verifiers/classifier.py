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
    differentiable = True  # `differentiable_score`: the same score with the graph kept (gradient search)

    def __init__(self, weights: str = DEFAULT_WEIGHTS, device: str = "cpu"):
        self.net = load_classifier(weights, device)
        self.device = device
        self.cost = VerifierCost()

    @classmethod
    def from_config(cls, cfg, device: str) -> "ClassifierProb":
        return cls(cfg.weights, device)

    def logits(self, images: Tensor, keep_graph: bool = False) -> Tensor:
        """The classifier's logits; without a graph unless `keep_graph` (then differentiable in `images`)."""
        start = time.perf_counter()
        with torch.set_grad_enabled(keep_graph):
            logits = self.net(images.to(self.device)).float()
        self.cost.calls += 1
        self.cost.images += len(images)
        self.cost.seconds += time.perf_counter() - start
        return logits

    def score(self, logits: Tensor, cond: Tensor) -> Tensor:
        probs = logits.softmax(-1)
        return probs.gather(1, cond.to(probs.device).view(-1, 1)).squeeze(1)

    def __call__(self, images: Tensor, cond: Tensor) -> Tensor:
        return self.score(self.logits(images), cond)

    def differentiable_score(self, images: Tensor, cond: Tensor) -> Tensor:
        """`__call__`'s scores with the graph kept, differentiable in `images`."""
        return self.score(self.logits(images, keep_graph=True), cond)


class ClassifierLogit(ClassifierProb):
    """The classifier's logit of the conditioning class."""

    name = "classifier_logit"

    def score(self, logits: Tensor, cond: Tensor) -> Tensor:
        return logits.gather(1, cond.to(logits.device).view(-1, 1)).squeeze(1)
