"""The model adapter: one class per model family owns everything model-specific, so samplers, search and
verifiers never learn which model runs.

An adapter turns a benchmark's conditions into the model's condition rows (`encode`), evaluates the network as a
velocity in the project's convention (`__call__`: σ from 1 = noise to 0 = data, v = ε − x0; SiT's time, ε- or
flow-prediction, packed latents are converted inside), declares what one guided evaluation costs
(`evals_per_call`) and the model's own σ grid (`sigmas`) from the config alone, so budgets are checked before any
weights load, and maps search states to images in [-1, 1] (`decode`: a VAE for latent models, identity for the
embedded pixel models). The network runs in `model.dtype`; ODE states, noise and verifier inputs stay float32.
"""

from __future__ import annotations

from typing import ClassVar, Optional

import torch
from torch import Tensor

from inference_scaling.denoiser import Denoiser, GuidedDenoiser, Rows
from inference_scaling.sampling import linear_sigmas

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
CONDITION_KINDS = ("digits", "scenes", "imagenet", "prompts")


class ModelAdapter:
    """Base class of the model adapters; subclasses set the class attributes and implement `__init__`, `encode`,
    `__call__` and, for latent models, `decode`."""

    name: ClassVar[str]
    condition_kind: ClassVar[str]  # one of CONDITION_KINDS: the benchmarks whose conditions it can take
    guidance_embedded: ClassVar[bool] = False  # guidance is a network input (FLUX.1-dev): one pass per evaluation
    guidance_channels: Optional[int] = None  # guide only the first channels (SiT's convention), else all

    noise_shape: tuple[int, ...]  # one sample's search state (latent) shape
    null_cond: Rows  # the one row that means "unconditional", for classifier-free guidance

    def __init__(self, cfg):
        self.cfg = cfg
        self.device = cfg.device
        self.dtype = DTYPES[cfg.dtype]

    @classmethod
    def evals_per_call(cls, cfg) -> int:
        """NFEs of one guided evaluation of one sample under `cfg.guidance`."""
        return cls.guidance_cost(cfg.guidance)

    @classmethod
    def guidance_cost(cls, guidance: float) -> int:
        """2 under true classifier-free guidance (a conditional and an unconditional pass), else 1."""
        return 1 if cls.guidance_embedded or float(guidance) == 1.0 else 2

    @classmethod
    def sigmas(cls, cfg, steps: int) -> Tensor:
        """The model's σ grid of `steps` steps, decreasing to 0 (float64); default: equal steps from 1."""
        return linear_sigmas(steps)

    @classmethod
    def check_config(cls, cfg) -> None:
        """Model-specific range checks on the composed config (raise ValueError with one line)."""

    def encode(self, conditions) -> Rows:
        """Condition rows, one per condition of a benchmark's `Conditions`."""
        raise NotImplementedError

    def __call__(self, x: Tensor, sigma: Tensor, cond: Rows) -> Tensor:
        """Velocity (float32) of the network at states x (B, *noise_shape), levels sigma (B,)."""
        raise NotImplementedError

    def guided(self, network: Denoiser, guidance: float) -> Denoiser:
        """The denoiser the samplers call: `network` (the NFE-counted `self`) under the model's guidance."""
        if self.guidance_cost(guidance) == 1:
            return network
        return GuidedDenoiser(network, guidance, self.null_cond, channels=self.guidance_channels)

    def decode(self, x: Tensor) -> Tensor:
        """Images (B, C, H, W) in [-1, 1], float32, from search states; identity for pixel-space models."""
        return x

    @property
    def decodes(self) -> bool:
        """Whether `decode` does work (a VAE) worth recording beside the NFEs."""
        return type(self).decode is not ModelAdapter.decode

    def free_encoders(self) -> None:
        """Release condition encoders once every condition is encoded (text encoders of text-to-image models)."""
