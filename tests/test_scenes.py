"""The procedural scenes benchmark: generator, grammar and the exact checker."""

import numpy as np
import pytest
import torch

from inference_scaling import scenes


def blank():
    return torch.full((1, 1, 16, 16), -1.0)


def with_blocks(*corners, size=2):
    image = blank()
    for y, x in corners:
        image[0, 0, y:y + size, x:x + size] = 1.0
    return image


def row(count, relation):
    return torch.tensor([scenes.encode(count, relation)])


def test_every_generated_scene_satisfies_its_condition():
    conditions = scenes.balanced_conditions(250)  # 3,000 scenes
    images = scenes.generate(conditions, seed=7)
    result = scenes.check(images, conditions)
    assert bool(result.both_ok.all())
    assert torch.equal(result.objects, conditions[:, 0] + 1)
    assert float(result.score.sum()) == 0.0
    assert set(images.unique().tolist()) == {-1.0, 1.0}


def test_generation_is_seeded_and_per_index():
    conditions = scenes.balanced_conditions(5)
    a, b = scenes.generate(conditions, seed=3), scenes.generate(conditions, seed=3)
    assert torch.equal(a, b)
    assert not torch.equal(a, scenes.generate(conditions, seed=4))
    # Scene i depends on (seed, index) only: generating a suffix alone gives the same images.
    assert torch.equal(scenes.generate(conditions[10:], seed=3, start=10), a[10:])


def test_conditions_are_balanced_and_prompts_round_trip():
    conditions = scenes.balanced_conditions(20)
    pairs, counts = conditions.unique(dim=0, return_counts=True)
    assert len(pairs) == 12 and set(counts.tolist()) == {20}
    assert len(conditions[:12].unique(dim=0)) == 12  # any 12 consecutive cover all pairs
    for r in pairs.tolist():
        assert scenes.parse_prompt(scenes.format_prompt(r)) == tuple(r)
    assert scenes.format_prompt([0, 1]) == "1 block, most on the right"
    assert scenes.format_prompt([3, 0]) == "4 blocks, most on the left"


@pytest.mark.parametrize("bad,message", [
    ((7, "left"), "count 7 is out of range; counts are 1..6"),
    ((0, "left"), "count 0 is out of range"),
    ((2, "above"), "unknown relation 'above'; choose one of: left, right"),
])
def test_conditions_outside_the_grammar_are_refused(bad, message):
    with pytest.raises(scenes.ConditionError, match=message):
        scenes.encode(*bad)


def test_bad_prompts_are_refused():
    with pytest.raises(scenes.ConditionError, match="does not follow the grammar"):
        scenes.parse_prompt("three blocks on the left")
    with pytest.raises(scenes.ConditionError, match="count 9 is out of range"):
        scenes.parse_prompt("9 blocks, most on the left")


def test_checker_counts_and_sides():
    image = with_blocks((0, 0), (5, 2), (10, 12))  # two left, one right
    result = scenes.check(image, row(3, "left"))
    assert (result.objects.item(), result.left.item(), result.right.item()) == (3, 2, 1)
    assert result.count_ok.item() and result.relation_ok.item() and result.score.item() == 0.0
    wrong = scenes.check(image, row(3, "right"))
    assert wrong.count_ok.item() and not wrong.relation_ok.item() and wrong.score.item() == -1.0


def test_off_by_one_counts_are_graded():
    image = with_blocks((0, 0), (5, 2), (10, 12))
    for count, score in [(2, -1.0), (4, -1.0), (5, -2.0)]:
        result = scenes.check(image, row(count, "left"))
        assert not result.count_ok.item() and result.relation_ok.item() and result.score.item() == score


def test_touching_objects_are_one_object():
    side_by_side = with_blocks((4, 2), (4, 4))  # share an edge
    diagonal = with_blocks((4, 2), (6, 4))  # touch at a corner (8-connected)
    for image in (side_by_side, diagonal):
        assert scenes.check(image, row(2, "left")).objects.item() == 1


def test_midline_and_specks():
    straddling = with_blocks((4, 7))  # columns 7-8: centroid 7.5, neither half
    result = scenes.check(straddling, row(1, "left"))
    assert result.objects.item() == 1 and result.left.item() == 0 and result.right.item() == 0
    assert not result.relation_ok.item()
    speck = with_blocks((3, 3), size=1)  # a single pixel is below MIN_PIXELS
    assert scenes.check(speck, row(1, "left")).objects.item() == 0


@pytest.mark.parametrize("image", [
    blank(),  # empty
    torch.ones(1, 1, 16, 16),  # all bright: one object straddling the midline
    torch.randn(1, 1, 16, 16, generator=torch.Generator().manual_seed(0)),  # noise
    torch.full((1, 1, 16, 16), float("nan")),
    torch.full((1, 1, 16, 16), 1e6),
])
def test_checker_is_defined_on_any_image(image):
    result = scenes.check(image, row(2, "right"))
    assert result.score.isfinite().all() and result.score.item() <= 0
    assert result.left.item() + result.right.item() <= result.objects.item()


def test_checker_on_blurred_scene():
    image = scenes.generate(row(3, "left"), seed=0)
    blurred = torch.nn.functional.avg_pool2d(image, 3, stride=1, padding=1, count_include_pad=False)
    assert scenes.check(blurred, row(3, "left")).score.isfinite().all()
    assert np.isfinite(scenes.check(blurred * 5, row(3, "left")).score.numpy()).all()
