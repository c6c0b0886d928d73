"""Noise as a function of (seed, condition id, candidate index) alone.

Each candidate gets its own CPU generator seeded by a 64-bit mix of the three integers, so its noise does
not depend on batch size, batch order, device or on which other candidates are drawn.
"""

from __future__ import annotations

import numpy as np
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


def _splitmix64_array(z: np.ndarray) -> np.ndarray:
    """`_splitmix64` of every element of a uint64 array (numpy's uint64 arithmetic wraps modulo 2**64)."""
    z = z + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def noise_seeds(seed: int, conditions: Tensor, indices: Tensor) -> list[int]:
    """`noise_seed(seed, c, i)` of every (condition, index) pair, computed on arrays."""
    with np.errstate(over="ignore"):
        z = _splitmix64_array(np.full(len(indices), seed & _MASK, dtype=np.uint64))
        z = _splitmix64_array(z ^ conditions.numpy().astype(np.int64).view(np.uint64))
        z = _splitmix64_array(z ^ indices.numpy().astype(np.int64).view(np.uint64))
    return (z & np.uint64((1 << 63) - 1)).tolist()


def candidate_noise(seed: int, conditions: Tensor, indices: Tensor, shape: tuple[int, ...]) -> Tensor:
    """Standard normal noise of `shape` for each (condition, index) pair; returns (B, *shape) on CPU."""
    assert conditions.shape == indices.shape and conditions.ndim == 1, "one condition id per candidate index"
    out = torch.empty(len(indices), *shape)
    gen = torch.Generator()
    for row, row_seed in zip(out, noise_seeds(seed, conditions.cpu(), indices.cpu())):
        gen.manual_seed(row_seed)
        row.normal_(generator=gen)  # in place: same numbers as torch.randn(shape, generator=gen)
    return out
