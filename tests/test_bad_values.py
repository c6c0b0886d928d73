"""Bad values are refused with one line naming the value and what is accepted: non-finite floats, out-of-range
search parameters, seeds and ints beyond 64 bits, sets too large to hold, NaN weights and non-finite model output."""

import json

import pytest
import torch
from safetensors.torch import save_file
from test_cli import cli

from inference_scaling import weights
from inference_scaling.config import ConfigError, validate
from inference_scaling.models.flow_mlp import FlowMLP
from inference_scaling.nfe import NFECounter, NonFiniteError
from inference_scaling.sampling import euler, linear_sigmas

SSL = ["verifier=ssl_digits", "model.search_steps=4", "budget.nfe=14"]  # x0 read before the grid's last step
SCENES = ["model=scenes", "benchmark=scenes", "verifier=scene_checker"]


@pytest.mark.parametrize("overrides,message", [
    # Non-finite floats, found by walking every typed group, whichever option is selected.
    (["model.guidance=nan"], "model.guidance=nan must be a finite number"),
    (["model.guidance=inf"], "model.guidance=inf must be a finite number"),
    (["model.guidance=-inf"], "model.guidance=-inf must be a finite number"),
    (["search=zero_order", "search.lam=nan", "budget.nfe=96"], "search.lam=nan must be a finite number"),
    (["search=paths", "search.delta_b=inf", "budget.nfe=96"], "search.delta_b=inf must be a finite number"),
    (["search=evolutionary", "search.mutation=nan", "budget.nfe=96"], "search.mutation=nan must be a finite number"),
    ([*SSL, "verifier.sigma=inf"], "verifier.sigma=inf must be a finite number"),
    (["verifier=llm_grader", "verifier.temperature=nan"], "verifier.temperature=nan must be a finite number"),
    (["verifier=ensemble", "verifier.members.aesthetic=inf"], "verifier.members.aesthetic=inf must be a finite"),
    (["benchmark.metrics=[{name: clip_score, scale: nan}]"], "benchmark.metrics[0].scale=nan must be a finite"),
    # Search parameters out of range.
    (["search=fk_steering", "search.lam=0", "budget.nfe=96"], "search.lam=0.0 must be > 0"),
    (["search=fk_steering", "search.lam=-1", "budget.nfe=96"], "search.lam=-1.0 must be > 0"),
    (["search=fk_steering", "search.resamplings=1001", "budget.nfe=96"],
     "search.resamplings=1001 must be in [1, 1000]"),
    (["search=paths", "search.delta_b=0.1001", "budget.nfe=96"],
     "search.delta_b − search.delta_f = 0.0001 takes 5000 rounds from sigma_start=0.5; at most 1000"),
    (["search=evolutionary", "search.mutation=1.5", "budget.nfe=96"], "search.mutation=1.5 must be in (0, 1]"),
    # Seeds and 64-bit ints.
    (["seed=18446744073709551616"], "seed=18446744073709551616 must lie in [0, 2**63)"),
    (["seed=9223372036854775808"], "seed=9223372036854775808 must lie in [0, 2**63)"),
    (["seed=-1"], "seed=-1 must lie in [0, 2**63)"),
    ([*SCENES, "benchmark.reference_seed=-3"], "benchmark.reference_seed=-3 must lie in [0, 2**63)"),
    (["budget.nfe=18446744073709551616"], "budget.nfe=18446744073709551616 does not fit in 64 bits"),
    # Sets too large to hold, refused before they are built.
    (["benchmark.per_class=1000000000000"], "benchmark.per_class=1000000000000 gives 10,000,000,000,000 "
                                            "conditions (10 per class); a job holds at most 10**7: use "
                                            "benchmark.per_class <= 1,000,000"),
    (["benchmark=imagenet", "model=sit_xl2", "verifier=clip_zeroshot", "budget=one_sample",
      "benchmark.per_class=100000"], "benchmark.per_class=100000 gives 100,000,000 conditions (1000 per class)"),
    (["budget.nfe=100000000000"], "budget.nfe=100000000000 buys 33,333,333,333 candidates for each of 1,000 "
                                  "conditions"),
])
def test_bad_value_is_refused_with_one_line(config, overrides, message):
    with pytest.raises(ConfigError) as err:
        validate(config(*overrides))
    assert str(err.value).startswith(message), str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("overrides", [
    ["seed=9223372036854775807"], ["model.guidance=2.5"], ["search=fk_steering", "search.lam=0.5", "budget.nfe=96"],
    ["search=paths", "search.delta_b=0.2", "budget.nfe=96"], ["search=fk_steering", "search.resamplings=1000",
                                                              "budget.nfe=100000"],
])
def test_values_at_the_edge_of_their_range_are_accepted(config, overrides):
    assert validate(config(*overrides)) >= 1


@pytest.mark.parametrize("override,message", [
    ("model.guidance=nan", "error: model.guidance=nan must be a finite number"),
    ("seed=18446744073709551616", "error: seed=18446744073709551616 must lie in [0, 2**63)"),
    ("benchmark.per_class=1000000000000", "error: benchmark.per_class=1000000000000 gives"),
])
def test_cli_refuses_bad_value_before_any_folder(tmp_path, override, message):
    proc = cli(override, "logger=none", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not (tmp_path / "run").exists() and not (tmp_path / "outputs").exists()


def test_weights_with_nan_are_refused_naming_the_tensor(tmp_path):
    tensors, config = weights.load("package:digits_flow.safetensors")
    name = sorted(tensors)[1]
    tensors[name] = tensors[name].clone()
    tensors[name].view(-1)[3] = float("nan")
    bad = tmp_path / "nan.safetensors"
    save_file(tensors, str(bad), metadata={"config": json.dumps(config)})
    assert isinstance(weights.load_into(FlowMLP, "package:digits_flow.safetensors"), FlowMLP)  # a finite one loads
    with pytest.raises(weights.WeightsError, match=rf"weights file '{bad}' holds NaN or inf in tensor '{name}'"):
        weights.load_into(FlowMLP, str(bad))


class NanAt:
    """A denoiser whose velocity is finite except at one level."""

    def __init__(self, sigma: float):
        self.sigma = sigma

    def __call__(self, x, sigma, cond):
        v = x.clone()
        v[sigma == self.sigma] = float("nan")
        return v


def test_non_finite_model_output_stops_at_the_step_that_made_it():
    counter = NFECounter(NanAt(0.5))
    x = torch.randn(3, 4)
    with pytest.raises(NonFiniteError, match=r"^the model returned non-finite values at sigma=0.5 \(NFE call 3, "
                                              r"batch row 0\)"):
        euler(counter, x, linear_sigmas(4), torch.zeros(3))  # levels 1, 0.75, 0.5: the third call
    assert counter.count == 9
    assert torch.isfinite(euler(NFECounter(NanAt(0.3)), x, linear_sigmas(4), torch.zeros(3))).all()
