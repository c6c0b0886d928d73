"""FLUX.1 (Black Forest Labs) through diffusers: FluxTransformer2DModel, its AutoencoderKL, CLIP-L and T5 text encoders.

Conventions, as diffusers 0.42's `pipeline_flux.py` and `transformer_flux.py` use them:
- Latents (B, 16, H/8, W/8) are packed 2×2 into tokens (B, H/16·W/16, 64) for the transformer; image position ids are
  rows [0, row, col] of the token grid, text ids zeros (2-D, without a batch dimension).
- Rectified flow with σ = 1 noise: the scheduler steps x + (σ' − σ)·v, so the transformer's output already is the
  project's velocity v = ε − x0. The timestep input is σ (the transformer multiplies by 1000).
- FLUX.1-dev is guidance-distilled: the guidance value is a network input (`guidance_embeds`), one forward pass per
  evaluation and no unconditional pass. FLUX.1-schnell is timestep-distilled, has no guidance input, and samples
  4 steps without a time shift.
- σ grid: linspace(1, 1/N, N), the scheduler's exponential time shift with μ interpolated in the image token count
  (0.5 at 256 tokens, 1.15 at 4096), and a final 0.
- Text: CLIP's pooled embedding (77 tokens) and T5's sequence embedding (up to 512 tokens), once per distinct prompt.
- Decode: VAE(latents / scaling_factor + shift_factor).

The scheduler settings live in the typed config because the σ grid is needed before any weights load (budgets and
plans are checked on the composed config). A folder whose scheduler config disagrees is refused, with the key to set,
rather than read silently: the config a job records is then the grid it ran.
"""

from __future__ import annotations

import gc
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from inference_scaling.config import ModelConfig
from inference_scaling.denoiser import EmbeddedConditions
from inference_scaling.models.base import ModelAdapter
from inference_scaling.models.latent import check_source, decode_latents, first_line, load_part, load_vae
from inference_scaling.models.text import PromptEmbeddings
from inference_scaling.weights import WeightsError

VAE_SCALE = 8  # both FLUX.1's and SD3's VAEs downsample 8×
PATCH = 2  # FLUX packs 2×2 latents into a token; SD3 patchifies 2×2


@dataclass
class FlowMatchT2IConfig(ModelConfig):
    """What the flow-matching text-to-image backends (FLUX.1, SD3) share."""

    height: int = 1024  # image height in pixels, a multiple of 16 (the VAE's 8× times the 2×2 patches)
    width: int = 1024  # image width in pixels, a multiple of 16
    max_sequence_length: int = 512  # T5 tokens (the pipelines accept up to 512)
    text_cache: str = ""  # folder of prompt embeddings kept across jobs (safetensors); "" = in memory only
    # FlowMatchEulerDiscreteScheduler settings the σ grid is computed from; a folder whose scheduler config
    # disagrees is refused with the key to set.
    shift: float = 3.0  # static time shift σ' = s·σ / (1 + (s − 1)·σ), used when use_dynamic_shifting is false
    use_dynamic_shifting: bool = True  # exponential shift with μ from the image token count
    base_shift: float = 0.5  # μ at base_image_seq_len tokens
    max_shift: float = 1.15  # μ at max_image_seq_len tokens
    base_image_seq_len: int = 256
    max_image_seq_len: int = 4096


@dataclass
class FluxConfig(FlowMatchT2IConfig):
    """FLUX.1-dev with the paper's settings (Ma et al. 2025, Table 5): Euler, 30 steps, guidance 3.5, 1024²."""

    name: str = "flux_dev"
    weights: str = "black-forest-labs/FLUX.1-dev"  # hub id or a folder written by FluxPipeline.save_pretrained
    solver: str = "euler"
    search_steps: int = 30
    final_steps: int = 30
    guidance: float = 3.5  # embedded guidance of FLUX.1-dev (one pass); must be 1 for FLUX.1-schnell


# Scheduler options the σ grid depends on that the config does not expose, with the only values accepted.
FIXED_SCHEDULER = {"num_train_timesteps": 1000, "invert_sigmas": False, "shift_terminal": None,
                   "use_karras_sigmas": False, "use_exponential_sigmas": False, "use_beta_sigmas": False,
                   "time_shift_type": "exponential", "stochastic_sampling": False}
SCHEDULER_FIELDS = ("shift", "use_dynamic_shifting", "base_shift", "max_shift", "base_image_seq_len",
                    "max_image_seq_len")


def scheduler_settings(cfg) -> dict:
    return {key: getattr(cfg, key) for key in SCHEDULER_FIELDS}


def image_tokens(cfg) -> int:
    """Transformer image tokens of one sample: (H/16)·(W/16)."""
    return (cfg.height // (VAE_SCALE * PATCH)) * (cfg.width // (VAE_SCALE * PATCH))


def calculate_shift(tokens: int, cfg) -> float:
    """μ of the exponential time shift, linear in the image token count (the pipelines' `calculate_shift`)."""
    slope = (cfg.max_shift - cfg.base_shift) / (cfg.max_image_seq_len - cfg.base_image_seq_len)
    return cfg.base_shift + slope * (tokens - cfg.base_image_seq_len)


def scheduler_sigmas(cfg, steps: int, sigmas: Optional[np.ndarray] = None) -> Tensor:
    """The grid diffusers' FlowMatchEulerDiscreteScheduler builds from these settings (float64, ending at 0).

    `sigmas` are the unshifted levels a pipeline passes (FLUX: linspace(1, 1/N, N)); None uses the scheduler's own
    spacing (SD3). The scheduler itself computes it, so the grid is the pipeline's to the last bit.
    """
    from diffusers import FlowMatchEulerDiscreteScheduler

    scheduler = FlowMatchEulerDiscreteScheduler(**scheduler_settings(cfg))
    mu = calculate_shift(image_tokens(cfg), cfg) if cfg.use_dynamic_shifting else None
    if sigmas is None:
        scheduler.set_timesteps(steps, mu=mu)
    else:
        scheduler.set_timesteps(sigmas=sigmas, mu=mu)
    return scheduler.sigmas.double()


def check_image_size(cfg) -> None:
    step = VAE_SCALE * PATCH
    for key in ("height", "width"):
        value = getattr(cfg, key)
        if value < step or value % step:
            raise ValueError(f"model.{key}={value} must be a positive multiple of {step} (the VAE's {VAE_SCALE}× "
                             f"downsampling times the transformer's {PATCH}×{PATCH} patches)")
    if not 1 <= cfg.max_sequence_length <= 512:
        raise ValueError(f"model.max_sequence_length={cfg.max_sequence_length} must lie in 1..512")


def check_scheduler(cfg, scheduler: dict) -> None:
    """Refuse a folder's scheduler config that would give another σ grid than the config's (one line). Keys the
    file leaves out take the scheduler's defaults, as they would when the pipeline loads it."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    where = f"model.weights={cfg.weights!r}: scheduler/scheduler_config.json"
    if scheduler.get("_class_name", "FlowMatchEulerDiscreteScheduler") != "FlowMatchEulerDiscreteScheduler":
        raise ValueError(f"{where} names {scheduler['_class_name']}; this adapter samples with "
                         f"FlowMatchEulerDiscreteScheduler's grid")
    effective = FlowMatchEulerDiscreteScheduler.from_config(scheduler).config
    for key in SCHEDULER_FIELDS:
        if effective[key] != getattr(cfg, key):
            raise ValueError(f"{where} has {key}={effective[key]!r} but model.{key}={getattr(cfg, key)!r}; set "
                             f"model.{key}={effective[key]!r} (the σ grid is computed from the config)")
    for key, accepted in FIXED_SCHEDULER.items():
        if effective[key] != accepted:
            raise ValueError(f"{where} has {key}={effective[key]!r}; this adapter supports only {key}={accepted!r}")


def read_json(folder: str, name: str) -> Optional[dict]:
    """A JSON file of a local pipeline folder; None for a hub id (read when loaded)."""
    path = Path(folder).expanduser() / name
    return json.loads(path.read_text()) if path.is_file() else None


def at_load(check, *args) -> None:
    """Run a config check on what a loaded folder says; its refusal is a loading failure (one line)."""
    try:
        check(*args)
    except ValueError as err:
        raise WeightsError(str(err)) from None


def source_key(spec: str) -> str:
    """A model id for cache keys: the absolute path of a local folder, else the hub id."""
    path = Path(spec).expanduser()
    return str(path.resolve()) if path.exists() else spec


def load_transformer(cls, cfg, dtype: torch.dtype):
    """The pipeline's transformer, refused (one line) if the folder holds another architecture."""
    try:
        found = cls.load_config(cfg.weights, subfolder="transformer").get("_class_name", cls.__name__)
    except (OSError, ValueError) as err:
        raise WeightsError(f"model.weights={cfg.weights!r}: cannot read transformer/config.json "
                           f"({first_line(err)})") from None
    if found != cls.__name__:
        raise WeightsError(f"model.weights={cfg.weights!r}: transformer/ holds a {found}; model={cfg.name} needs a "
                           f"{cls.__name__}")
    return in_dtype(load_part(cls, cfg.weights, "transformer", torch_dtype=dtype), dtype).to(cfg.device).eval()


def in_dtype(module, dtype: torch.dtype):
    """The module with every parameter in `dtype`: without accelerate, diffusers' from_pretrained can assign a
    checkpoint's float32 tensors over `torch_dtype` (it then loads by assignment)."""
    return module.to(dtype) if any(p.dtype != dtype for p in module.parameters()) else module


def load_text_encoder(cls, cfg, subfolder: str, dtype: torch.dtype):
    return load_part(cls, cfg.weights, subfolder, dtype=dtype).to(cfg.device).eval()


def load_tokenizer(cfg, subfolder: str):
    from transformers import AutoTokenizer

    return load_part(AutoTokenizer, cfg.weights, subfolder, strict=False)


def load_checked_vae(cfg, dtype: torch.dtype, latent_channels: int):
    """The pipeline's VAE, checked to downsample 8× into the transformer's latent channels."""
    try:
        vae = in_dtype(load_vae(cfg.weights, "vae", dtype, cfg.device), dtype)
    except (OSError, ValueError, RuntimeError) as err:
        raise WeightsError(f"model.weights={cfg.weights!r}: cannot load vae/ "
                           f"({first_line(err)})") from None
    scale = 2 ** (len(vae.config.block_out_channels) - 1)
    if scale != VAE_SCALE or vae.config.latent_channels != latent_channels:
        raise WeightsError(f"model.weights={cfg.weights!r}: vae/ downsamples {scale}× into "
                           f"{vae.config.latent_channels} channels; the transformer needs {VAE_SCALE}× and "
                           f"{latent_channels}")
    return vae


def free_modules(adapter, names: tuple[str, ...]) -> None:
    """Drop the named modules (text encoders) and return their memory."""
    for name in names:
        setattr(adapter, name, None)
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def encoders_needed(adapter, name: str) -> None:
    if getattr(adapter, name) is None:
        raise RuntimeError("the text encoders were freed (free_encoders); encode every prompt before freeing them")


def pack(latents: Tensor) -> Tensor:
    """(B, C, H, W) latents as FLUX tokens (B, H/2·W/2, 4C): each 2×2 patch, channel-major, is one token."""
    b, c, h, w = latents.shape
    patches = latents.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)
    return patches.reshape(b, (h // 2) * (w // 2), c * 4)


def unpack(tokens: Tensor, height: int, width: int) -> Tensor:
    """The inverse of `pack` for latents of `height` × `width`."""
    b, _, dim = tokens.shape
    patches = tokens.view(b, height // 2, width // 2, dim // 4, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return patches.reshape(b, dim // 4, height, width)


def image_ids(height: int, width: int) -> Tensor:
    """Position ids (height·width, 3) of a token grid, rows [0, row, col] in raster order."""
    rows = torch.arange(height).repeat_interleave(width)
    cols = torch.arange(width).repeat(height)
    return torch.stack([torch.zeros_like(rows), rows, cols], dim=1).float()


FLUX_PARTS = ("transformer", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "scheduler")


def check_guidance(cfg, guidance_embeds: bool) -> None:
    """A transformer without a guidance input (FLUX.1-schnell) takes no guidance value."""
    if not guidance_embeds and float(cfg.guidance) != 1.0:
        raise ValueError(f"model.guidance={cfg.guidance} but the transformer of model.weights={cfg.weights!r} has "
                         f"no guidance embedding (FLUX.1-schnell); use model.guidance=1")


def load_scheduler_config(cfg) -> dict:
    from diffusers import FlowMatchEulerDiscreteScheduler

    try:
        return dict(FlowMatchEulerDiscreteScheduler.load_config(cfg.weights, subfolder="scheduler"))
    except (OSError, ValueError) as err:
        raise WeightsError(f"model.weights={cfg.weights!r}: cannot read scheduler/scheduler_config.json "
                           f"({first_line(err)})") from None


class FluxModel(ModelAdapter):
    """`model=flux_dev` and `model=flux_schnell` (the transformer's `guidance_embeds` tells them apart)."""

    name = "flux"
    condition_kind = "prompts"
    guidance_embedded = True  # dev: one pass per evaluation; schnell: no guidance at all

    def __init__(self, cfg):
        super().__init__(cfg)
        from diffusers import FluxTransformer2DModel
        from transformers import CLIPTextModel, T5EncoderModel

        self.transformer = load_transformer(FluxTransformer2DModel, cfg, self.dtype)
        at_load(check_guidance, cfg, self.transformer.config.guidance_embeds)
        at_load(check_scheduler, cfg, load_scheduler_config(cfg))
        self.guidance = float(cfg.guidance)
        channels = self.transformer.config.in_channels // 4
        self.vae = load_checked_vae(cfg, self.dtype, channels)
        self.text_encoder = load_text_encoder(CLIPTextModel, cfg, "text_encoder", self.dtype)
        self.text_encoder_2 = load_text_encoder(T5EncoderModel, cfg, "text_encoder_2", self.dtype)
        self.tokenizer = load_tokenizer(cfg, "tokenizer")
        self.tokenizer_2 = load_tokenizer(cfg, "tokenizer_2")
        self.noise_shape = (channels, cfg.height // VAE_SCALE, cfg.width // VAE_SCALE)
        self.null_cond = None  # guidance is embedded (or absent): there is no unconditional row
        key = (f"flux|{source_key(cfg.weights)}|{cfg.dtype}|clip{self.tokenizer.model_max_length}"
               f"|t5:{cfg.max_sequence_length}")
        self.texts = PromptEmbeddings(self._encode_batch, key, cfg.text_cache or None)
        self._ids: dict[tuple, Tensor] = {}

    @classmethod
    def sigmas(cls, cfg, steps: int) -> Tensor:
        """The FLUX pipeline's grid: linspace(1, 1/N, N), time-shifted by the scheduler, then 0."""
        return scheduler_sigmas(cfg, steps, np.linspace(1.0, 1.0 / steps, steps))

    @classmethod
    def check_config(cls, cfg) -> None:
        check_source("model.weights", cfg.weights, needs=FLUX_PARTS)
        check_image_size(cfg)
        transformer = read_json(cfg.weights, "transformer/config.json")
        if transformer is not None:
            check_guidance(cfg, transformer.get("guidance_embeds", False))
        scheduler = read_json(cfg.weights, "scheduler/scheduler_config.json")
        if scheduler is not None:
            check_scheduler(cfg, scheduler)

    def _encode_batch(self, prompts: list[str]) -> dict[str, Tensor]:
        """CLIP's pooled embedding and T5's sequence embedding, as FluxPipeline.encode_prompt makes them."""
        encoders_needed(self, "text_encoder")
        clip_ids = self.tokenizer(prompts, padding="max_length", max_length=self.tokenizer.model_max_length,
                                  truncation=True, return_tensors="pt").input_ids
        pooled = self.text_encoder(clip_ids.to(self.device), output_hidden_states=False).pooler_output
        t5_ids = self.tokenizer_2(prompts, padding="max_length", max_length=self.cfg.max_sequence_length,
                                  truncation=True, return_tensors="pt").input_ids
        embeds = self.text_encoder_2(t5_ids.to(self.device), output_hidden_states=False)[0]
        return {"prompt_embeds": embeds, "pooled_prompt_embeds": pooled}

    def encode(self, conditions) -> EmbeddedConditions:
        return self.texts.encode(list(conditions.prompts))

    def free_encoders(self) -> None:
        free_modules(self, ("text_encoder", "text_encoder_2"))

    def ids(self, height: int, width: int, text_len: int) -> tuple[Tensor, Tensor]:
        """Image ids of a height × width token grid and zero text ids, on the device in the network's dtype."""
        key = (height, width, text_len)
        if key not in self._ids:
            self._ids[key] = (image_ids(height, width).to(self.device, self.dtype),
                              torch.zeros(text_len, 3, device=self.device, dtype=self.dtype))
        return self._ids[key]

    def __call__(self, x: Tensor, sigma: Tensor, cond: EmbeddedConditions) -> Tensor:
        b, _, h, w = x.shape
        embeds = cond.tensors["prompt_embeds"].to(self.device, self.dtype)
        img_ids, txt_ids = self.ids(h // 2, w // 2, embeds.shape[1])
        guidance = (torch.full((b,), self.guidance, device=self.device, dtype=torch.float32)
                    if self.transformer.config.guidance_embeds else None)
        # The pipeline rounds σ·1000 to the latents' dtype before dividing by 1000; so do we (bfloat16 runs).
        timestep = (sigma.float() * 1000).to(self.dtype) / 1000
        pooled = cond.tensors["pooled_prompt_embeds"].to(self.device, self.dtype)
        v = self.transformer(hidden_states=pack(x.to(self.dtype)), timestep=timestep.to(self.device),
                             guidance=guidance, pooled_projections=pooled, encoder_hidden_states=embeds,
                             txt_ids=txt_ids, img_ids=img_ids, return_dict=False)[0]
        return unpack(v, h, w).float()

    def decode(self, x: Tensor) -> Tensor:
        return decode_latents(self.vae, x, self.vae.config.scaling_factor, self.vae.config.shift_factor or 0.0)
