"""ImageNet evaluation: IS from logits, FID from statistics in float64, precision/recall against a reference batch,
the reference file's checks, and the whole chain on a tiny SiT with a random InceptionV3."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from test_sit import overrides, tiny_files  # noqa: F401 (the tiny SiT fixtures)
from tiny_models import random_inception_weights

from inference_scaling.config import ConfigError, validate
from inference_scaling.evaluation.imagenet import (InceptionEvaluator, ReferenceError, inception_score, precision_recall,
                                                   read_reference)
from inference_scaling.runner import run
from inference_scaling.verifiers.fid_oracle import feature_statistics, frechet_distance


@pytest.fixture(scope="module")
def inception_weights(tmp_path_factory) -> str:
    return random_inception_weights(tmp_path_factory.mktemp("inception") / "weights-inception-random.pth")


def test_inception_score_on_logits_with_known_answers():
    assert inception_score(torch.zeros(20, 1008), splits=2) == pytest.approx((1.0, 0.0))  # one distribution
    one_hot = torch.full((40, 1008), -50.0)
    one_hot[torch.arange(40), torch.arange(40) % 10] = 50.0  # 10 classes, each certain, equally often
    mean, std = inception_score(one_hot, splits=4)
    assert mean == pytest.approx(10.0, rel=1e-6) and std == pytest.approx(0.0, abs=1e-6)
    half = one_hot.clone()
    half[:20] = 0.0  # the first split's half is uncertain
    assert inception_score(half, splits=2)[1] > 1.0


def test_precision_recall_of_a_set_against_itself_and_a_far_one():
    x = torch.randn(60, 8)
    assert precision_recall(x, x) == (1.0, 1.0)
    assert precision_recall(x + 100.0, x) == (0.0, 0.0)


def test_a_bad_reference_is_refused_in_one_line(tmp_path, config, overrides):  # noqa: F811
    np.savez(tmp_path / "stats.npz", mean=np.zeros(3))
    with pytest.raises(ReferenceError, match=r"needs arrays 'mu' and 'sigma' .*it has: mean"):
        read_reference(str(tmp_path / "stats.npz"))
    np.savez(tmp_path / "batch.npz", mu=np.zeros(3), sigma=np.eye(3), arr_0=np.zeros((2, 3, 8, 8), np.float32))
    with pytest.raises(ReferenceError, match=r"arr_0 must be uint8 images \(N, H, W, 3\)"):
        read_reference(str(tmp_path / "batch.npz"))
    (tmp_path / "text.npz").write_text("not an archive")
    with pytest.raises(ConfigError, match=r"benchmark.reference=.*text.npz' cannot be read as an .npz"):
        validate(config(*overrides, f"benchmark.reference={tmp_path / 'text.npz'}"))
    with pytest.raises(ConfigError, match=r"benchmark.inception_weights='/no/such.pth' is not a file"):
        validate(config(*overrides, "benchmark.inception=true", "benchmark.inception_weights=/no/such.pth"))


def test_imagenet_job_reports_is_fid_precision_recall(tmp_path, config, overrides, inception_weights,  # noqa: F811
                                                      one_thread):
    """IS, FID and precision/recall of a tiny SiT's selected images, each equal to its definition recomputed from
    the images the job wrote."""
    evaluate = InceptionEvaluator(inception_weights, batch_size=3)
    batch = torch.randint(0, 256, (6, 3, 16, 16), dtype=torch.uint8)
    pool, _ = evaluate(batch)
    mu, sigma = feature_statistics(pool)
    np.savez(tmp_path / "ref.npz", mu=mu.numpy(), sigma=sigma.numpy(), arr_0=batch.permute(0, 2, 3, 1).numpy())

    cfg = config(*overrides, "benchmark.per_class=3", "budget.nfe=8", f"benchmark.reference={tmp_path / 'ref.npz'}",
                 f"benchmark.inception_weights={inception_weights}", "benchmark.is_splits=2",
                 "benchmark.eval_batch_size=4")
    result = run(cfg)
    metrics = result["metrics"]
    own_pool, own_logits = evaluate(result["images"])
    assert metrics["is"] == pytest.approx(inception_score(own_logits, 2)[0], rel=1e-5)
    assert metrics["fid"] == pytest.approx(frechet_distance(*feature_statistics(own_pool), mu, sigma), rel=1e-4)
    assert (metrics["precision"], metrics["recall"]) == precision_recall(own_pool, pool)
    assert math.isfinite(metrics["fid"]) and metrics["fid"] > 0
    assert "fid" not in run(config(*overrides, "benchmark.per_class=1", "budget.nfe=4"))["metrics"]  # off by default
