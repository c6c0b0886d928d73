"""`ssl_dino`: the self-supervised verifier with DINOv2 features (Ma et al. 2025, §4.1; Oquab et al. 2023).

φ is DINOv2's final-norm class token, the descriptor of DINO's k-NN and linear evaluations, from a timm model
(hub weights, or a local checkpoint); images are resized as for `dino_linear` (see dino_linear.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from inference_scaling.verifiers.dino_linear import DEFAULT_DINO, DinoBackbone
from inference_scaling.verifiers.ssl_features import SslConfig, SslFeatures


@dataclass
class SslDinoConfig(SslConfig):
    name: str = "ssl_dino"
    weights: str = ""  # a local backbone checkpoint; "": timm's hub weights for `backbone`
    backbone: str = DEFAULT_DINO  # timm DINOv2 model
    image_size: int = 224  # DINOv2 input size, a multiple of 14
    dtype: str = "float32"  # float32 | float16 | bfloat16


class DinoClsFeatures:
    """DINOv2's final-norm class token of [-1, 1] images."""

    def __init__(self, backbone: DinoBackbone):
        self.backbone = backbone

    def __call__(self, images: Tensor) -> Tensor:
        return self.backbone.features(images, self.backbone.embed_dim)


class SslDino(SslFeatures):
    name = "ssl_dino"

    @classmethod
    def from_config(cls, cfg: SslDinoConfig, device: str = "cpu") -> "SslDino":
        backbone = DinoBackbone.from_pretrained(cfg.backbone, cfg.weights, cfg.image_size, cfg.device or device,
                                                cfg.dtype)
        return cls(DinoClsFeatures(backbone), cfg.sigma, cfg.batch_size)
