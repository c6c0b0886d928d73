"""CLIPScore verifier (Hessel et al. 2021, "CLIPScore: A Reference-free Evaluation Metric for Image Captioning").

CLIP-S(image, prompt) = w · max(cos(E_image, E_text), 0), with w = 2.5 as in Hessel et al., who chose it to
stretch the range of CLIP cosines (about 0 to 0.4) towards [0, 1]. Ma et al. (2025) report CLIPScore
values of 0.69 to 0.82 for FLUX.1-dev on DrawBench; they are consistent with this definition (w = 2.5 times
cosines near 0.3), not with the ×100 convention of torchmetrics. `scale` exposes w.

Backbone: OpenAI CLIP ViT-L/14 (hub id "openai/clip-vit-large-patch14") by default, the CLIP that the LAION
aesthetic predictor also uses, so an ensemble can share one model. Hessel et al. used ViT-B/32
("openai/clip-vit-base-patch32"); pass that as `clip` to follow them exactly. Hessel et al. also prefix
captions with "A photo depicts"; prompts are scored as given here, the usual practice for text-to-image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from inference_scaling.config import VerifierConfig
from inference_scaling.verifiers._images import resolve_dtype, score_in_batches, to_model_input
from inference_scaling.verifiers.base import VerifierCost

DEFAULT_CLIP = "openai/clip-vit-large-patch14"
HESSEL_W = 2.5


@dataclass
class ClipScoreConfig(VerifierConfig):
    name: str = "clip_score"
    weights: str = ""  # unused: `clip` names the model
    clip: str = DEFAULT_CLIP  # transformers CLIP: hub id or local folder (config, weights, tokenizer files)
    device: Optional[str] = None  # None: the generator's device
    dtype: str = "float32"  # float32 | float16 | bfloat16
    batch_size: int = 32  # images per forward pass
    scale: float = HESSEL_W  # w of CLIP-S = w · max(cos, 0)


class ClipEncoder:
    """A transformers `CLIPModel` with its tokenizer: projected embeddings of [-1, 1] images and of prompts
    (Radford et al. 2021). One encoder may be shared by several verifiers (CLIPScore, aesthetic)."""

    def __init__(self, model, tokenizer, device: str = "cpu", dtype: torch.dtype = torch.float32):
        self.model = model.to(device=device, dtype=dtype).eval()
        self.tokenizer = tokenizer
        self.device = device
        self.dtype = dtype
        self.image_size = int(model.config.vision_config.image_size)
        self.max_length = int(model.config.text_config.max_position_embeddings)  # 77 for OpenAI CLIP
        self.embed_dim = int(model.config.projection_dim)

    @classmethod
    def from_pretrained(cls, clip: str = DEFAULT_CLIP, device: str = "cpu", dtype: str = "float32") -> "ClipEncoder":
        """Load model and tokenizer from a hub id or a local folder with transformers' `from_pretrained`."""
        from transformers import CLIPModel, CLIPTokenizer

        return cls(CLIPModel.from_pretrained(clip), CLIPTokenizer.from_pretrained(clip), device, resolve_dtype(dtype))

    def embed_images(self, images: Tensor) -> Tensor:
        """(B, embed_dim) float32 image embeddings, not normalised, of [-1, 1] images (B, 3, H, W)."""
        pixels = to_model_input(images, self.image_size, self.device, self.dtype)
        pooled = self.model.vision_model(pixel_values=pixels).pooler_output
        return self.model.visual_projection(pooled).float()

    def embed_texts(self, prompts: Sequence[str]) -> Tensor:
        """(B, embed_dim) float32 text embeddings, not normalised; prompts beyond 77 tokens are truncated."""
        tokens = self.tokenizer(list(prompts), padding=True, truncation=True, max_length=self.max_length,
                                return_tensors="pt").to(self.device)
        pooled = self.model.text_model(input_ids=tokens["input_ids"],
                                       attention_mask=tokens["attention_mask"]).pooler_output
        return self.model.text_projection(pooled).float()


def clip_score(image_embeds: Tensor, text_embeds: Tensor, scale: float = HESSEL_W) -> Tensor:
    """CLIP-S = w · max(cos(E_image, E_text), 0) row by row (Hessel et al. 2021, Eq. 1); (B, D), (B, D) → (B,)."""
    assert image_embeds.shape == text_embeds.shape, f"{tuple(image_embeds.shape)} vs {tuple(text_embeds.shape)}"
    return scale * F.cosine_similarity(image_embeds, text_embeds, dim=-1).clamp(min=0)


class ClipScore:
    """CLIPScore of each image with its prompt; higher is better, in [0, scale]."""

    name = "clip_score"
    set_level = False  # each image is scored on its own
    takes_prompts = True  # scores images against the benchmark's prompts (any benchmark)

    def __init__(self, encoder: ClipEncoder, scale: float = HESSEL_W, batch_size: int = 32):
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be >= 1")
        self.encoder = encoder
        self.scale = scale
        self.batch_size = batch_size
        self.cost = VerifierCost()

    @classmethod
    def from_pretrained(cls, clip: str = DEFAULT_CLIP, device: str = "cpu", dtype: str = "float32",
                        batch_size: int = 32, scale: float = HESSEL_W) -> "ClipScore":
        return cls(ClipEncoder.from_pretrained(clip, device, dtype), scale, batch_size)

    @classmethod
    def from_config(cls, cfg: ClipScoreConfig, device: str = "cpu") -> "ClipScore":
        return cls.from_pretrained(cfg.clip, cfg.device or device, cfg.dtype, cfg.batch_size, cfg.scale)

    def _score(self, images: Tensor, prompts: list[str]) -> Tensor:
        # The candidates of one condition share their prompt: embed each distinct prompt once.
        position = {p: i for i, p in enumerate(dict.fromkeys(prompts))}
        text = self.encoder.embed_texts(list(position))
        rows = torch.tensor([position[p] for p in prompts], device=text.device)
        return clip_score(self.encoder.embed_images(images), text[rows], self.scale)

    def __call__(self, images: Tensor, prompts: Sequence[str]) -> Tensor:
        return score_in_batches(self._score, images, prompts, self.batch_size, self.cost)
