"""Benchmarks fix the condition set a job searches for, the model family that draws it, and its evaluation."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from inference_scaling import scenes
from inference_scaling.datasets import DIGIT_NAMES, load_digits
from inference_scaling.evaluation.fidelity import class_accuracy, fidelity_metrics


@dataclass
class Conditions:
    rows: Tensor  # (C,) or (C, F) model conditions
    ids: Tensor  # (C,) condition ids: candidate i of condition c has noise (seed, ids[c], i)
    prompts: list[str]  # human-readable condition, for results and image grids


class DigitsBenchmark:
    """Class-balanced digit conditions; IS/FID/KID/PRC in the digits classifier's features against all
    1,797 digits, and class accuracy."""

    name = "digits"
    model = "digits"
    primary_metric = "fid"

    def __init__(self, cfg):
        self.cfg = cfg

    def conditions(self) -> Conditions:
        """`per_class` conditions for each digit, interleaved 0, 1, …, 9, 0, … so any prefix is balanced."""
        labels = torch.arange(10).repeat(self.cfg.per_class)
        return Conditions(labels, torch.arange(len(labels)), [DIGIT_NAMES[y] for y in labels.tolist()])

    def evaluate(self, images: Tensor, conditions: Conditions) -> dict[str, float]:
        metrics = fidelity_metrics(images, load_digits()[0], "digits-classifier", isc=True,
                                   kid_subset_size=self.cfg.kid_subset_size)
        metrics["accuracy"] = class_accuracy(images, conditions.rows)
        return metrics


class ScenesBenchmark:
    """Counting and a spatial relation, judged by the exact checker; FID/KID/PRC in the learned scene
    classifier's features against generated scenes of the same conditions (`reference_size` of them)."""

    name = "scenes"
    model = "scenes"
    primary_metric = "accuracy"

    def __init__(self, cfg):
        self.cfg = cfg

    def condition_rows(self) -> Tensor:
        if self.cfg.prompts:
            return torch.tensor([scenes.parse_prompt(p) for p in self.cfg.prompts] * self.cfg.per_class)
        return scenes.balanced_conditions(self.cfg.per_class, self.cfg.counts, self.cfg.relations)

    def conditions(self) -> Conditions:
        rows = self.condition_rows()
        return Conditions(rows, torch.arange(len(rows)), [scenes.format_prompt(r) for r in rows.tolist()])

    def reference(self, rows: Tensor) -> Tensor:
        unique = rows.unique(dim=0)
        repeats = -(-self.cfg.reference_size // len(unique))
        return scenes.generate(unique.repeat(repeats, 1)[: self.cfg.reference_size], self.cfg.reference_seed)

    def evaluate(self, images: Tensor, conditions: Conditions) -> dict[str, float]:
        result = scenes.check(images, conditions.rows)
        metrics = {
            "accuracy": result.both_ok.float().mean().item(),
            "count_accuracy": result.count_ok.float().mean().item(),
            "relation_accuracy": result.relation_ok.float().mean().item(),
            "checker_score": result.score.mean().item(),
        }
        metrics.update(fidelity_metrics(images, self.reference(conditions.rows), "scene-classifier", isc=False,
                                        kid_subset_size=self.cfg.kid_subset_size))
        return metrics


BENCHMARKS = {"digits": DigitsBenchmark, "scenes": ScenesBenchmark}
