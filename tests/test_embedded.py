"""The committed networks, loading errors, and the IS-oracle's effect on evaluation metrics."""

import re

import pytest
import torch

from inference_scaling import weights
from inference_scaling.config import ConfigError, validate
from inference_scaling.datasets import split_digits
from inference_scaling.models.digits import load_flow
from inference_scaling.models.flow_mlp import FlowMLP
from inference_scaling.models.digits_classifier import load_classifier
from inference_scaling.runner import replay, run
from inference_scaling.search import SEARCHES


def test_committed_classifier_is_accurate_on_held_out_digits():
    (_, _), (x_test, y_test) = split_digits()
    with torch.no_grad():
        accuracy = (load_classifier()(x_test).argmax(-1) == y_test).float().mean().item()
    assert accuracy > 0.97


def test_missing_and_corrupt_weights_fail_with_one_line(tmp_path):
    with pytest.raises(weights.WeightsError, match="does not exist"):
        load_flow(str(tmp_path / "nope.safetensors"))
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(weights.WeightsError, match="not a readable safetensors") as err:
        load_flow(str(corrupt))
    assert "\n" not in str(err.value)
    other = tmp_path / "classifier.safetensors"
    weights.save(other, load_classifier(), {"hidden": 256, "features": 128, "num_classes": 10})
    with pytest.raises(weights.WeightsError, match="does not fit FlowMLP"):
        weights.load_into(FlowMLP, str(other))


def test_is_oracle_search_raises_is_and_its_own_score(config):
    """The paper's IS-oracle finding in miniature: IS and the verifier's score rise with search NFEs."""
    runs = [run(config("logger=none", "progress=false", "benchmark.per_class=30", f"budget.nfe={b}"))["metrics"]
            for b in (3, 12, 48)]
    assert runs[0]["verifier_score"] < runs[1]["verifier_score"] < runs[2]["verifier_score"]
    assert runs[0]["is"] < runs[1]["is"] < runs[2]["is"]
    assert [r["n_candidates"] for r in runs] == [1, 4, 16]
    assert all(r["nfe_search_per_condition"] == r["n_candidates"] * 3 <= r["nfe"] for r in runs)


def test_final_sampler_renders_the_chosen_noise_and_replays(config):
    cfg = config("logger=none", "progress=false", "benchmark.per_class=2", "budget.nfe=9", "model.final_steps=4")
    result = run(cfg)
    assert result["metrics"]["nfe_final_per_condition"] == 7  # 4 Heun steps to 0: 2·4 − 1
    record = result["records"][5]
    again = replay(cfg, 5, record["chosen_index"])
    assert torch.allclose(again[0], result["images"][5], atol=1e-5)


def test_fid_oracle_search_lowers_fid(config):
    """The FID-oracle (set-level: one call scores every condition's candidates) lowers evaluation FID with budget,
    where the IS-oracle raises it."""
    runs = [run(config("logger=none", "progress=false", "benchmark.per_class=30", "verifier=fid_oracle",
                       f"budget.nfe={b}"))["metrics"] for b in (3, 12)]
    assert runs[1]["fid"] < runs[0]["fid"]
    assert runs[1]["verifier_score"] > runs[0]["verifier_score"]


def test_self_supervised_verifier_reads_x0_at_no_extra_cost(config):
    """ssl_digits: scores the x0-prediction at the grid level nearest σ against the final sample; its own score
    rises with budget and the search spends exactly N candidates' NFEs."""
    cfg = ["logger=none", "progress=false", "benchmark.per_class=20", "verifier=ssl_digits", "model.search_steps=4"]
    runs = [run(config(*cfg, f"budget.nfe={b}"))["metrics"] for b in (7, 28)]
    assert runs[0]["verifier_score"] < runs[1]["verifier_score"] <= 1.0
    assert runs[1]["nfe_search_per_condition"] == 28 and runs[1]["verifier_x0_extra_nfe"] == 0
    assert runs[1]["verifier_x0_sigma"] == 0.5  # 4 steps: levels 1, .75, .5, .25; nearest to 0.4 is 0.5


@pytest.mark.parametrize("search", ["zero_order", "evolutionary"])
def test_self_supervised_verifier_with_iterative_searches(config, search):
    """Algorithms whose candidates are full solves from noise pass x0-predictions too: each candidate's score is
    the same function of its noise as under random search, at no extra NFE."""
    cfg = ["logger=none", "progress=false", "benchmark.per_class=3", "verifier=ssl_digits", "model.search_steps=4",
           f"search={search}", "budget.nfe=98"]
    result = run(config(*cfg))
    metrics = result["metrics"]
    assert metrics["nfe_search_per_condition"] <= 98 and metrics["verifier_x0_extra_nfe"] == 0
    assert metrics["verifier_calls"] == metrics["n_candidates"] * 30
    assert 0.0 < metrics["verifier_score"] <= 1.0
    # The winner's score is what random search would give the same noise (random search's candidate 0 is
    # every algorithm's first noise; a winner never scores below it).
    first = run(config(*cfg[:-2], "budget.nfe=7"))["records"]
    assert all(r["search_score"] >= f["search_score"] - 1e-6 for r, f in zip(result["records"], first))


@pytest.mark.parametrize("search", ["paths", "fk_steering"])
def test_self_supervised_verifier_is_refused_where_candidates_are_partial(config, search):
    able = " | ".join(sorted(name for name, kind in SEARCHES.items() if getattr(kind, "passes_x0", False)))
    assert able == "adaptive | evolutionary | random | zero_order"
    with pytest.raises(ConfigError, match=f"search={search} scores partial trajectories; use search="
                                          + re.escape(able)):
        validate(config("verifier=ssl_digits", f"search={search}", "budget.nfe=96"))


def test_self_supervised_verifier_is_refused_where_its_score_would_be_constant(config):
    """On 2 Heun steps the level nearest σ = 0.4 is 0.5, the last (Euler) step, whose x0-prediction is the final
    sample: every score would be 1."""
    with pytest.raises(ConfigError, match="which is 0.5, the last step.*use model.search_steps >= 4"):
        validate(config("verifier=ssl_digits", "budget.nfe=12"))
    with pytest.raises(ConfigError, match=r"verifier.sigma=1.5 must lie in \(0, 1\)"):
        validate(config("verifier=ssl_digits", "model.search_steps=4", "budget.nfe=14", "verifier.sigma=1.5"))
    with pytest.raises(ConfigError, match="which is 0.333333, the last step.*use model.search_steps >= 4"):
        validate(config("verifier=ssl_digits", "model.search_steps=3", "budget.nfe=15"))
    assert validate(config("verifier=ssl_digits", "model.search_steps=4", "budget.nfe=14")) == 2
