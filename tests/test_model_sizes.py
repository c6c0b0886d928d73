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


def test_weights_saved_in_float16_load_as_the_modules_float32(tmp_path):
    """weights.save(dtype=float16) halves a file; the module loads it back in float32, each value the float16
    rounding of the saved one (how scenes_flow_large.safetensors stays under 10 MiB)."""
    import torch
    from safetensors import safe_open

    from inference_scaling import weights
    from inference_scaling.models.flow_mlp import load_flow
    from inference_scaling.models.scenes import new_flow

    net = new_flow(32, 64, 1)
    weights.save(tmp_path / "full.safetensors", net, net.config())
    weights.save(tmp_path / "half.safetensors", net, net.config(), torch.float16)
    with safe_open(str(tmp_path / "half.safetensors"), framework="pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}
    assert (tmp_path / "half.safetensors").stat().st_size < 0.6 * (tmp_path / "full.safetensors").stat().st_size
    loaded = load_flow(str(tmp_path / "half.safetensors"))
    for (name, saved), (_, back) in zip(net.state_dict().items(), loaded.state_dict().items()):
        assert back.dtype == torch.float32 and torch.equal(back, saved.half().float()), name
