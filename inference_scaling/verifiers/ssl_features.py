"""Self-supervised verifier (Ma et al. 2025, §4.1): how well the model's early guess agrees with its final sample.

score = cos(φ(x̂0(σ)), φ(x0)): the cosine similarity between features φ of the model's x0-prediction at an
intermediate noise level σ (the paper: σ = 0.4) and of the final clean sample x0 from the same noise. It needs no
condition. φ is a self-supervised or contrastive image encoder: DINOv2's class token (timm), CLIP's image embedding,
or, for the embedded digits benchmark, the digits classifier's penultimate features.

This module scores given pairs; the search (or whoever runs the sampler) records x̂0(σ) = x_σ − σ·v along each
candidate's trajectory at `sigma` and passes it as `x0`.
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
from inference_scaling.verifiers.clip_score import DEFAULT_CLIP, ClipEncoder
from inference_scaling.verifiers.dino_linear import DEFAULT_DINO, DinoBackbone
from inference_scaling.verifiers.fid_oracle import DigitsFeatures

FEATURES = ("dino", "clip", "digits")


@dataclass
class SslFeaturesConfig(VerifierConfig):
    name: str = "ssl_features"
    weights: str = ""  # features=dino: a local backbone checkpoint ("": timm's hub weights); digits: the classifier
    features: str = "dino"  # dino | clip | digits
    sigma: float = 0.4  # the level of the x0-prediction compared with the final sample
    backbone: str = DEFAULT_DINO  # timm DINOv2 model (features=dino)
    clip: str = DEFAULT_CLIP  # transformers CLIP (features=clip)
    image_size: int = 224  # DINOv2 input size, a multiple of 14
    device: Optional[str] = None  # None: the generator's device
    dtype: str = "float32"
    batch_size: int = 32  # candidates per forward pass (each pass embeds 2 × batch_size images)


def ssl_score(final_features: Tensor, x0_features: Tensor) -> Tensor:
    """Cosine similarity per row of features (B, D) of final samples and of x0-predictions; (B,) in [−1, 1]."""
    assert final_features.shape == x0_features.shape, f"{tuple(final_features.shape)} vs {tuple(x0_features.shape)}"
    return F.cosine_similarity(final_features.float(), x0_features.float(), dim=-1)


class DinoClsFeatures:
    """DINOv2's final-norm class token, the image descriptor of DINO's k-NN and linear evaluations."""

    def __init__(self, backbone: DinoBackbone):
        self.backbone = backbone

    def __call__(self, images: Tensor) -> Tensor:
        return self.backbone.features(images, self.backbone.embed_dim)


class ClipImageFeatures:
    """CLIP's projected image embedding."""

    def __init__(self, encoder: ClipEncoder):
        self.encoder = encoder

    def __call__(self, images: Tensor) -> Tensor:
        return self.encoder.embed_images(images)


def build_features(cfg: SslFeaturesConfig, device: str) -> Callable[[Tensor], Tensor]:
    if cfg.features == "dino":
        backbone = DinoBackbone.from_pretrained(cfg.backbone, cfg.weights, cfg.image_size, device, cfg.dtype)
        return DinoClsFeatures(backbone)
    if cfg.features == "clip":
        return ClipImageFeatures(ClipEncoder.from_pretrained(cfg.clip, device, cfg.dtype))
    if cfg.features == "digits":
        return DigitsFeatures(cfg.weights, device)
    raise ValueError(f"features={cfg.features!r}; choose one of: {', '.join(FEATURES)}")


class SslFeatures:
    """cos(φ(x̂0 at σ), φ(final sample)); higher is better. Call with the final images and `x0`, the x0-predictions
    at `sigma` of the same candidates, in the same order."""

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

    @classmethod
    def from_config(cls, cfg: SslFeaturesConfig, device: str = "cpu") -> "SslFeatures":
        return cls(build_features(cfg, cfg.device or device), cfg.sigma, cfg.batch_size)

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
