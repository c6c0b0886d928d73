"""The one denoiser contract every model family is adapted to.

Convention (rectified flow, as SiT's linear interpolant and FLUX use it): a noise level σ runs from 1 (pure
noise) to 0 (data), x_σ = (1 − σ)·x0 + σ·ε, and a denoiser returns the velocity v = dx/dσ = ε − x0.
The x0-prediction is x − σ·v. Conditions are a tensor with one row per sample (class indices for the
embedded model); adapters for other families (ε-prediction, diffusers pipelines) convert to this contract.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor


class Denoiser(Protocol):
    def __call__(self, x: Tensor, sigma: Tensor, cond: Tensor) -> Tensor:
        """Velocity at x (B, ...) for noise levels sigma (B,) and conditions cond (B, ...)."""
        ...


def x0_from_velocity(x: Tensor, sigma: Tensor, v: Tensor) -> Tensor:
    """Clean-sample prediction x0 = x − σ·v of the linear interpolant."""
    return x - sigma.view(-1, *([1] * (x.ndim - 1))) * v


class GuidedDenoiser:
    """Classifier-free guidance v = v_u + w·(v_c − v_u) (Ho & Salimans 2022) over any denoiser.

    With w == 1 it is the conditional denoiser and costs one evaluation per sample; otherwise the
    conditional and unconditional halves run as one batch of 2B rows, so an NFE counter placed under this
    wrapper charges 2 NFEs per sample, which is what the GPU pays.
    """

    def __init__(self, denoiser: Denoiser, guidance: float, null_cond: Tensor):
        self.denoiser = denoiser
        self.guidance = guidance
        self.null_cond = null_cond  # one row: the condition that means "unconditional"

    @property
    def evals_per_call(self) -> int:
        return 1 if self.guidance == 1.0 else 2

    def __call__(self, x: Tensor, sigma: Tensor, cond: Tensor) -> Tensor:
        if self.guidance == 1.0:
            return self.denoiser(x, sigma, cond)
        null = self.null_cond.to(cond.device).expand_as(cond)
        v = self.denoiser(torch.cat([x, x]), torch.cat([sigma, sigma]), torch.cat([cond, null]))
        v_cond, v_uncond = v.chunk(2)
        return v_uncond + self.guidance * (v_cond - v_uncond)
