"""Self-supervised verifiers (Ma et al. 2025, §4.1): how well the model's early guess agrees with its final sample.

score = cos(φ(x̂0(σ)), φ(x0)): the cosine similarity between features φ of the model's x0-prediction at an
intermediate noise level σ (the paper: σ = 0.4) and of the final clean sample x0 from the same noise. It needs no
condition. This module holds what the three encoders share; `ssl_dino` (DINOv2's class token), `ssl_clip` (CLIP's
image embedding) and `ssl_digits` (the embedded digits classifier's penultimate features) each have a file.

A verifier here scores given pairs; the search records x̂0(σ) = x_σ − σ·v along each candidate's trajectory (at
the search grid's level nearest σ, from the denoiser evaluation that step makes anyway: no extra NFE) and passes
it as `x0` (`SearchTask.solve_and_score`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from inference_scaling.config import VerifierConfig
from inference_scaling.verifiers.base import VerifierCost


@dataclass
class SslConfig(VerifierConfig):
    """Fields every self-supervised verifier has."""

    sigma: float = 0.4  # the level of the x0-prediction compared with the final sample
    device: Optional[str] = None  # None: the generator's device
    batch_size: int = 32  # candidates per forward pass (each pass embeds 2 × batch_size images)


def ssl_score(final_features: Tensor, x0_features: Tensor) -> Tensor:
    """Cosine similarity per row of features (B, D) of final samples and of x0-predictions; (B,) in [−1, 1]."""
    assert final_features.shape == x0_features.shape, f"{tuple(final_features.shape)} vs {tuple(x0_features.shape)}"
    return F.cosine_similarity(final_features.float(), x0_features.float(), dim=-1)


class SslFeatures:
    """cos(φ(x̂0 at σ), φ(final sample)) for an image encoder φ; higher is better. Call with the final images and
    `x0`, the x0-predictions at `sigma` of the same candidates, in the same order."""

    name = "ssl_features"
    set_level = False
    needs_x0 = True  # the search must pass x0= (the x0-predictions at `sigma`)

    def __init__(self, features: Callable[[Tensor], Tensor], sigma: float = 0.4, batch_size: int = 32):
        if not 0.0 < sigma < 1.0:
            raise ValueError(f"sigma={sigma} must lie in (0, 1)")
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be >= 1")
        self.features = features
        self.sigma = sigma
        self.batch_size = batch_size
        self.cost = VerifierCost()

    def __call__(self, images: Tensor, cond=None, x0: Optional[Tensor] = None) -> Tensor:
        """Scores (B,) float32 on the CPU in input order; `cond` is ignored."""
        if x0 is None:
            raise ValueError(f"{self.name} needs x0=, the candidates' x0-predictions at sigma={self.sigma}")
        if x0.shape != images.shape:
            raise ValueError(f"x0 {tuple(x0.shape)} must have the images' shape {tuple(images.shape)}")
        start = time.perf_counter()
        out = []
        with torch.no_grad():
            for lo in range(0, len(images), self.batch_size):
                part = slice(lo, lo + self.batch_size)
                # One forward pass embeds both sides of the pairs.
                feats = self.features(torch.cat([images[part], x0[part].to(images.device)]))
                final, early = feats.chunk(2)
                out.append(ssl_score(final, early).cpu())
                self.cost.calls += 1
        self.cost.images += len(images)
        self.cost.seconds += time.perf_counter() - start
        return torch.cat(out) if out else torch.empty(0)
