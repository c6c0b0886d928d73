"""The learned scene verifier's `aspect` option: both heads (the default), the count head or the relation head alone."""

import pytest
import torch

from inference_scaling import scenes
from inference_scaling.config import ConfigError, validate
from inference_scaling.verifiers import build_verifier

SCENES = ("model=scenes", "benchmark=scenes", "budget.nfe=14", "verifier=scene_classifier")


def test_both_is_the_product_of_the_heads(config):
    conditions = scenes.balanced_conditions(2)
    noise = torch.randn(24, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    images = scenes.generate(conditions, seed=5) + 0.3 * noise  # off the clean manifold: heads not saturated
    score = {a: build_verifier(config(*SCENES, f"verifier.aspect={a}").verifier)(images, conditions)
             for a in ("both", "count", "relation")}
    assert torch.allclose(score["both"], score["count"] * score["relation"], rtol=1e-5)
    assert config(*SCENES).verifier.aspect == "both"


def test_each_aspect_judges_only_its_field(config):
    conditions = scenes.balanced_conditions(4)
    images = scenes.generate(conditions, seed=7)
    wrong_relation = conditions.clone()
    wrong_relation[:, 1] = 1 - wrong_relation[:, 1]
    count = build_verifier(config(*SCENES, "verifier.aspect=count").verifier)
    relation = build_verifier(config(*SCENES, "verifier.aspect=relation").verifier)
    assert torch.equal(count(images, conditions), count(images, wrong_relation))  # blind to the relation
    assert relation(images, conditions).mean() > 0.9 > 0.1 > relation(images, wrong_relation).mean()


def test_unknown_aspect_is_refused_up_front(config):
    with pytest.raises(ConfigError, match=r"verifier.aspect='colour'; choose one of: both, count, relation"):
        validate(config(*SCENES, "verifier.aspect=colour"))
