"""Inference-time scaling of diffusion models by search over noises (Ma et al., arXiv 2501.09732)."""

from inference_scaling.denoiser import Denoiser, GuidedDenoiser
from inference_scaling.nfe import BudgetError, NFECounter, check_budget
from inference_scaling.noise import candidate_noise
from inference_scaling.sampling import SOLVERS, euler, heun, linear_sigmas, solver_nfe

__all__ = [
    "Denoiser", "GuidedDenoiser", "NFECounter", "BudgetError", "check_budget", "candidate_noise",
    "SOLVERS", "euler", "heun", "linear_sigmas", "solver_nfe",
]
