"""NFEs are counted here and nowhere else; budgets are checked here and nowhere else."""

from __future__ import annotations

import time
from typing import Callable

import torch
from torch import Tensor

from inference_scaling.denoiser import Denoiser


class BudgetError(ValueError):
    """A budget that cannot buy what was asked of it."""


class NonFiniteError(ValueError):
    """A network evaluation that returned NaN or ±inf: every sample downstream of it would be garbage."""


class NotDifferentiableError(ValueError):
    """A gradient asked of a network evaluation that kept no graph (an adapter that runs under torch.no_grad)."""


class _CountBackward(torch.autograd.Function):
    """The identity on one evaluation's output; its backward adds the evaluation's rows to the counter's
    `backward_count`, so a backward pass is counted when autograd runs it, as often as it runs it."""

    @staticmethod
    def forward(ctx, counter: "NFECounter", v: Tensor) -> Tensor:
        ctx.counter, ctx.rows = counter, v.shape[0]
        return v.view_as(v)

    @staticmethod
    def backward(ctx, grad: Tensor):
        ctx.counter.backward_count += ctx.rows
        return None, grad


class NFECounter:
    """Wraps a denoiser and counts network evaluations, one per row of every batch it forwards; stops at the
    first evaluation that is not finite, naming its level.

    Placed directly around the network (below classifier-free guidance), so whatever an algorithm or a
    guidance wrapper does, the count is what the accelerator computed. Backward passes through the network
    (gradient search) are counted apart, in `backward_count`, one per row of every evaluation a gradient flows
    back through; a forward that keeps its graph is still one NFE. `priced_nfe` prices the two together.
    """

    def __init__(self, denoiser: Denoiser):
        self.denoiser = denoiser
        self.count = 0  # evaluations (rows)
        self.backward_count = 0  # backward passes through the network (rows)
        self.calls = 0  # batched calls, numbered from 1 in the errors

    def __call__(self, x: Tensor, sigma: Tensor, cond: Tensor) -> Tensor:
        self.count += x.shape[0]
        self.calls += 1
        v = self.denoiser(x, sigma, cond)
        # One float32 sum per batch, NaN or inf if any element is (cheaper than an elementwise isfinite; a finite
        # velocity never sums past 3e38). On an accelerator reading it waits for this call to finish.
        if not torch.isfinite(v.detach().sum(dtype=torch.float32)):
            row = int((~torch.isfinite(v.flatten(1))).any(dim=1).nonzero()[0, 0])
            level = float(sigma.reshape(-1)[row if sigma.numel() > 1 else 0])
            raise NonFiniteError(f"the model returned non-finite values at sigma={level:g} (NFE call {self.calls}, "
                                 f"batch row {row}); check model.weights, model.dtype and model.guidance")
        if v.requires_grad:  # a graph is kept: count the backward pass through it when autograd runs it
            return _CountBackward.apply(self, v)
        if torch.is_grad_enabled() and x.requires_grad:
            raise NotDifferentiableError(
                "a gradient was asked through the model's network, but it returned no graph (the adapter runs "
                "under torch.no_grad); gradient search needs a model differentiable in its input, e.g. model=digits "
                "or model=scenes")
        return v


class DecodeCounter:
    """Wraps a latent model's decoder and records its calls, images and seconds; they are not NFEs and are
    reported beside them."""

    def __init__(self, decode: Callable[[Tensor], Tensor]):
        self.decode = decode
        self.calls = 0
        self.images = 0
        self.seconds = 0.0

    def __call__(self, x: Tensor) -> Tensor:
        start = time.perf_counter()
        images = self.decode(x)
        self.seconds += time.perf_counter() - start
        self.calls += 1
        self.images += len(x)
        return images

    def as_dict(self) -> dict:
        return {"calls": self.calls, "images": self.images, "seconds": self.seconds}


def priced_nfe(forward: float, backward: float, backward_nfe: float) -> float:
    """NFE-equivalents of `forward` network evaluations and `backward` backward passes, one backward priced at
    `backward_nfe` forward NFEs (a ratio measured on the model: experiments/backward_ratio.py)."""
    return forward + backward_nfe * backward


def check_budget(budget: int, cost_per_sample: int) -> int:
    """Number of whole samples a per-condition budget buys; refuses a budget below one sample."""
    if budget < 1:
        raise BudgetError(f"budget.nfe={budget} must be a positive number of NFEs per condition")
    if budget < cost_per_sample:
        raise BudgetError(
            f"budget.nfe={budget} is below the cost of one sample ({cost_per_sample} NFEs with this model's "
            f"search sampler); use budget.nfe >= {cost_per_sample}"
        )
    return budget // cost_per_sample
