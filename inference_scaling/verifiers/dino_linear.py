"""Supervised verifier: a DINOv2 backbone with a linear ImageNet head (Oquab et al. 2023; Ma et al. 2025, §4.1).

Backbone: a timm DINOv2 ViT (default `vit_small_patch14_dinov2.lvd142m`), built with `img_size` = `image_size`
(224 by default; a multiple of the patch size 14), whose position embeddings timm resamples from the 518-px
checkpoint on load. Weights from the hub (timm `pretrained=True`) or a local checkpoint file.

Preprocessing (DINOv2's linear evaluation): RGB in [0, 1] (grey repeated), shorter side resized to `image_size`
with antialiased bicubic, centre crop, ImageNet mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225). DINOv2's
evaluation resizes to 256 and crops 224 from photographs; generated images are scored whole (timm's pretrained
config also uses crop_pct = 1), which suits object-centred class-conditional samples.

Head: an affine map of the final-norm features, read from a file holding `weight` (K, F) and `bias` (K,) (the
layout of DINOv2's published `*_linear_head.pth`, or .safetensors). Its input width F picks the features:
  F = D    the class token;
  F = 2D   [class token, mean of patch tokens]: DINOv2's "linear" head (`*_linear_head.pth`);
  F = 5D   [class tokens of the last 4 blocks, mean patch token of the last]: DINOv2's `*_linear4_head.pth`.
With `weights` "" the published head (1 or 4 layers, `head_layers`) of the chosen backbone is downloaded from
dl.fbaipublicfiles.com. The score is the head's logit of the conditioning class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor, nn

from inference_scaling.config import VerifierConfig
from inference_scaling.verifiers._images import resolve_dtype, to_model_input
from inference_scaling.verifiers.aesthetic import load_state_file, load_strict
from inference_scaling.verifiers.base import VerifierCost
from inference_scaling.verifiers.inception_is import CLASS_BENCHMARKS, score_classes
from inference_scaling.weights import WeightsError

DEFAULT_DINO = "vit_small_patch14_dinov2.lvd142m"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DINOV2_URL = "https://dl.fbaipublicfiles.com/dinov2"
# timm architecture → DINOv2's own model name, which names the published heads
DINOV2_NAMES = {"vit_small_patch14_dinov2": "dinov2_vits14", "vit_base_patch14_dinov2": "dinov2_vitb14",
                "vit_large_patch14_dinov2": "dinov2_vitl14", "vit_giant_patch14_dinov2": "dinov2_vitg14"}


@dataclass
class DinoLinearConfig(VerifierConfig):
    name: str = "dino_linear"
    weights: str = ""  # linear head: local .pth (weights_only) / .safetensors; "": DINOv2's published head
    backbone: str = DEFAULT_DINO  # timm model name
    backbone_weights: str = ""  # a local checkpoint of the backbone; "": timm's pretrained weights from the hub
    head_layers: int = 1  # with weights "": DINOv2's 1-layer ("linear") or 4-layer ("linear4") head
    image_size: int = 224  # a multiple of 14
    device: Optional[str] = None  # None: the generator's device
    dtype: str = "float32"  # float32 | float16 | bfloat16 (the backbone's; the head runs in float32)
    batch_size: int = 64


class DinoBackbone:
    """A timm DINOv2 ViT with its preprocessing: pooled features of [-1, 1] images (B, C, H, W)."""

    def __init__(self, model: nn.Module, device: str = "cpu", dtype: torch.dtype = torch.float32):
        self.model = model.to(device=device, dtype=dtype).eval()
        self.device = device
        self.dtype = dtype
        self.image_size = int(model.patch_embed.img_size[0])
        self.embed_dim = int(model.embed_dim)
        self.prefix_tokens = int(model.num_prefix_tokens)  # class token and registers

    @classmethod
    def from_pretrained(cls, name: str = DEFAULT_DINO, weights: str = "", image_size: int = 224, device: str = "cpu",
                        dtype: str = "float32") -> "DinoBackbone":
        """timm's pretrained weights (hub), or a local checkpoint file loaded through the same filter (which
        resamples position embeddings to `image_size`)."""
        import timm

        if image_size % 14:
            raise ValueError(f"image_size={image_size} must be a multiple of DINOv2's patch size 14")
        overlay = {"file": weights} if weights else None
        model = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=overlay, img_size=image_size,
                                  num_classes=0)
        return cls(model, device, resolve_dtype(dtype))

    def pixels(self, images: Tensor) -> Tensor:
        return to_model_input(images, self.image_size, self.device, self.dtype, IMAGENET_MEAN, IMAGENET_STD)

    def features(self, images: Tensor, width: int) -> Tensor:
        """(B, width) float32 features for a head of input `width` ∈ {D, 2D, 5D} (see the module docstring)."""
        x = self.pixels(images)
        d = self.embed_dim
        if width in (d, 2 * d):
            tokens = self.model.forward_features(x)  # final-norm tokens (B, prefix + patches, D)
            cls, patches = tokens[:, 0], tokens[:, self.prefix_tokens:]
            out = cls if width == d else torch.cat([cls, patches.mean(1)], dim=-1)
        elif width == 5 * d:
            blocks = self.model.forward_intermediates(x, indices=4, norm=True, return_prefix_tokens=True,
                                                      output_fmt="NLC", intermediates_only=True)
            out = torch.cat([prefix[:, 0] for _, prefix in blocks] + [blocks[-1][0].mean(1)], dim=-1)
        else:
            raise ValueError(f"a head on this backbone takes {d}, {2 * d} or {5 * d} features, not {width}")
        return out.float()


def published_head_url(backbone: str, layers: int = 1) -> str:
    """URL of DINOv2's ImageNet linear head for a timm DINOv2 backbone (Oquab et al. 2023, the repo's hub)."""
    arch = backbone.split(".")[0]
    registers = "_reg4" if "_reg4_" in arch else ""
    base = DINOV2_NAMES.get(arch.replace("_reg4", ""))
    if base is None or layers not in (1, 4):
        raise WeightsError(f"no published DINOv2 head for backbone {backbone!r} with {layers} layers; known "
                           f"backbones: {', '.join(DINOV2_NAMES)} (optionally _reg4), layers 1 or 4")
    return f"{DINOV2_URL}/{base}/{base}{registers}_linear{'4' if layers == 4 else ''}_head.pth"


def load_linear_head(spec: str) -> nn.Linear:
    """nn.Linear from a state dict with `weight` (K, F) and `bias` (K,): a local .pth/.safetensors or an https URL."""
    if spec.startswith("https://"):
        state = torch.hub.load_state_dict_from_url(spec, map_location="cpu", weights_only=True)
    else:
        state = load_state_file(spec)
    if "weight" not in state or state["weight"].ndim != 2:
        raise WeightsError(f"weights {spec!r} are not a linear head: need 'weight' (K, F) and 'bias' (K,), "
                           f"found keys {sorted(state)[:5]}")
    classes, width = state["weight"].shape
    return load_strict(nn.Linear(width, classes), state, spec, f"a linear head ({width} → {classes})")


class DinoLinear:
    """The DINOv2 linear classifier's logit of the conditioning class; higher is better."""

    name = "dino_linear"
    benchmarks = CLASS_BENCHMARKS
    set_level = False

    def __init__(self, backbone: DinoBackbone, head: nn.Linear, batch_size: int = 64):
        if head.in_features not in {k * backbone.embed_dim for k in (1, 2, 5)}:
            raise ValueError(f"head takes {head.in_features} features; this backbone gives "
                             f"{backbone.embed_dim}, {2 * backbone.embed_dim} or {5 * backbone.embed_dim}")
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be >= 1")
        self.backbone = backbone
        self.head = head.float().to(backbone.device).eval()
        self.batch_size = batch_size
        self.cost = VerifierCost()

    @classmethod
    def from_config(cls, cfg: DinoLinearConfig, device: str = "cpu") -> "DinoLinear":
        backbone = DinoBackbone.from_pretrained(cfg.backbone, cfg.backbone_weights, cfg.image_size,
                                                cfg.device or device, cfg.dtype)
        head = load_linear_head(cfg.weights or published_head_url(cfg.backbone, cfg.head_layers))
        return cls(backbone, head, cfg.batch_size)

    def logits(self, images: Tensor) -> Tensor:
        """(B, K) head logits of [-1, 1] images."""
        return self.head(self.backbone.features(images, self.head.in_features))

    def _score(self, images: Tensor, cond: Tensor) -> Tensor:
        logits = self.logits(images)
        return logits.gather(1, cond.to(logits.device).view(-1, 1)).squeeze(1)

    def __call__(self, images: Tensor, cond: Tensor) -> Tensor:
        return score_classes(self._score, images, cond, self.batch_size, self.cost, self.head.out_features)
