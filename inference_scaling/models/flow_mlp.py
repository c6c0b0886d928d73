"""The embedded model family: a small conditional flow model in the style of SiT, on tiny images.

Linear interpolant x_σ = (1 − σ)·x0 + σ·ε, velocity prediction v = ε − x0. The condition is a row of
integer fields (the digit class; or a scene's count and relation tokens), each embedded and summed, the way
a text encoder's tokens condition a larger model; each field has one extra "null" token for classifier-free
guidance. An MLP with adaLN-style modulation stands in for SiT's transformer.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn

from inference_scaling import weights
from inference_scaling.models.base import ModelAdapter


def timestep_embedding(sigma: Tensor, dim: int) -> Tensor:
    """Sinusoidal embedding of the noise level (as in DiT/SiT), σ scaled to [0, 1000]."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, device=sigma.device, dtype=torch.float32) / half)
    args = 1000.0 * sigma.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class ResBlock(nn.Module):
    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.modulation = nn.Linear(width, 2 * width)  # adaLN-style scale and shift from the conditioning
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.SiLU(), nn.Linear(hidden, width))

    def forward(self, h: Tensor, c: Tensor) -> Tensor:
        scale, shift = self.modulation(c).chunk(2, dim=-1)
        return h + self.mlp(self.norm(h) * (1 + scale) + shift)


class FlowMLP(nn.Module):
    """Velocity network v(x, σ, cond) for images of `image_shape`; cond is (B,) or (B, len(fields)) integers,
    field k taking values 0..fields[k]−1, with fields[k] its null token."""

    def __init__(self, image_shape: Sequence[int] = (1, 8, 8), fields: Sequence[int] = (10,), width: int = 192,
                 hidden: int = 384, depth: int = 4, emb_dim: int = 128, input_skip: bool = False):
        super().__init__()
        self.image_shape, self.fields, self.emb_dim = tuple(image_shape), tuple(fields), emb_dim
        # v = s(σ)·x + F(x, σ, cond): the skip carries the noise part of v = ε − x0 past the hidden width,
        # which matters once there are more pixels than hidden units (EDM-style c_skip, learned).
        self.skip = nn.Linear(width, 1) if input_skip else None
        pixels = math.prod(self.image_shape)
        self.inp = nn.Linear(pixels, width)
        self.time = nn.Sequential(nn.Linear(emb_dim, width), nn.SiLU(), nn.Linear(width, width))
        self.tokens = nn.ModuleList(nn.Embedding(size + 1, width) for size in self.fields)
        self.blocks = nn.ModuleList(ResBlock(width, hidden) for _ in range(depth))
        self.out = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, pixels))

    @property
    def null_cond(self) -> Tensor:
        """The one-row condition that means "unconditional": every field's null token."""
        null = torch.tensor([self.fields])
        return null.squeeze(1) if len(self.fields) == 1 else null

    def config(self) -> dict:
        return {"image_shape": list(self.image_shape), "fields": list(self.fields), "width": self.inp.out_features,
                "hidden": self.blocks[0].mlp[0].out_features, "depth": len(self.blocks), "emb_dim": self.emb_dim,
                "input_skip": self.skip is not None}

    def forward(self, x: Tensor, sigma: Tensor, cond: Tensor) -> Tensor:
        cond = cond.view(len(cond), -1)
        t = self.time(timestep_embedding(sigma, self.emb_dim))
        c = t
        for k, embedding in enumerate(self.tokens):
            c = c + embedding(cond[:, k])
        c = nn.functional.silu(c)
        h = self.inp(x.flatten(1))
        for block in self.blocks:
            h = block(h, c)
        v = self.out(h).view_as(x)
        if self.skip is not None:
            v = v + self.skip(t).view(-1, *([1] * (x.ndim - 1))) * x
        return v


class FlowDenoiser:
    """FlowMLP on the denoiser contract (it already predicts the contract's velocity)."""

    def __init__(self, net: FlowMLP):
        self.net = net

    def __call__(self, x: Tensor, sigma: Tensor, cond: Tensor) -> Tensor:
        return self.net(x, sigma, cond)


class EmbeddedFlowModel(ModelAdapter):
    """The embedded pixel-space FlowMLP family: conditions are integer token rows, decode is the identity."""

    def __init__(self, cfg):
        super().__init__(cfg)
        self.net = load_flow(cfg.weights, cfg.device)
        self.noise_shape = self.net.image_shape
        self.null_cond = self.net.null_cond

    @classmethod
    def check_config(cls, cfg) -> None:
        weights.check_readable(cfg.weights)

    def encode(self, conditions) -> Tensor:
        return conditions.labels

    def __call__(self, x: Tensor, sigma: Tensor, cond: Tensor) -> Tensor:
        if self.dtype == torch.float32:
            return self.net(x, sigma, cond)
        with torch.autocast(torch.device(self.device).type, dtype=self.dtype):  # weights stay float32
            return self.net(x, sigma, cond).float()


def load_flow(path: str, device: str = "cpu") -> FlowMLP:
    return weights.load_into(FlowMLP, path).to(device)
