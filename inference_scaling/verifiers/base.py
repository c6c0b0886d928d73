"""The verifier contract."""

from __future__ import annotations

from typing import Protocol

from torch import Tensor


class Verifier(Protocol):
    name: str

    def __call__(self, images: Tensor, cond: Tensor) -> Tensor:
        """Scores (B,) of final candidates images (B, ...) for their conditions cond (B, ...); higher is better.
        Scores must come back in input order."""
        ...
