"""Samplers: NFE counts and convergence order against a closed-form probability-flow ODE."""

import math

import pytest
import torch

from inference_scaling.denoiser import GuidedDenoiser
from inference_scaling.nfe import NFECounter
from inference_scaling.sampling import euler, heun, linear_sigmas, solver_nfe

MU, S = 0.7, 0.3  # data x0 ~ N(MU, S^2)


def _a(sigma):
    return torch.sqrt((1 - sigma) ** 2 * S**2 + sigma**2)


def gaussian_velocity(x, sigma, cond):
    """Exact velocity of x_σ = (1−σ)x0 + σε for Gaussian data: transports N((1−σ)μ, a(σ)²) marginals."""
    sigma = sigma.view(-1, *([1] * (x.ndim - 1))).to(x.dtype)
    a = _a(sigma)
    da = (-(1 - sigma) * S**2 + sigma) / a
    return -MU + da / a * (x - (1 - sigma) * MU)


def exact_solution(x1):
    """x at σ = 0 from x at σ = 1 (a(1) = 1, a(0) = S)."""
    return MU + S * x1


@pytest.mark.parametrize("solver,order", [(euler, 1), (heun, 2)])
def test_convergence_order(solver, order):
    x1 = torch.linspace(-2, 2, 9, dtype=torch.float64)
    cond = torch.zeros(9, dtype=torch.long)
    errors = [(solver(gaussian_velocity, x1, linear_sigmas(n), cond) - exact_solution(x1)).abs().max().item()
              for n in (8, 16, 32, 64)]
    rates = [math.log2(errors[i] / errors[i + 1]) for i in range(3)]
    assert all(abs(r - order) < 0.25 for r in rates), (errors, rates)


def test_solving_to_an_intermediate_level_matches_the_exact_flow():
    x1 = torch.linspace(-2, 2, 5, dtype=torch.float64)
    cond = torch.zeros(5, dtype=torch.long)
    x_mid = heun(gaussian_velocity, x1, linear_sigmas(200, 1.0, 0.4), cond)
    expected = 0.6 * MU + _a(torch.tensor(0.4, dtype=torch.float64)) * x1  # a(1) = 1, mean at σ=1 is 0
    assert torch.allclose(x_mid, expected, atol=1e-6)
    # Continuing from 0.4 to 0 lands where one solve from 1 to 0 lands.
    x0 = heun(gaussian_velocity, x_mid, linear_sigmas(200, 0.4, 0.0), cond)
    assert torch.allclose(x0, exact_solution(x1), atol=1e-5)


@pytest.mark.parametrize("steps", [1, 2, 5])
@pytest.mark.parametrize("guidance,per_eval", [(1.0, 1), (3.0, 2)])
def test_nfe_counts(steps, guidance, per_eval):
    batch = 4
    for solver, expected in [(euler, steps), (heun, 2 * steps - 1)]:
        counter = NFECounter(gaussian_velocity)
        guided = GuidedDenoiser(counter, guidance, torch.tensor([10]))
        solver(guided, torch.zeros(batch, 1), linear_sigmas(steps), torch.zeros(batch, dtype=torch.long))
        assert counter.count == batch * expected * per_eval
        assert solver_nfe(solver.__name__, linear_sigmas(steps)) == expected


def test_heun_not_ending_at_zero_costs_two_per_step():
    counter = NFECounter(gaussian_velocity)
    sigmas = linear_sigmas(3, 1.0, 0.2)
    heun(counter, torch.zeros(2, 1), sigmas, torch.zeros(2, dtype=torch.long))
    assert counter.count == 2 * 6 == 2 * solver_nfe("heun", sigmas)


def test_callback_sees_every_step_with_x0_prediction():
    seen = []
    x1 = torch.ones(3, dtype=torch.float64)
    heun(gaussian_velocity, x1, linear_sigmas(4), torch.zeros(3, dtype=torch.long), callback=seen.append)
    assert [s.sigma for s in seen] == pytest.approx([1.0, 0.75, 0.5, 0.25])
    # At σ = 1 the x0-prediction is E[x0 | x1] = x − v.
    assert torch.allclose(seen[0].x0, x1 - gaussian_velocity(x1, torch.ones(3), None))


def test_guidance_combines_conditional_and_unconditional():
    def toy(x, sigma, cond):
        return x + cond.to(x.dtype).view(-1, 1)

    out = GuidedDenoiser(toy, 2.5, torch.tensor([10]))(torch.zeros(2, 1), torch.ones(2), torch.tensor([1, 3]))
    # v_u + w (v_c − v_u) with v_c = cond, v_u = 10.
    assert torch.allclose(out.squeeze(1), torch.tensor([10 + 2.5 * (1 - 10), 10 + 2.5 * (3 - 10)]))
