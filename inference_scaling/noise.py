"""Noise as a function of (seed, condition id, candidate index) alone.

Two generators keep that contract (`noise=counter` or `noise=torch` on the command line):

- `counter` (the default, every table in the README): counter-based, batched and on the model's device. Each pair
  of elements of a candidate's noise comes from one 64-bit hash (splitmix64's finaliser, as in Steele et al. 2014)
  of (candidate seed, pair), whose two 32-bit halves the Box–Muller transform turns into two standard normals in
  float32 (`counter_noise`). The values are independent of batch size and order bit for bit; across device types
  the integer part is exact and the float32 log, cos and sin agree to their last bit or so (not guaranteed bit for
  bit).
- `torch` (the default before the counter generator, and of the README's tables until then): each candidate gets its
  own CPU generator (torch's Mersenne twister) seeded by a 64-bit mix of the three integers, drawn candidate by
  candidate and copied to the device; its noise does not depend on batch size, batch order, device or on the other
  candidates drawn. Other numbers than `counter`'s for the same seeds.
"""

from __future__ import annotations

import functools
import math
import os
import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Optional

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
        z = np.uint64(_splitmix64(seed & _MASK))  # the same first round for every pair: once, in Python
        z = _splitmix64_array(z ^ conditions.numpy().astype(np.int64).view(np.uint64))
        z = _splitmix64_array(z ^ indices.numpy().astype(np.int64).view(np.uint64))
    return z & np.uint64((1 << 63) - 1)


def noise_seeds(seed: int, conditions: Tensor, indices: Tensor) -> list[int]:
    """`noise_seed(seed, c, i)` of every (condition, index) pair, computed on arrays."""
    return _seed_array(seed, conditions, indices).tolist()


GENERATORS = ("torch", "counter")


def candidate_noise(seed: int, conditions: Tensor, indices: Tensor, shape: tuple[int, ...], generator: str = "counter",
                    device: str = "cpu") -> Tensor:
    """Standard normal noise of `shape` for each (condition, index) pair: (B, *shape) float32 on `device`."""
    assert conditions.shape == indices.shape and conditions.ndim == 1, "one condition id per candidate index"
    if generator == "counter":
        return counter_noise(seed, conditions, indices, shape, device)
    assert generator == "torch", f"noise generator {generator!r}; choose one of: {', '.join(GENERATORS)}"
    drawn = AHEAD.take(seed, conditions, indices, shape)
    return (_torch_noise(seed, conditions, indices, shape) if drawn is None else drawn).to(device)


class NoiseAhead:
    """`torch` noises drawn in a background thread before they are asked for (`prefetch_noise`).

    The `torch` generator is a Python loop over candidates on the host; a search that knows its next batch's
    (condition, index) pairs asks for them here before it solves the current batch, and `candidate_noise` takes the
    finished tensor instead of drawing it again. The values are `_torch_noise`'s, bit for bit: this only moves
    the same computation to another thread. Entries are keyed by everything the noise depends on (seed, condition
    ids, indices, shape), so any caller that asks for the same noise gets it; at most `depth` are held (older ones
    are dropped). One worker thread per process, recreated after a fork.
    """

    def __init__(self, depth: int = 2):
        self.depth = depth
        self.pending: OrderedDict[tuple, Future] = OrderedDict()
        self.lock = threading.Lock()
        self.pool: Optional[ThreadPoolExecutor] = None
        self.pid = os.getpid()
        self.hits = 0  # noises that were drawn ahead when asked for

    @staticmethod
    def key(seed: int, conditions: Tensor, indices: Tensor, shape: tuple[int, ...]) -> tuple:
        return (int(seed), tuple(shape), conditions.cpu().numpy().astype(np.int64).tobytes(),
                indices.cpu().numpy().astype(np.int64).tobytes())

    def submit(self, seed: int, conditions: Tensor, indices: Tensor, shape: tuple[int, ...]) -> None:
        key = self.key(seed, conditions, indices, shape)
        conditions, indices = conditions.cpu().clone(), indices.cpu().clone()  # the caller may reuse its tensors
        with self.lock:
            if key in self.pending:
                return
            if self.pool is None or self.pid != os.getpid():  # a forked child has the pool but not its thread
                self.pool = ThreadPoolExecutor(1, thread_name_prefix="noise")
                self.pid, self.pending = os.getpid(), OrderedDict()
            while len(self.pending) >= self.depth:
                self.pending.popitem(last=False)[1].cancel()
            self.pending[key] = self.pool.submit(_torch_noise, seed, conditions, indices, tuple(shape))

    def take(self, seed: int, conditions: Tensor, indices: Tensor, shape: tuple[int, ...]) -> Optional[Tensor]:
        """The noise if it was asked for ahead (waiting for it to finish), else None."""
        if not self.pending:
            return None
        with self.lock:
            if self.pid != os.getpid():  # forked: these futures wait on the parent's worker, which this process lacks
                self.pending.clear()
                return None
            future = self.pending.pop(self.key(seed, conditions, indices, shape), None)
        if future is None:
            return None
        self.hits += 1
        return future.result()


AHEAD = NoiseAhead()


def prefetch_noise(seed: int, conditions: Tensor, indices: Tensor, shape: tuple[int, ...],
                   generator: str = "counter") -> None:
    """Start drawing `candidate_noise(seed, conditions, indices, shape, generator)` in the background, so the call
    that asks for it later finds it drawn. Only the `torch` generator (a host-side loop) is drawn ahead; `counter`
    is a few batched tensor operations on the model's device, which a second thread would only contend with."""
    if generator == "torch":
        AHEAD.submit(seed, conditions, indices, shape)


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


# Elements of a `counter` batch computed together. On the CPU a block's int64 words and float32 temporaries stay in
# cache (2**18 elements), instead of a dozen passes over a whole batch of latents in memory; on a GPU larger blocks
# keep the kernel launches few (2**24: a FLUX latent is 2**18 elements). Element-wise, so bit-identical either way.
_BLOCK = {"cpu": 1 << 18}
_DEVICE_BLOCK = 1 << 24


@functools.lru_cache(maxsize=8)
def _steps(pairs: int, device: torch.device) -> Tensor:
    """(j + 1)·γ for the pairs j of a shape (wrapping modulo 2**64): the same for every batch of that shape."""
    return (torch.arange(pairs, dtype=torch.int64, device=device) + 1) * _GAMMA


def counter_noise(seed: int, conditions: Tensor, indices: Tensor, shape: tuple[int, ...], device: str = "cpu") -> Tensor:
    """The `counter` generator: every element of every candidate's noise in batched computations on `device`.

    Pair j of a candidate with key K (`noise_seed`) is one 64-bit word w = splitmix64's finaliser of K + (j + 1)·γ.
    Its high 32 bits give u = (hi + ½)·2⁻³² in (0, 1], its low 32 bits a = lo·2⁻³² in [0, 1), both in float32, and
    Box–Muller makes elements j and pairs + j: sqrt(−2·log u)·cos(2π·a) and sqrt(−2·log u)·sin(2π·a).
    """
    n = math.prod(shape)
    pairs = (n + 1) // 2
    keys = torch.from_numpy(_seed_array(seed, conditions.cpu(), indices.cpu()).view(np.int64)).to(device)  # < 2**63
    steps = _steps(pairs, keys.device)
    out = torch.empty(len(indices), 2 * pairs, dtype=torch.float32, device=device)
    rows = max(1, _BLOCK.get(torch.device(device).type, _DEVICE_BLOCK) // pairs)
    for start in range(0, len(keys), rows):
        bits = _mix64_(keys[start:start + rows, None] + steps[None, :])  # (rows, pairs) independent 64-bit words
        radius = _shr_(bits, 32, torch.empty_like(bits)).float()  # the high 32 bits ...
        radius.add_(0.5).mul_(2.0 ** -32).log_().mul_(-2.0).sqrt_()  # ... as u in (0, 1]: sqrt(−2·log u)
        angle = bits.bitwise_and_(0xFFFFFFFF).float().mul_(2.0 * math.pi * 2.0 ** -32)  # the low 32 bits: 2π·a
        del bits
        block = out[start:start + rows]
        torch.cos(angle, out=block[:, :pairs]).mul_(radius)
        torch.sin(angle, out=block[:, pairs:]).mul_(radius)
    return out[:, :n].view(len(indices), *shape)
