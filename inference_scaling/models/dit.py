"""DiT (Peebles & Xie 2023, "Scalable Diffusion Models with Transformers") through diffusers' DiTTransformer2DModel.

Class-conditional ImageNet, ε-prediction with learned variance (8 output channels: ε is the first 4) on the linear-β
1000-step VP schedule, integer timesteps 0…999, null class 1000 (the label embedder's classifier-free-guidance row).
The weights are a diffusers pipeline folder (facebook/DiT-XL-2-256: transformer/, vae/, scheduler/); the network
becomes a velocity in the project's convention through `vp.VPConversion`, so Euler on our grid is DDIM (η = 0).
Fractional timesteps between the integers (levels off the grid) are our continuous extension; see `vp`.
Guidance: diffusers' DiTPipeline guides all 4 latent channels, DiT's own code the first 3 (`guidance_channels`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from inference_scaling.models.latent import decode_latents, load_part
from inference_scaling.models.vp import VPModel, VPModelConfig, check_transformer, learned_sigma_split

IMAGENET_CLASSES = 1000


@dataclass
class DiTConfig(VPModelConfig):
    name: str = "dit_xl2"
    weights: str = "facebook/DiT-XL-2-256"  # hub id or local pipeline folder (transformer/, vae/, scheduler/)
    guidance_channels: Optional[int] = None  # guide only the first channels: 3 = DiT's code, None = all (DiTPipeline)


class DiTModel(VPModel):
    """`model=dit_xl2`: DiT on class labels; decode through the folder's VAE (latents / scaling_factor)."""

    name = "dit_xl2"
    condition_kind = "imagenet"

    def __init__(self, cfg):
        from diffusers import AutoencoderKL, DiTTransformer2DModel

        super().__init__(cfg)
        self.check_loaded_folder()
        self.transformer = load_part(DiTTransformer2DModel, cfg.weights, "transformer", self.device,
                                     torch_dtype=self.dtype)
        self.vae = load_part(AutoencoderKL, cfg.weights, "vae", self.device, torch_dtype=self.dtype)
        config = self.transformer.config
        self.noise_shape = (config.in_channels, config.sample_size, config.sample_size)
        self.null_cond = torch.tensor([config.num_embeds_ada_norm])  # the label embedder's extra (CFG) row
        self.guidance_channels = cfg.guidance_channels

    @classmethod
    def check_config(cls, cfg) -> None:
        if cfg.guidance_channels is not None and cfg.guidance_channels < 1:
            raise ValueError(f"model.guidance_channels={cfg.guidance_channels} must be >= 1, or null to guide all")
        super().check_config(cfg)

    @classmethod
    def check_folder(cls, cfg, read) -> None:
        super().check_folder(cfg, read)
        config = read("transformer", "config.json")
        check_transformer(cfg, config, "DiTTransformer2DModel", "ada_norm_zero", "a class-conditional DiT")
        classes = config.get("num_embeds_ada_norm", IMAGENET_CLASSES)
        if classes != IMAGENET_CLASSES:
            raise ValueError(f"model.weights={cfg.weights!r}: transformer/config.json has num_embeds_ada_norm="
                             f"{classes}; an ImageNet DiT has {IMAGENET_CLASSES} classes")
        channels = config.get("in_channels", 4)
        if cfg.guidance_channels is not None and cfg.guidance_channels > channels:
            raise ValueError(f"model.guidance_channels={cfg.guidance_channels} exceeds the {channels} latent channels")

    def encode(self, conditions) -> Tensor:
        return conditions.labels.long()

    def epsilon(self, x_vp: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        out = self.transformer(x_vp.to(self.dtype), timestep=t.float(), class_labels=cond.to(self.device),
                               return_dict=False)[0]
        return learned_sigma_split(out, self.noise_shape[0]).float()

    def decode(self, x: Tensor) -> Tensor:
        return decode_latents(self.vae, x, self.vae.config.scaling_factor)
