"""PixArt-Σ (Chen et al. 2024) through diffusers' PixArtTransformer2DModel: text-to-image, T5 text encoder.

ε-prediction with learned variance (8 output channels: ε is the first 4) on the linear-β 1000-step VP schedule; the
prompt enters as T5 token embeddings (at most `max_sequence_length` = 300 tokens) with their attention mask, and no
micro-conditions (`added_cond_kwargs={"resolution": None, "aspect_ratio": None}`, as PixArtSigmaPipeline passes).
The paper (Ma et al. 2025, Table 5) samples it with DDIM, 30 steps, CFG 4.5 at 1024 px: Euler on our grid is that
DDIM (see `vp`). Classifier-free guidance uses the embedding of the negative prompt "" as the null row; the
pipeline's batch order is [negative, prompt] and ours [prompt, null], the same guidance.

Text: each distinct prompt is encoded once (`text.PromptEmbeddings`, optionally cached on disk under
`model.text_cache`), with PixArtSigmaPipeline's preprocessing without `clean_caption` (lowercase, strip; the
caption cleaning needs bs4 and ftfy); `free_encoders` then drops the T5 before the search starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
from torch import Tensor

from inference_scaling.denoiser import EmbeddedConditions
from inference_scaling.models.latent import decode_latents, load_part
from inference_scaling.models.text import PromptEmbeddings
from inference_scaling.models.vp import VPModel, VPModelConfig, check_transformer, learned_sigma_split

NO_MICRO_CONDITIONS = {"resolution": None, "aspect_ratio": None}


@dataclass
class PixArtSigmaConfig(VPModelConfig):
    name: str = "pixart_sigma"
    weights: str = "PixArt-alpha/PixArt-Sigma-XL-2-1024-MS"  # hub id or local pipeline folder
    timestep_spacing: str = "linspace"  # the published scheduler config's spacing
    height: int = 1024  # pixels; the latent is height / 8 (the VAE's scale factor)
    width: int = 1024
    max_sequence_length: int = 300  # T5 tokens (PixArt-Σ's 300)
    negative_prompt: str = ""  # the guidance's null row (PixArtSigmaPipeline's default)
    text_cache: Optional[str] = None  # folder caching each prompt's T5 embeddings across jobs; None: memory only


class PixArtSigmaModel(VPModel):
    """`model=pixart_sigma`: PixArt-Σ on prompts; decode through the folder's VAE (latents / scaling_factor)."""

    name = "pixart_sigma"
    condition_kind = "prompts"
    FOLDER_PARTS = ("transformer", "vae", "scheduler", "text_encoder", "tokenizer")

    def __init__(self, cfg):
        from diffusers import AutoencoderKL, PixArtTransformer2DModel
        from transformers import AutoTokenizer, T5EncoderModel

        super().__init__(cfg)
        self.check_loaded_folder()
        self.transformer = load_part(PixArtTransformer2DModel, cfg.weights, "transformer", self.device,
                                     torch_dtype=self.dtype)
        self.vae = load_part(AutoencoderKL, cfg.weights, "vae", self.device, torch_dtype=self.dtype)
        self.text_encoder = load_part(T5EncoderModel, cfg.weights, "text_encoder", self.device,
                                      dtype=self.dtype)
        self.tokenizer = load_part(AutoTokenizer, cfg.weights, "tokenizer", strict=False)
        scale = vae_scale_factor(self.vae.config)
        self.noise_shape = (self.transformer.config.in_channels, cfg.height // scale, cfg.width // scale)
        source = Path(cfg.weights).expanduser()
        model_id = str(source.resolve()) if source.exists() else cfg.weights  # a folder by its absolute path
        self.text = PromptEmbeddings(self.embed_prompts, key=f"pixart_sigma:{model_id}:{cfg.max_sequence_length}",
                                     cache_dir=cfg.text_cache)
        self.null_cond = self.text.encode([cfg.negative_prompt])

    @classmethod
    def check_config(cls, cfg) -> None:
        for key in ("height", "width", "max_sequence_length"):
            if getattr(cfg, key) < 1:
                raise ValueError(f"model.{key}={getattr(cfg, key)} must be >= 1")
        super().check_config(cfg)

    @classmethod
    def check_folder(cls, cfg, read) -> None:
        super().check_folder(cfg, read)
        config = read("transformer", "config.json")
        check_transformer(cfg, config, "PixArtTransformer2DModel", "ada_norm_single", "a text-conditioned PixArt")
        where = f"model.weights={cfg.weights!r}: transformer/config.json"
        sample_size = config.get("sample_size", 128)
        micro = config.get("use_additional_conditions")
        if micro or (micro is None and sample_size == 128):  # diffusers' rule when the key is absent
            raise ValueError(f"{where} uses resolution/aspect-ratio micro-conditions (PixArt-α); PixArt-Σ has none")
        width = read("text_encoder", "config.json").get("d_model")
        if config.get("caption_channels") != width:
            raise ValueError(f"{where} has caption_channels={config.get('caption_channels')} but the text encoder's "
                             f"d_model is {width}")
        step = vae_scale_factor(read("vae", "config.json")) * config.get("patch_size", 2)
        for key in ("height", "width"):
            if getattr(cfg, key) % step:
                raise ValueError(f"model.{key}={getattr(cfg, key)} must be a multiple of {step} (VAE scale × patch)")

    def embed_prompts(self, prompts: list[str]) -> dict[str, Tensor]:
        """T5 embeddings and attention mask of prompts, padded to `max_sequence_length` (PixArtSigmaPipeline's
        encode_prompt without clean_caption)."""
        if self.text_encoder is None:
            raise RuntimeError("the T5 encoder was freed (free_encoders); encode every condition before searching")
        tokens = self.tokenizer([p.lower().strip() for p in prompts], padding="max_length",
                                max_length=self.cfg.max_sequence_length, truncation=True, add_special_tokens=True,
                                return_tensors="pt")
        mask = tokens.attention_mask.to(self.device)
        embeds = self.text_encoder(tokens.input_ids.to(self.device), attention_mask=mask)[0]
        return {"prompt_embeds": embeds, "prompt_attention_mask": mask}

    def encode(self, conditions) -> EmbeddedConditions:
        return self.text.encode(list(conditions.prompts))

    def free_encoders(self) -> None:
        self.text_encoder = None
        self.tokenizer = None
        if torch.device(self.device).type == "cuda":
            torch.cuda.empty_cache()

    def epsilon(self, x_vp: Tensor, t: Tensor, cond: EmbeddedConditions) -> Tensor:
        rows = cond.to(self.device).tensors
        out = self.transformer(x_vp.to(self.dtype), encoder_hidden_states=rows["prompt_embeds"].to(self.dtype),
                               encoder_attention_mask=rows["prompt_attention_mask"], timestep=t.float(),
                               added_cond_kwargs=NO_MICRO_CONDITIONS, return_dict=False)[0]
        return learned_sigma_split(out, self.noise_shape[0]).float()

    def decode(self, x: Tensor) -> Tensor:
        return decode_latents(self.vae, x, self.vae.config.scaling_factor)


def vae_scale_factor(vae_config) -> int:
    """Pixels per latent cell: 2^(levels − 1), as the pipelines compute it (8 for the SD/SDXL VAEs)."""
    levels = vae_config["block_out_channels"] if isinstance(vae_config, dict) else vae_config.block_out_channels
    return 2 ** (len(levels) - 1)
