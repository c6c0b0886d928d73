"""The verifier contract."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Protocol, Sequence, Union

from torch import Tensor

Conditions = Union[Tensor, Sequence[str]]  # class indices (B,) or prompts, one per image


@dataclass
class VerifierCost:
    """What a verifier has spent so far: forward passes or API calls, images scored, wall time, and images it
    could not score (given the lowest score instead)."""

    calls: int = 0
    images: int = 0
    seconds: float = 0.0
    failed: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


class Verifier(Protocol):
    name: str
    cost: VerifierCost

    def __call__(self, images: Tensor, cond: Conditions) -> Tensor:
        """Scores (B,) of final candidate images (B, C, H, W) in [-1, 1] for their conditions; higher is better.
        Scores come back in input order, on the CPU or the images' device."""
        ...
