"""The scenes benchmark end to end on the committed model and verifiers, with fixed seeds."""

import subprocess
import sys

import pytest
import torch

from inference_scaling import scenes
from inference_scaling.models.scenes import load_classifier
from inference_scaling.runner import run

SCENES = ("model=scenes", "benchmark=scenes", "logger=none", "progress=false")
NO_SEARCH_BAND = (0.2, 0.8)  # documented in README: the committed model's no-search accuracy, well below 1


def metrics(config, *overrides):
    return run(config(*SCENES, *overrides))["metrics"]


def test_learned_verifier_is_accurate_on_clean_held_out_scenes():
    conditions = scenes.balanced_conditions(100)
    images = scenes.generate(conditions, seed=99)
    with torch.no_grad():
        count_logits, relation_logits = load_classifier()(images)
    assert (count_logits.argmax(-1) == conditions[:, 0]).float().mean() > 0.97
    assert (relation_logits.argmax(-1) == conditions[:, 1]).float().mean() > 0.97


def test_no_search_accuracy_leaves_headroom(config):
    m = metrics(config, "budget=one_sample", "benchmark.per_class=25", "verifier=scene_checker")
    assert m["n_candidates"] == 1
    assert NO_SEARCH_BAND[0] <= m["accuracy"] <= NO_SEARCH_BAND[1], m["accuracy"]
    assert {"count_accuracy", "relation_accuracy", "checker_score", "fid", "kid"} <= set(m)


def test_checker_search_raises_accuracy_at_every_budget(config):
    accuracy = [metrics(config, "verifier=scene_checker", "benchmark.per_class=10", f"budget.nfe={b}")["accuracy"]
                for b in (7, 28, 112)]
    assert accuracy[0] < accuracy[1] < accuracy[2], accuracy


def test_learned_verifier_score_rises_with_budget(config):
    runs = [metrics(config, "verifier=scene_classifier", "benchmark.per_class=10", f"budget.nfe={b}") for b in (7, 28, 112)]
    own = [r["verifier_score"] for r in runs]
    assert own[0] < own[1] < own[2], own


@pytest.mark.parametrize("search,budget", [("random", 14), ("zero_order", 35), ("paths", 40), ("fk_steering", 40),
                                           ("evolutionary", 98), ("adaptive", 14)])
def test_every_search_runs_on_scenes(config, search, budget):
    m = metrics(config, f"search={search}", f"budget.nfe={budget}", "verifier=scene_checker", "benchmark.per_class=1")
    assert 0 < m["nfe_search_per_condition"] <= budget
    assert m["n_conditions"] == 12 and 0.0 <= m["accuracy"] <= 1.0


def test_prompts_select_conditions(config):
    cfg = config(*SCENES, "benchmark.prompts=['3 blocks, most on the left','1 block, most on the right']",
                 "benchmark.per_class=2", "budget.nfe=7", "verifier=scene_checker")
    result = run(cfg)
    assert result["prompts"] == ["3 blocks, most on the left", "1 block, most on the right"] * 2


@pytest.mark.parametrize("verifier", ["scene_checker", "scene_classifier"])
def test_cli_end_to_end_with_each_verifier(tmp_path, verifier):
    proc = subprocess.run([sys.executable, "-m", "inference_scaling", *SCENES, f"verifier={verifier}",
                           "benchmark.per_class=1", "budget.nfe=14", f"hydra.run.dir={tmp_path}"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "metrics.json").exists() and (tmp_path / "samples.png").exists()
    assert "most on the" in (tmp_path / "results.csv").read_text()


@pytest.mark.parametrize("override,message", [
    ("benchmark.counts=[2,7]", "error: benchmark: count 7 is out of range; counts are 1..6"),
    ("benchmark.relations=[left,above]", "error: benchmark: unknown relation 'above'; choose one of: left, right"),
    ("benchmark.prompts=['nine blocks']", "error: benchmark: prompt 'nine blocks' does not follow the grammar"),
])
def test_bad_conditions_get_one_line(tmp_path, override, message):
    proc = subprocess.run([sys.executable, "-m", "inference_scaling", *SCENES, "verifier=scene_checker", override,
                           f"hydra.run.dir={tmp_path / 'run'}"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), proc.stderr
    assert not (tmp_path / "run").exists()
