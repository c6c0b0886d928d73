"""Benchmarks fix the condition set a job searches for and the reference data it is evaluated against."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from inference_scaling.datasets import DIGIT_NAMES, load_digits


@dataclass
class Conditions:
    labels: Tensor  # (C,) model conditions
    ids: Tensor  # (C,) condition ids: candidate i of condition c has noise (seed, ids[c], i)
    prompts: list[str]  # human-readable condition, for results and image grids


def digits_conditions(per_class: int) -> Conditions:
    """`per_class` conditions for each digit, interleaved 0, 1, …, 9, 0, 1, … so any prefix is balanced."""
    labels = torch.arange(10).repeat(per_class)
    return Conditions(labels=labels, ids=torch.arange(len(labels)), prompts=[DIGIT_NAMES[y] for y in labels.tolist()])


def digits_reference() -> Tensor:
    """All 1,797 digits in model space: the reference set for FID, KID and precision/recall."""
    return load_digits()[0]


BENCHMARKS = {"digits": (digits_conditions, digits_reference)}
