"""Samplers as plain functions over (denoiser, x, sigmas, cond), in the style of k-diffusion.

`sigmas` is any decreasing grid of noise levels; solving from level a to level b is the same call with a
grid from a to b. Every step reports (x_σ, σ, x0-prediction) to an optional callback, which is how search
over paths and the self-supervised verifiers read intermediate states without copying a sampler.

`euler`, `heun` and `heun2` solve the probability-flow ODE dx/dσ = v. `sde` samples the reverse-time SDE with
the same marginals, as Kim, Yoon, Hwang, Sung, "Inference-Time Scaling for Flow Models via Stochastic Generation
and Rollover Budget Forcing" (arXiv 2503.19385, 2025) do for flow models (their code: `get_sde_drift`,
`get_sde_diffuse` and `step` in KAIST-Visual-AI-Group/Flow-Inference-Time-Scaling, rbf/prior/flux.py). For the
linear interpolant x_σ = (1 − σ)·x0 + σ·ε with velocity v = E[ε − x0 | x_σ]:

    x0-prediction x̂0 = x − σ·v,   ε-prediction ε̂ = x + (1 − σ)·v,   score ∇log p_σ(x) = −ε̂ / σ

(ε̂ and x̂0 solve x = (1 − σ)·x̂0 + σ·ε̂, v = ε̂ − x̂0; Tweedie's formula ∇log p_σ(x) = −E[ε | x_σ = x] / σ
gives the score). The marginals p_σ obey
∂p/∂σ = −∇·(p·v). For any g(σ) >= 0, the SDE run with σ decreasing

    dx = [v − (g²/2)·∇log p_σ] dσ + g dW̄,   i.e.   dx = [v + g²/(2σ)·ε̂] dσ + g dW̄   (dσ < 0)

has the same marginals: in the increasing time τ = −σ its Fokker–Planck drift term −∇·(p·(−v + (g²/2)∇log p))
plus (g²/2)·Δp equals ∇·(p·v), because p·∇log p = ∇p. Euler–Maruyama from σ to σ' < σ:

    x' = x + (σ' − σ)·[v + g²/(2σ)·ε̂] + g·sqrt(σ − σ')·z,   z ~ N(0, I)

which is the ODE's Euler step plus a pull along −ε̂ and fresh noise (the pull removes, to first order, the noise
variance g²·(σ − σ') that z adds). g(σ) = `scale`·σ², their code's default shape ("square", g = norm·t², with
norm 3; their configs also convert the interpolant to a variance-preserving one first, which we do not, so their
norm is not our scale). With g ∝ σ² the pull g²/(2σ)·ε̂ stays bounded as σ → 0 and vanishes with the noise. The step that ends at σ = 0 is
the plain Euler step, which lands on the x0-prediction x̂0 with no noise added (the score is singular there and
noise added at σ = 0 would stay in the sample). scale = 0 is exactly `euler`. The noise comes from the caller
(`noise(step) -> z`), so a search draws it from (seed, condition, candidate index, step) like every other noise.
"""

from __future__ import annotations

import math
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


# The default scale of g(σ) = scale·σ²: on the scenes model FK steering without renoising scored best at 3-4 of
# 1, 2, 3, 4, 6 (6 breaks FID at 8 steps; README, "FK steering on the SDE"); Kim et al.'s norm is 3 too.
SDE_SCALE = 3.0


def diffusion(scale: float, sigma: float) -> float:
    """The SDE's diffusion coefficient g(σ) = scale·σ² (Kim et al.'s default "square" shape)."""
    return scale * sigma**2


@torch.no_grad()
def sde(denoiser: Denoiser, x: Tensor, sigmas: Tensor, cond: Tensor, callback: Callback = None,
        noise: Optional[Callable[[int], Tensor]] = None, scale: float = SDE_SCALE) -> Tensor:
    """Euler–Maruyama on the reverse-time SDE with the probability-flow ODE's marginals (see the module docstring):
    one NFE per step. `noise(i)` is the standard normal z (B, ...) of step i; `scale` that of g(σ) = scale·σ²."""
    assert scale >= 0.0, f"scale={scale} must be >= 0"
    if scale > 0.0 and noise is None:
        raise ValueError("solver 'sde' draws fresh noise at every step: pass noise=step -> (B, ...) standard normals")
    for i, (s, s_next) in enumerate(zip(sigmas[:-1].tolist(), sigmas[1:].tolist())):
        v = denoiser(x, _levels(x, s), cond)
        if callback is not None:
            callback(Step(i, s, s_next, x, x0_from_velocity(x, _levels(x, s), v)))
        # Euler step of the probability-flow ODE.
        x_next = x + (s_next - s) * v
        g = diffusion(scale, s)
        if g > 0.0 and s_next > 0.0:
            # Score term and fresh noise (Euler–Maruyama); a step ending at σ = 0 keeps the x0-prediction.
            eps = x + (1.0 - s) * v
            x_next = x_next + (s_next - s) * (g**2 / (2.0 * s)) * eps + g * math.sqrt(s - s_next) * noise(i).to(x)
        x = x_next
    return x


SOLVERS: dict[str, Callable[..., Tensor]] = {"euler": euler, "heun": heun, "heun2": heun2, "sde": sde}
STOCHASTIC = ("sde",)  # solvers that draw noise at every step: called with noise= and scale= (`SearchTask`)


def is_stochastic(solver: Callable[..., Tensor]) -> bool:
    """Whether a solver (a function of SOLVERS) draws noise at every step."""
    return solver.__name__ in STOCHASTIC


def solver_nfe(solver: str, sigmas: Tensor) -> int:
    """Denoiser evaluations per sample for one solve on `sigmas` (before guidance doubles them)."""
    steps = len(sigmas) - 1
    if solver in ("euler", "sde"):
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
