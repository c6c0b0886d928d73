"""Noise as a function of (seed, condition id, candidate index) alone.

Each candidate gets its own CPU generator seeded by a 64-bit mix of the three integers, so its noise does
not depend on batch size, batch order, device or on which other candidates are drawn.
"""

from __future__ import annotations

import torch
from torch import Tensor

_MASK = (1 << 64) - 1


def _splitmix64(z: int) -> int:
    z = (z + 0x9E3779B97F4A7C15) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


def noise_seed(seed: int, condition: int, index: int) -> int:
    """The generator seed of candidate `index` of condition `condition` under run seed `seed`."""
    z = _splitmix64(seed & _MASK)
    z = _splitmix64(z ^ (condition & _MASK))
    z = _splitmix64(z ^ (index & _MASK))
    return z & ((1 << 63) - 1)


def candidate_noise(seed: int, conditions: Tensor, indices: Tensor, shape: tuple[int, ...]) -> Tensor:
    """Standard normal noise of `shape` for each (condition, index) pair; returns (B, *shape) on CPU."""
    assert conditions.shape == indices.shape and conditions.ndim == 1, "one condition id per candidate index"
    out = torch.empty(len(indices), *shape)
    gen = torch.Generator()
    for row, (c, i) in enumerate(zip(conditions.tolist(), indices.tolist())):
        gen.manual_seed(noise_seed(seed, c, i))
        out[row].normal_(generator=gen)  # in place: same numbers as torch.randn(shape, generator=gen)
    return out
