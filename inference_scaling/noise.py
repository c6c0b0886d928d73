"""Noise as a function of (seed, condition id, candidate index) alone.

Two generators keep that contract (`noise=torch` or `noise=counter` on the command line):

- `torch` (the default, every table in the README): each candidate gets its own CPU generator (torch's
  Mersenne twister) seeded by a 64-bit mix of the three integers, drawn candidate by candidate and copied to the
  device; its noise does not depend on batch size, batch order, device or on the other candidates drawn.
- `counter`: counter-based, batched and on the model's device. Element k of a candidate's noise comes from two
  64-bit hashes (splitmix64's finaliser, as in Steele et al. 2014) of (candidate seed, 2k) and (candidate seed,
  2k + 1), turned into a standard normal by the Box–Muller transform in float64. The values are independent of batch
  size and order bit for bit; across device types they agree up to float64 rounding of log and cos (below float32's
  resolution after the cast, but not guaranteed bit for bit). Other numbers than `torch`'s for the same seeds.
"""

from __future__ import annotations

import math

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


def _seed_array(seed: int, conditions: Tensor, indices: Tensor) -> np.ndarray:
    """`noise_seed(seed, c, i)` of every (condition, index) pair as a uint64 array."""
    with np.errstate(over="ignore"):
        z = _splitmix64_array(np.full(len(indices), seed & _MASK, dtype=np.uint64))
        z = _splitmix64_array(z ^ conditions.numpy().astype(np.int64).view(np.uint64))
        z = _splitmix64_array(z ^ indices.numpy().astype(np.int64).view(np.uint64))
    return z & np.uint64((1 << 63) - 1)


def noise_seeds(seed: int, conditions: Tensor, indices: Tensor) -> list[int]:
    """`noise_seed(seed, c, i)` of every (condition, index) pair, computed on arrays."""
    return _seed_array(seed, conditions, indices).tolist()


GENERATORS = ("torch", "counter")


def candidate_noise(seed: int, conditions: Tensor, indices: Tensor, shape: tuple[int, ...], generator: str = "torch",
                    device: str = "cpu") -> Tensor:
    """Standard normal noise of `shape` for each (condition, index) pair: (B, *shape) float32 on `device`."""
    assert conditions.shape == indices.shape and conditions.ndim == 1, "one condition id per candidate index"
    if generator == "counter":
        return counter_noise(seed, conditions, indices, shape, device)
    assert generator == "torch", f"noise generator {generator!r}; choose one of: {', '.join(GENERATORS)}"
    return _torch_noise(seed, conditions, indices, shape).to(device)


def _torch_noise(seed: int, conditions: Tensor, indices: Tensor, shape: tuple[int, ...]) -> Tensor:
    """One CPU Mersenne-twister generator per candidate, seeded by `noise_seed`."""
    out = torch.empty(len(indices), *shape)
    gen = torch.Generator()
    reseed = gen.manual_seed
    for row, row_seed in zip(out.unbind(0), noise_seeds(seed, conditions.cpu(), indices.cpu())):  # views made at once
        reseed(row_seed)
        row.normal_(generator=gen)  # in place: same numbers as torch.randn(shape, generator=gen)
    return out


def _as_int64(value: int) -> int:
    """A 64-bit pattern as the int64 that holds it."""
    return value - (1 << 64) if value >= 1 << 63 else value


_GAMMA, _M1, _M2 = (_as_int64(v) for v in (0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB))


def _shr_(z: Tensor, bits: int, out: Tensor) -> Tensor:
    """Logical right shift of int64 bit patterns into `out` (torch's >> is arithmetic: the sign bits are masked)."""
    torch.bitwise_right_shift(z, bits, out=out)
    return out.bitwise_and_((1 << (64 - bits)) - 1)


def _mix64_(z: Tensor) -> Tensor:
    """splitmix64's finaliser on int64 bit patterns, in place (multiplication wraps modulo 2**64, as in
    `_splitmix64`); in-place arithmetic keeps a large batch to two buffers."""
    t = torch.empty_like(z)
    z.bitwise_xor_(_shr_(z, 30, t)).mul_(_M1)
    z.bitwise_xor_(_shr_(z, 27, t)).mul_(_M2)
    return z.bitwise_xor_(_shr_(z, 31, t))


def counter_noise(seed: int, conditions: Tensor, indices: Tensor, shape: tuple[int, ...], device: str = "cpu") -> Tensor:
    """The `counter` generator: every element of every candidate's noise in one batched computation on `device`."""
    n = math.prod(shape)
    keys = torch.from_numpy(_seed_array(seed, conditions.cpu(), indices.cpu()).view(np.int64)).to(device)  # < 2**63
    pairs = (n + 1) // 2
    steps = (torch.arange(2 * pairs, dtype=torch.int64, device=device) + 1) * _GAMMA
    bits = _mix64_(keys[:, None] + steps[None, :])  # (B, 2·pairs) independent 64-bit words
    uniform = _shr_(bits, 11, torch.empty_like(bits)).double()  # 53 random bits each ...
    del bits
    uniform.add_(0.5).mul_(2.0 ** -53)  # ... as a float64 in (0, 1)
    radius, angle = uniform[:, :pairs], uniform[:, pairs:]
    radius.log_().mul_(-2.0).sqrt_()  # Box–Muller: sqrt(−2·log u1) and 2π·u2, in place
    angle.mul_(2.0 * torch.pi)
    normal = torch.empty(len(indices), 2 * pairs, dtype=torch.float64, device=device)
    torch.cos(angle, out=normal[:, :pairs]).mul_(radius)
    torch.sin(angle, out=normal[:, pairs:]).mul_(radius)
    return normal[:, :n].float().view(len(indices), *shape)
