"""Shared helpers of the text-to-image verifiers: [-1, 1] images to a backbone's input, batched scoring.

Preprocessing follows the processors the verifiers were trained with (OpenAI CLIP's `_transform`, which
ImageReward copies): resize the shorter side to the backbone's resolution with bicubic interpolation, crop the
centre square, then normalise with CLIP's per-channel mean and std. It runs on tensors on the verifier's device;
unlike the PIL pipelines it neither quantises to uint8 nor uses PIL's resampler (torch's antialiased bicubic is
close to it, a few 1e-3 in [0, 1] units on smooth images).
"""

from __future__ import annotations

import time
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from inference_scaling.verifiers.base import VerifierCost

# OpenAI CLIP's normalisation (Radford et al. 2021); ImageReward's preprocessing uses the same constants.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# Benchmarks whose conditions are text prompts: the ones the text-to-image verifiers can score.

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def resolve_dtype(name: str) -> torch.dtype:
    if name not in DTYPES:
        raise ValueError(f"dtype={name!r} is not supported; choose one of: {', '.join(DTYPES)}")
    return DTYPES[name]


def check_inputs(images: Tensor, prompts: Sequence[str]) -> None:
    """Images (B, 3, H, W) and one prompt string per image."""
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be (B, 3, H, W) RGB or (B, 1, H, W) grey in [-1, 1], got shape {tuple(images.shape)}")
    if isinstance(prompts, (str, Tensor)) or not all(isinstance(p, str) for p in prompts):
        raise TypeError("this verifier needs a sequence of prompt strings, one per image")
    if len(prompts) != len(images):
        raise ValueError(f"{len(images)} images but {len(prompts)} prompts")


def resize_center_crop(x: Tensor, size: int) -> Tensor:
    """Bicubic resize (antialiased) of the shorter side to `size`, then the centre size × size crop."""
    h, w = x.shape[-2:]
    long = int(size * max(h, w) / min(h, w))  # rounded down, as torchvision's Resize(size) and CLIP's processor
    new_h, new_w = (size, long) if h <= w else (long, size)
    if (new_h, new_w) != (h, w):
        x = F.interpolate(x, size=(new_h, new_w), mode="bicubic", align_corners=False, antialias=True)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return x[..., top:top + size, left:left + size]


def to_model_input(images: Tensor, size: int, device: str, dtype: torch.dtype,
                   mean: Sequence[float] = CLIP_MEAN, std: Sequence[float] = CLIP_STD) -> Tensor:
    """[-1, 1] images (B, 3, H, W), or grey (B, 1, H, W) repeated to RGB → normalised pixels (B, 3, size, size)
    on `device` in `dtype`."""
    x = ((images.to(device=device, dtype=torch.float32) + 1) / 2).clamp(0, 1)
    x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
    x = resize_center_crop(x, size).clamp(0, 1)  # bicubic overshoots; PIL's uint8 output is clipped too
    mean_t = torch.tensor(mean, device=device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, device=device).view(1, 3, 1, 1)
    return ((x - mean_t) / std_t).to(dtype)


def score_in_batches(score: Callable[[Tensor, list[str]], Tensor], images: Tensor, prompts: Sequence[str],
                     batch_size: int, cost: VerifierCost) -> Tensor:
    """Scores (B,) float32 on the CPU, in input order, from `score` run on chunks of at most `batch_size` images.

    Each chunk counts as one forward pass of the verifier in `cost`.
    """
    check_inputs(images, prompts)
    start = time.perf_counter()
    out = []
    with torch.no_grad():
        for lo in range(0, len(images), batch_size):
            out.append(score(images[lo:lo + batch_size], list(prompts[lo:lo + batch_size])).float().cpu())
            cost.calls += 1
    cost.images += len(images)
    cost.seconds += time.perf_counter() - start
    return torch.cat(out) if out else torch.empty(0)
