"""ODE samplers as plain functions over (denoiser, x, sigmas, cond), in the style of k-diffusion.

`sigmas` is any decreasing grid of noise levels; solving from level a to level b is the same call with a
grid from a to b. Every step reports (x_σ, σ, x0-prediction) to an optional callback, which is how search
over paths and the self-supervised verifiers read intermediate states without copying a sampler.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import Tensor

from inference_scaling.denoiser import Denoiser, x0_from_velocity


@dataclass(frozen=True)
class Step:
    index: int  # step number on the grid
    sigma: float  # level of x
    sigma_next: float
    x: Tensor  # state at sigma
    x0: Tensor  # x0-prediction at sigma (from the first evaluation of the step)


Callback = Optional[Callable[[Step], None]]


def linear_sigmas(steps: int, sigma_max: float = 1.0, sigma_min: float = 0.0) -> Tensor:
    """A grid of `steps` equal steps in σ from sigma_max down to sigma_min (steps + 1 levels)."""
    assert steps >= 1, f"steps={steps} must be >= 1"
    assert 0.0 <= sigma_min < sigma_max <= 1.0, f"need 0 <= sigma_min < sigma_max <= 1, got {sigma_min}, {sigma_max}"
    return torch.linspace(sigma_max, sigma_min, steps + 1, dtype=torch.float64)


def _levels(x: Tensor, sigma: float) -> Tensor:
    return torch.full((x.shape[0],), sigma, dtype=x.dtype, device=x.device)


@torch.no_grad()
def euler(denoiser: Denoiser, x: Tensor, sigmas: Tensor, cond: Tensor, callback: Callback = None) -> Tensor:
    """First-order Euler solver of the probability-flow ODE dx/dσ = v(x, σ): one NFE per step."""
    for i, (s, s_next) in enumerate(zip(sigmas[:-1].tolist(), sigmas[1:].tolist())):
        v = denoiser(x, _levels(x, s), cond)
        if callback is not None:
            callback(Step(i, s, s_next, x, x0_from_velocity(x, _levels(x, s), v)))
        # Euler step.
        x = x + (s_next - s) * v
    return x


def _heun(denoiser: Denoiser, x: Tensor, sigmas: Tensor, cond: Tensor, callback: Callback, correct_last: bool) -> Tensor:
    for i, (s, s_next) in enumerate(zip(sigmas[:-1].tolist(), sigmas[1:].tolist())):
        d_cur = denoiser(x, _levels(x, s), cond)
        if callback is not None:
            callback(Step(i, s, s_next, x, x0_from_velocity(x, _levels(x, s), d_cur)))
        # Euler step.
        x_next = x + (s_next - s) * d_cur
        if s_next > 0 or correct_last:
            # Apply 2nd order correction.
            d_prime = denoiser(x_next, _levels(x, s_next), cond)
            x_next = x + (s_next - s) * (0.5 * d_cur + 0.5 * d_prime)
        x = x_next
    return x


@torch.no_grad()
def heun(denoiser: Denoiser, x: Tensor, sigmas: Tensor, cond: Tensor, callback: Callback = None) -> Tensor:
    """Second-order Heun solver (Karras et al. 2022, Alg. 1); the last step to σ = 0 is an Euler step,
    so N steps ending at 0 cost 2N − 1 NFEs."""
    return _heun(denoiser, x, sigmas, cond, callback, correct_last=False)


@torch.no_grad()
def heun2(denoiser: Denoiser, x: Tensor, sigmas: Tensor, cond: Tensor, callback: Callback = None) -> Tensor:
    """Heun's method with the correction on every step, the last one included (torchdiffeq's fixed-grid `heun2`,
    which SiT's ODE sampler uses): N steps cost 2N NFEs. At σ = 0 the corrector evaluates the network on the
    final sample, so SiT's 250-step sampling is 500 NFEs where the EDM-style `heun` spends 499."""
    return _heun(denoiser, x, sigmas, cond, callback, correct_last=True)


SOLVERS: dict[str, Callable[..., Tensor]] = {"euler": euler, "heun": heun, "heun2": heun2}


def solver_nfe(solver: str, sigmas: Tensor) -> int:
    """Denoiser evaluations per sample for one solve on `sigmas` (before guidance doubles them)."""
    steps = len(sigmas) - 1
    if solver == "euler":
        return steps
    if solver == "heun":
        return 2 * steps - int(bool(sigmas[-1] == 0))
    if solver == "heun2":
        return 2 * steps
    raise ValueError(f"unknown solver {solver!r}; choose one of: {', '.join(SOLVERS)}")


def get_solver(name: str) -> Callable[..., Tensor]:
    if name not in SOLVERS:
        raise ValueError(f"unknown solver {name!r}; choose one of: {', '.join(SOLVERS)}")
    return SOLVERS[name]
