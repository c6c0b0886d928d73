"""Model FLOPs per network evaluation: what an NFE costs, for compute (GFLOPs) axes across model sizes.

Counted by torch's `FlopCounterMode` on one forward of the denoiser for one sample (matrix multiplications,
convolutions and attention, 2 FLOPs per multiply-add; elementwise work is not counted, as in the FLOPs that DiT,
SiT and Ma et al. 2025 quote). An NFE is one row of one network evaluation (`inference_scaling.nfe`), so a job's
denoising compute is GFLOPs per NFE × NFEs; the verifier's and the decoder's compute are not in it.
"""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from inference_scaling.denoiser import Denoiser, Rows


def gflops_per_nfe(denoiser: Denoiser, noise_shape: tuple[int, ...], cond: Rows, device: str = "cpu") -> float:
    """GFLOPs of one evaluation of `denoiser` on one sample of `noise_shape` with the condition row `cond` (one
    row), at σ = 0.5. The FLOPs of these networks do not depend on σ or on the input's values."""
    x = torch.zeros((1, *noise_shape), device=device)
    sigma = torch.full((1,), 0.5, device=device)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        denoiser(x, sigma, cond)
    return counter.get_total_flops() / 1e9
