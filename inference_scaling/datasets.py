"""The scikit-learn handwritten digits (1,797 images, 8×8, 10 classes) as model-space tensors."""

from __future__ import annotations

import torch
from torch import Tensor

DIGIT_NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def load_digits() -> tuple[Tensor, Tensor]:
    """Images (N, 1, 8, 8) scaled from 0..16 to [-1, 1], and labels (N,)."""
    from sklearn.datasets import load_digits as sk_load_digits

    data = sk_load_digits()
    images = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 8.0 - 1.0
    return images, torch.tensor(data.target, dtype=torch.long)


def split_digits(held_out: float = 0.2, seed: int = 0) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
    """A fixed random train / held-out split of the digits."""
    images, labels = load_digits()
    perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    n_test = int(round(held_out * len(labels)))
    test, train = perm[:n_test], perm[n_test:]
    return (images[train], labels[train]), (images[test], labels[test])


def to_uint8(images: Tensor) -> Tensor:
    """Model space [-1, 1] to uint8 pixels 0..255 (values outside are clipped)."""
    return ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def from_uint8(pixels: Tensor) -> Tensor:
    return pixels.float() / 127.5 - 1.0
