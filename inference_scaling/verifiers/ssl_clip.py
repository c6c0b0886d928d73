"""`ssl_clip`: the self-supervised verifier with CLIP image embeddings (Ma et al. 2025, §4.1).

φ is CLIP's projected image embedding (transformers CLIP from a hub id or a local folder); images are resized
and normalised as for `clip_score` (see clip_score.py). Prompts are not read.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from inference_scaling.verifiers.clip_score import DEFAULT_CLIP, ClipEncoder
from inference_scaling.verifiers.ssl_features import SslConfig, SslFeatures


@dataclass
class SslClipConfig(SslConfig):
    name: str = "ssl_clip"
    weights: str = ""  # unused: the CLIP folder or hub id holds the weights
    clip: str = DEFAULT_CLIP  # transformers CLIP: hub id or local folder
    dtype: str = "float32"  # float32 | float16 | bfloat16


class ClipImageFeatures:
    """CLIP's projected image embedding of [-1, 1] images."""

    def __init__(self, encoder: ClipEncoder):
        self.encoder = encoder

    def __call__(self, images: Tensor) -> Tensor:
        return self.encoder.embed_images(images)


class SslClip(SslFeatures):
    name = "ssl_clip"

    @classmethod
    def from_config(cls, cfg: SslClipConfig, device: str = "cpu") -> "SslClip":
        return cls(ClipImageFeatures(ClipEncoder.from_pretrained(cfg.clip, cfg.device or device, cfg.dtype)),
                   cfg.sigma, cfg.batch_size)
