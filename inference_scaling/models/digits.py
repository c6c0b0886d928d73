"""The embedded default: a small class-conditional flow model on the 8×8 digits, SiT-style.

Linear interpolant x_σ = (1 − σ)·x0 + σ·ε, velocity prediction v = ε − x0, a class embedding with one extra
null class (index 10) for classifier-free guidance. An MLP stands in for SiT's transformer: the image is 64
numbers. Trained by `experiments/train_digits_flow.py`; weights in `inference_scaling/assets`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from inference_scaling import weights

NUM_CLASSES = 10
NULL_CLASS = NUM_CLASSES
IMAGE_SHAPE = (1, 8, 8)
DEFAULT_WEIGHTS = "package:digits_flow.safetensors"


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


class DigitsFlow(nn.Module):
    """Velocity network v(x, σ, y) for 1×8×8 images and classes 0..9 (10 = null)."""

    def __init__(self, width: int = 192, hidden: int = 384, depth: int = 4, emb_dim: int = 128):
        super().__init__()
        self.emb_dim = emb_dim
        self.inp = nn.Linear(64, width)
        self.time = nn.Sequential(nn.Linear(emb_dim, width), nn.SiLU(), nn.Linear(width, width))
        self.label = nn.Embedding(NUM_CLASSES + 1, width)
        self.blocks = nn.ModuleList(ResBlock(width, hidden) for _ in range(depth))
        self.out = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, 64))

    def forward(self, x: Tensor, sigma: Tensor, y: Tensor) -> Tensor:
        c = nn.functional.silu(self.time(timestep_embedding(sigma, self.emb_dim)) + self.label(y))
        h = self.inp(x.flatten(1))
        for block in self.blocks:
            h = block(h, c)
        return self.out(h).view_as(x)


class DigitsDenoiser:
    """Adapter of DigitsFlow onto the denoiser contract (it already predicts the contract's velocity)."""

    def __init__(self, net: DigitsFlow):
        self.net = net

    def __call__(self, x: Tensor, sigma: Tensor, cond: Tensor) -> Tensor:
        return self.net(x, sigma, cond)


def load_flow(path: str = DEFAULT_WEIGHTS, device: str = "cpu") -> DigitsFlow:
    return weights.load_into(DigitsFlow, path).to(device)
