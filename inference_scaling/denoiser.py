"""The one denoiser contract every model family is adapted to.

Convention (rectified flow, as SiT's linear interpolant and FLUX use it): a noise level σ runs from 1 (pure
noise) to 0 (data), x_σ = (1 − σ)·x0 + σ·ε, and a denoiser returns the velocity v = dx/dσ = ε − x0.
The x0-prediction is x − σ·v. Conditions are rows, one per sample: a tensor (class indices, scene tokens) or
`EmbeddedConditions` (text embeddings); model adapters (`inference_scaling.models`) convert to this contract.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Protocol, Union

import torch
from torch import Tensor


@dataclass
class EmbeddedConditions:
    """Condition rows made of several tensors with one row per condition (a text encoder's sequence embedding,
    its pooled embedding, an attention mask); indexed, moved and concatenated like one tensor."""

    tensors: dict[str, Tensor]

    def __len__(self) -> int:
        return len(next(iter(self.tensors.values())))

    def __getitem__(self, rows) -> "EmbeddedConditions":
        return EmbeddedConditions({k: v[rows] for k, v in self.tensors.items()})

    def to(self, device) -> "EmbeddedConditions":
        return EmbeddedConditions({k: v.to(device) for k, v in self.tensors.items()})

    def expand(self, n: int) -> "EmbeddedConditions":
        return EmbeddedConditions({k: v.expand(n, *v.shape[1:]) for k, v in self.tensors.items()})

    def cat(self, other: "EmbeddedConditions") -> "EmbeddedConditions":
        return EmbeddedConditions({k: torch.cat([v, other.tensors[k]]) for k, v in self.tensors.items()})


Rows = Union[Tensor, EmbeddedConditions]


def expand_rows(one: Rows, n: int) -> Rows:
    """A one-row condition repeated to n rows."""
    return one.expand(n, *one.shape[1:]) if isinstance(one, Tensor) else one.expand(n)


def cat_rows(a: Rows, b: Rows) -> Rows:
    return torch.cat([a, b]) if isinstance(a, Tensor) else a.cat(b)


class Denoiser(Protocol):
    def __call__(self, x: Tensor, sigma: Tensor, cond: Rows) -> Tensor:
        """Velocity at x (B, ...) for noise levels sigma (B,) and condition rows cond (B rows)."""
        ...


def x0_from_velocity(x: Tensor, sigma: Tensor, v: Tensor) -> Tensor:
    """Clean-sample prediction x0 = x − σ·v of the linear interpolant."""
    return x - sigma.view(-1, *([1] * (x.ndim - 1))) * v


class GuidedDenoiser:
    """Classifier-free guidance v = v_u + w·(v_c − v_u) (Ho & Salimans 2022) over any denoiser.

    With w == 1 it is the conditional denoiser and costs one evaluation per sample; otherwise the conditional
    and unconditional halves run as one batch of 2B rows, so an NFE counter placed under this wrapper charges 2
    NFEs per sample, which is what the GPU pays. With `channels` set only the first `channels`
    channels are guided and the rest keep the conditional prediction (SiT's and DiT's original code guide 3 of
    the 4 latent channels "for exact reproducibility"). Guidance is linear in the prediction, so guiding the
    velocity equals guiding ε or the data prediction.
    """

    def __init__(self, denoiser: Denoiser, guidance: float, null_cond: Rows, channels: Optional[int] = None):
        self.denoiser = denoiser
        self.guidance = guidance
        self.null_cond = null_cond  # one row: the condition that means "unconditional"
        self.channels = channels

    @property
    def evals_per_call(self) -> int:
        return 1 if self.guidance == 1.0 else 2

    def __call__(self, x: Tensor, sigma: Tensor, cond: Rows) -> Tensor:
        if self.guidance == 1.0:
            return self.denoiser(x, sigma, cond)
        null = expand_rows(self.null_cond.to(x.device), len(x))
        v = self.denoiser(torch.cat([x, x]), torch.cat([sigma, sigma]), cat_rows(cond, null))
        v_cond, v_uncond = v.chunk(2)
        guided = v_uncond + self.guidance * (v_cond - v_uncond)
        if self.channels is not None:
            guided = torch.cat([guided[:, : self.channels], v_cond[:, self.channels:]], dim=1)
        return guided
