"""The scenes benchmark's exact checker as an oracle verifier (the analog of the paper's IS/FID oracles)."""

from __future__ import annotations

import time

from torch import Tensor

from inference_scaling import scenes
from inference_scaling.verifiers.base import VerifierCost


class SceneChecker:
    """Graded checker score −|objects − n| − [relation wrong]; 0 means the image satisfies its condition."""

    name = "scene_checker"
    benchmarks = ("scenes",)

    def __init__(self, device: str = "cpu"):
        self.cost = VerifierCost()

    @classmethod
    def from_config(cls, cfg, device: str) -> "SceneChecker":
        return cls(device)

    def __call__(self, images: Tensor, cond: Tensor) -> Tensor:
        start = time.perf_counter()
        score = scenes.check(images, cond).score
        self.cost.calls += 1
        self.cost.images += len(images)
        self.cost.seconds += time.perf_counter() - start
        return score
