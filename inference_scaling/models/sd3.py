"""Stable Diffusion 3.5 (Esser et al. 2024, "Scaling Rectified Flow Transformers") through diffusers:
SD3Transformer2DModel, its AutoencoderKL, and three text encoders (CLIP-L, CLIP-G, T5-XXL).

Conventions, as diffusers 0.42's `pipeline_stable_diffusion_3.py` uses them:
- Latents (B, 16, H/8, W/8) go to the transformer unpacked (it patchifies 2×2 itself); timestep = σ·1000.
- Rectified flow with σ = 1 noise; the scheduler steps x + (σ' − σ)·v, so the output is the project's velocity.
- True classifier-free guidance: conditional and unconditional rows in one batch (2 NFEs per evaluation when
  guidance != 1); the unconditional row is the negative prompt, "" by default.
- Text (`encode_prompt`): each CLIP's penultimate hidden states (or `clip_skip` layers further back) concatenated
  along features, zero-padded to T5's width, then followed by T5's tokens along the sequence; the pooled condition
  is both CLIPs' projected pooled embeddings concatenated. As in the pipeline, the negative prompt ignores clip_skip.
- σ grid: the scheduler's own spacing, linspace(1, σ_min, N) with σ_min the shifted 1/1000, time-shifted with the
  folder's static shift (3.0 for SD3.5), then 0.
- Decode: VAE(latents / scaling_factor + shift_factor).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from inference_scaling.denoiser import EmbeddedConditions
from inference_scaling.models.base import ModelAdapter
from inference_scaling.models.flux import (VAE_SCALE, FlowMatchT2IConfig, at_load, check_image_size, check_scheduler,
                                           encoders_needed, free_modules, load_checked_vae, load_scheduler_config,
                                           load_text_encoder, load_tokenizer, load_transformer, read_json,
                                           scheduler_sigmas, source_key)
from inference_scaling.models.latent import check_source, decode_latents
from inference_scaling.models.text import PromptEmbeddings


@dataclass
class SD3Config(FlowMatchT2IConfig):
    """SD3.5 Medium with its model card's settings: 40 steps, guidance 4.5, 1024²."""

    name: str = "sd35_medium"
    weights: str = "stabilityai/stable-diffusion-3.5-medium"  # hub id or a StableDiffusion3Pipeline folder
    solver: str = "euler"
    search_steps: int = 40
    final_steps: int = 40
    guidance: float = 4.5  # true classifier-free guidance: 2 NFEs per evaluation unless 1
    max_sequence_length: int = 256  # T5 tokens (the pipeline's default)
    clip_skip: Optional[int] = None  # CLIP layers skipped below the penultimate one (None: the penultimate)
    negative_prompt: str = ""  # the unconditional row of classifier-free guidance
    shift: float = 3.0
    use_dynamic_shifting: bool = False


SD3_PARTS = ("transformer", "vae", "text_encoder", "text_encoder_2", "text_encoder_3", "tokenizer", "tokenizer_2",
             "tokenizer_3", "scheduler")
TEXT_ENCODERS = ("text_encoder", "text_encoder_2", "text_encoder_3")


class SD3Model(ModelAdapter):
    """`model=sd35_medium` (and SD3 / SD3.5 Large folders): true classifier-free guidance, three text encoders."""

    name = "sd3"
    condition_kind = "prompts"

    def __init__(self, cfg):
        super().__init__(cfg)
        from diffusers import SD3Transformer2DModel
        from transformers import CLIPTextModelWithProjection, T5EncoderModel

        self.transformer = load_transformer(SD3Transformer2DModel, cfg, self.dtype)
        at_load(check_scheduler, cfg, load_scheduler_config(cfg))
        at_load(check_patch, cfg, self.transformer.config.patch_size)
        channels = self.transformer.config.in_channels
        self.vae = load_checked_vae(cfg, self.dtype, channels)
        self.text_encoder = load_text_encoder(CLIPTextModelWithProjection, cfg, "text_encoder", self.dtype)
        self.text_encoder_2 = load_text_encoder(CLIPTextModelWithProjection, cfg, "text_encoder_2", self.dtype)
        self.text_encoder_3 = load_text_encoder(T5EncoderModel, cfg, "text_encoder_3", self.dtype)
        self.tokenizers = [load_tokenizer(cfg, name) for name in ("tokenizer", "tokenizer_2", "tokenizer_3")]
        self.noise_shape = (channels, cfg.height // VAE_SCALE, cfg.width // VAE_SCALE)
        self.null_cond = None  # set by `encode` when guidance needs it
        self.texts = self._embeddings(cfg.clip_skip)
        self.null_texts = self.texts if cfg.clip_skip is None else self._embeddings(None)

    def _embeddings(self, clip_skip: Optional[int]) -> PromptEmbeddings:
        key = (f"sd3|{source_key(self.cfg.weights)}|{self.cfg.dtype}|clip{self.tokenizers[0].model_max_length}"
               f"|skip:{clip_skip}|t5:{self.cfg.max_sequence_length}")
        return PromptEmbeddings(lambda prompts: self._encode_batch(prompts, clip_skip), key,
                                self.cfg.text_cache or None)

    @classmethod
    def sigmas(cls, cfg, steps: int) -> Tensor:
        """The SD3 pipeline's grid: the scheduler's own spacing and static shift (or μ from the token count)."""
        return scheduler_sigmas(cfg, steps)

    @classmethod
    def check_config(cls, cfg) -> None:
        check_source("model.weights", cfg.weights, needs=SD3_PARTS)
        check_image_size(cfg)
        if cfg.clip_skip is not None and cfg.clip_skip < 0:
            raise ValueError(f"model.clip_skip={cfg.clip_skip} must be >= 0 or null")
        scheduler = read_json(cfg.weights, "scheduler/scheduler_config.json")
        if scheduler is not None:
            check_scheduler(cfg, scheduler)

    def _clip(self, index: int, prompts: list[str], clip_skip: Optional[int]) -> tuple[Tensor, Tensor]:
        """One CLIP's hidden states (clip_skip + 2 from the top) and projected pooled embedding. Both CLIPs pad to
        the first tokenizer's length, as the pipeline does."""
        encoder = (self.text_encoder, self.text_encoder_2)[index]
        ids = self.tokenizers[index](prompts, padding="max_length", max_length=self.tokenizers[0].model_max_length,
                                     truncation=True, return_tensors="pt").input_ids
        out = encoder(ids.to(self.device), output_hidden_states=True)
        hidden = out.hidden_states[-2 if clip_skip is None else -(clip_skip + 2)]
        return hidden, out[0]

    def _encode_batch(self, prompts: list[str], clip_skip: Optional[int]) -> dict[str, Tensor]:
        """StableDiffusion3Pipeline.encode_prompt: [CLIP-L ‖ CLIP-G padded to T5's width ; T5] and both pooled."""
        encoders_needed(self, "text_encoder")
        hidden_l, pooled_l = self._clip(0, prompts, clip_skip)
        hidden_g, pooled_g = self._clip(1, prompts, clip_skip)
        ids = self.tokenizers[2](prompts, padding="max_length", max_length=self.cfg.max_sequence_length,
                                 truncation=True, add_special_tokens=True, return_tensors="pt").input_ids
        t5 = self.text_encoder_3(ids.to(self.device))[0]
        clip = torch.cat([hidden_l, hidden_g], dim=-1)
        clip = F.pad(clip, (0, t5.shape[-1] - clip.shape[-1]))
        return {"prompt_embeds": torch.cat([clip, t5], dim=-2),
                "pooled_prompt_embeds": torch.cat([pooled_l, pooled_g], dim=-1)}

    def encode(self, conditions) -> EmbeddedConditions:
        rows = self.texts.encode(list(conditions.prompts))
        if self.evals_per_call(self.cfg) == 2:
            self.null_cond = self.null_texts.encode([self.cfg.negative_prompt])
        return rows

    def free_encoders(self) -> None:
        free_modules(self, TEXT_ENCODERS)

    def __call__(self, x: Tensor, sigma: Tensor, cond: EmbeddedConditions) -> Tensor:
        v = self.transformer(hidden_states=x.to(self.dtype), timestep=(sigma.float() * 1000).to(self.device),
                             encoder_hidden_states=cond.tensors["prompt_embeds"].to(self.device, self.dtype),
                             pooled_projections=cond.tensors["pooled_prompt_embeds"].to(self.device, self.dtype),
                             return_dict=False)[0]
        return v.float()

    def decode(self, x: Tensor) -> Tensor:
        return decode_latents(self.vae, x, self.vae.config.scaling_factor, self.vae.config.shift_factor or 0.0)


def check_patch(cfg, patch_size: int) -> None:
    """μ of a dynamic shift counts 2×2 patches; another patch size would count other tokens than the config's."""
    if cfg.use_dynamic_shifting and patch_size != 2:
        raise ValueError(f"model.weights={cfg.weights!r}: the transformer's patch_size={patch_size} with "
                         f"use_dynamic_shifting; only patch_size=2 is supported")
