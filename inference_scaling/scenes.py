"""Procedural scenes: counting and a spatial relation, with an exact checker.

Images are 16×16, one channel, in model space: background −1, objects +1. An object is a 2×2 block; blocks
never touch (not even diagonally), so each is one 8-connected component.

Condition grammar. A condition has two fields:
  count     n ∈ {1, …, 6}                       token n − 1 (null token 6)
  relation  "left" | "right": most blocks lie   token 0 | 1   (null token 2)
            in that half (strictly more than in the other half)
Its human-readable prompt is "<n> block[s], most on the <left|right>", e.g. "3 blocks, most on the left"
(`format_prompt` / `parse_prompt`). As a model input a condition is the row [n − 1, relation token].

The checker (`check`) reads any image (blurred, empty, noisy, out of range, NaN): pixels > 0 are foreground;
8-connected foreground components of at least MIN_PIXELS pixels are objects (smaller ones are specks and
ignored); an object is in the left half if its centroid column is < 7.5, in the right half if > 7.5 (exactly
on the midline: neither). Count is correct iff the number of objects is n; the relation is correct iff the
named half holds strictly more objects than the other. Graded score: −|objects − n| − [relation wrong]
(0 is perfect).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor

SIZE = 16
BLOCK = 2
IMAGE_SHAPE = (1, SIZE, SIZE)
COUNTS = tuple(range(1, 7))
RELATIONS = ("left", "right")
FIELDS = (len(COUNTS), len(RELATIONS))
MIN_PIXELS = 2
MIDLINE = (SIZE - 1) / 2  # 7.5: between columns 7 and 8
_PROMPT = re.compile(r"^\s*(\d+) blocks?, most on the (\w+)\s*$")


class ConditionError(ValueError):
    """A scene condition outside the grammar."""


def encode(count: int, relation: str) -> tuple[int, int]:
    """The model-input row of a condition; refuses values outside the grammar."""
    if count not in COUNTS:
        raise ConditionError(f"count {count} is out of range; counts are {COUNTS[0]}..{COUNTS[-1]}")
    if relation not in RELATIONS:
        raise ConditionError(f"unknown relation {relation!r}; choose one of: {', '.join(RELATIONS)}")
    return count - 1, RELATIONS.index(relation)


def format_prompt(row) -> str:
    count, relation = int(row[0]) + 1, RELATIONS[int(row[1])]
    return f"{count} block{'s' if count > 1 else ''}, most on the {relation}"


def parse_prompt(prompt: str) -> tuple[int, int]:
    match = _PROMPT.match(prompt)
    if match is None:
        raise ConditionError(f"prompt {prompt!r} does not follow the grammar '<n> blocks, most on the <left|right>'")
    return encode(int(match.group(1)), match.group(2))


def balanced_conditions(per_condition: int, counts=COUNTS, relations=RELATIONS) -> Tensor:
    """Every (count, relation) pair `per_condition` times, interleaved so any prefix is nearly balanced."""
    rows = [encode(n, r) for n in counts for r in relations]
    return torch.tensor(rows * per_condition, dtype=torch.long)


def _place(rng: np.random.Generator, columns: range, taken: list[tuple[int, int]]) -> tuple[int, int]:
    """A block's top-left corner in `columns`, with a background gap to every block in `taken`."""
    while True:
        y, x = int(rng.integers(0, SIZE - BLOCK + 1)), int(rng.choice(columns))
        if all(max(abs(y - ty), abs(x - tx)) > BLOCK for ty, tx in taken):
            return y, x


def draw_scene(row, rng: np.random.Generator) -> np.ndarray:
    """One scene satisfying condition `row`: the majority half gets k > n/2 blocks (uniform over the valid k)."""
    count, relation = int(row[0]) + 1, int(row[1])
    k_major = int(rng.integers(count // 2 + 1, count + 1))
    left_half, right_half = range(0, SIZE // 2 - BLOCK + 1), range(SIZE // 2, SIZE - BLOCK + 1)
    halves = (left_half, right_half) if relation == 0 else (right_half, left_half)
    taken: list[tuple[int, int]] = []
    for columns, k in zip(halves, (k_major, count - k_major)):
        for _ in range(k):
            taken.append(_place(rng, columns, taken))
    image = np.full((SIZE, SIZE), -1.0, dtype=np.float32)
    for y, x in taken:
        image[y:y + BLOCK, x:x + BLOCK] = 1.0
    return image


def generate(conditions: Tensor, seed: int, start: int = 0) -> Tensor:
    """Scenes (B, 1, 16, 16) for condition rows; scene i depends only on (seed, start + i, its condition)."""
    images = [draw_scene(row, np.random.default_rng([seed, start + i])) for i, row in enumerate(conditions.tolist())]
    return torch.from_numpy(np.stack(images)).unsqueeze(1)


@dataclass
class Check:
    objects: Tensor  # (B,) objects found
    left: Tensor  # (B,) objects in the left half
    right: Tensor  # (B,) objects in the right half
    count_ok: Tensor  # (B,) bool
    relation_ok: Tensor  # (B,) bool
    score: Tensor  # (B,) float: −|objects − n| − [relation wrong]

    @property
    def both_ok(self) -> Tensor:
        return self.count_ok & self.relation_ok


_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def _objects(image: np.ndarray) -> tuple[int, int, int]:
    labels, n = ndimage.label(image > 0, structure=_EIGHT_CONNECTED)
    if n == 0:
        return 0, 0, 0
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    columns = np.bincount(labels.ravel(), weights=np.tile(np.arange(image.shape[1]), image.shape[0]), minlength=n + 1)[1:]
    centroid = columns / np.maximum(sizes, 1)
    kept = sizes >= MIN_PIXELS
    return int(kept.sum()), int((kept & (centroid < MIDLINE)).sum()), int((kept & (centroid > MIDLINE)).sum())


def check(images: Tensor, conditions: Tensor) -> Check:
    """Exact per-category correctness of images (B, 1, H, W) for condition rows (B, 2)."""
    pixels = torch.nan_to_num(images.detach().float().cpu(), nan=-1.0)[:, 0].numpy()
    found = torch.tensor([_objects(p) for p in pixels], dtype=torch.long).view(-1, 3)
    objects, left, right = found.unbind(1)
    count = conditions[:, 0].cpu() + 1
    wants_left = conditions[:, 1].cpu() == 0
    count_ok = objects == count
    relation_ok = torch.where(wants_left, left > right, right > left)
    score = -(objects - count).abs().float() - (~relation_ok).float()
    return Check(objects, left, right, count_ok, relation_ok, score)
