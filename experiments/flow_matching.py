"""The flow-matching training loop shared by the embedded models' training scripts."""

from __future__ import annotations

import copy
from typing import Callable

import torch
from torch import Tensor

from inference_scaling.models.flow_mlp import FlowMLP


def train_flow(net: FlowMLP, sample: Callable[[int, torch.Generator], tuple[Tensor, Tensor]], steps: int,
               batch: int, lr: float, seed: int, p_uncond: float = 0.1, ema_decay: float = 0.999,
               log_every: int = 1000) -> FlowMLP:
    """Conditional flow matching on x_σ = (1 − σ)·x0 + σ·ε with target v = ε − x0 and σ ~ U(0, 1).

    `sample(batch, generator)` returns clean images and their condition rows. Each condition row is replaced
    by the null condition with probability `p_uncond` (for classifier-free guidance). AdamW with a one-cycle
    schedule; returns an EMA of the weights.
    """
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    ema = copy.deepcopy(net).requires_grad_(False)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.05)
    null = net.null_cond
    for step in range(steps):
        x0, cond = sample(batch, gen)
        drop = torch.rand(batch, generator=gen) < p_uncond
        cond = torch.where(drop.view(-1, *([1] * (cond.ndim - 1))), null.expand_as(cond), cond)
        eps = torch.randn(x0.shape, generator=gen)
        sigma = torch.rand(batch, generator=gen)
        s = sigma.view(-1, *([1] * (x0.ndim - 1)))
        loss = (net((1 - s) * x0 + s * eps, sigma, cond) - (eps - x0)).square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            for p_ema, p in zip(ema.parameters(), net.parameters()):
                p_ema.lerp_(p, 1 - ema_decay)
        if step % log_every == 0 or step == steps - 1:
            print(f"step {step:5d}  loss {loss.item():.4f}", flush=True)
    return ema.eval()
