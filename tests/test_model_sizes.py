"""The scenes flow model's three sizes (model=scenes_small, scenes, scenes_large): each config composes, loads its
committed weights, grows in parameters and FLOPs per NFE, and runs a job through the runner."""

import pytest

from inference_scaling.config import validate
from inference_scaling.models import load_model
from inference_scaling.runner import run

SIZES = ("scenes_small", "scenes", "scenes_large")  # smallest first
SCENES = ("benchmark=scenes", "verifier=scene_checker", "logger=none", "progress=false")


def test_sizes_compose_load_and_grow(config, one_thread):
    parameters = []
    for name in SIZES:
        cfg = config(f"model={name}", *SCENES, "budget.nfe=14")
        assert cfg.model.name == name and validate(cfg) == 2
        net = load_model(cfg.model).net
        assert (net.image_shape, net.fields, net.skip is not None) == ((1, 16, 16), (6, 2), True)
        parameters.append(sum(p.numel() for p in net.parameters()))
    assert parameters == sorted(set(parameters)), parameters  # small < default < large
    assert parameters[1] == 1_418_753  # the committed default, unchanged


def test_each_size_runs_a_job(config, one_thread):
    gflops = []
    for name in SIZES:
        m = run(config(f"model={name}", *SCENES, "benchmark.per_class=1", "budget.nfe=14"))["metrics"]
        assert m["n_conditions"] == 12 and m["n_candidates"] == 2 and 0.0 <= m["accuracy"] <= 1.0
        assert m["gflops_per_condition"] == pytest.approx(m["gflops_per_nfe"] * 14)  # final render = search's sampler
        gflops.append(m["gflops_per_nfe"])
    assert gflops == sorted(set(gflops)), gflops
