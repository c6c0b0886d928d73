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


class DifferentiableVerifier(Verifier, Protocol):
    """A verifier whose score is differentiable in the image declares `differentiable = True` and has
    `differentiable_score`: the same scores as `__call__` (same values, the same cost record), computed with the
    graph kept, so a search can back-propagate through them (`search=gradient`). Any other verifier is refused
    by such a search."""

    differentiable: bool

    def differentiable_score(self, images: Tensor, cond: Conditions) -> Tensor:
        """`__call__`'s scores (B,), on the images' device, differentiable with respect to `images`."""
        ...


def is_differentiable(verifier) -> bool:
    """Whether a verifier (class or instance) declares a score differentiable in the image."""
    return bool(getattr(verifier, "differentiable", False)) and hasattr(verifier, "differentiable_score")
