"""The published prompt sets (DrawBench, T2I-CompBench, GenEval): their contents, category selection, and metrics
reported per category end to end on a tiny FLUX."""

from __future__ import annotations

import csv
from collections import Counter

import pytest
import torch
from test_flow_t2i import folders, overrides  # noqa: F401 (the tiny pipelines fixture)

from inference_scaling.benchmarks import BENCHMARKS
from inference_scaling.config import ConfigError, validate
from inference_scaling.runner import run

DRAWBENCH = {"Colors": 25, "Conflicting": 10, "Counting": 19, "DALL-E": 20, "Descriptions": 20,
             "Gary Marcus et al.": 10, "Misspellings": 10, "Positional": 20, "Rare Words": 7, "Reddit": 38, "Text": 21}
GENEVAL = {"position": 100, "color_attr": 100, "two_object": 99, "colors": 94, "single_object": 80, "counting": 80}


def conditions(config, name, *extra):
    cfg = config(f"benchmark={name}", *extra)
    return BENCHMARKS[name](cfg.benchmark).conditions()


def test_the_sets_hold_their_published_prompts_and_categories(config):
    drawbench = conditions(config, "drawbench")
    assert len(drawbench.prompts) == 200 and Counter(drawbench.categories) == DRAWBENCH
    assert drawbench.prompts[0] == "A red colored car." and drawbench.ids.tolist() == list(range(200))
    compbench = conditions(config, "t2i_compbench", "benchmark.per_class=1")
    assert Counter(compbench.categories) == {c: 300 for c in ("color", "shape", "texture", "spatial", "non_spatial",
                                                              "complex", "3d_spatial", "numeracy")}
    assert all(p.strip() == p and p for p in compbench.prompts)
    geneval = conditions(config, "geneval", "benchmark.per_class=1")
    assert Counter(geneval.categories) == GENEVAL and geneval.prompts[0] == "a photo of a bench"
    assert len(BENCHMARKS["geneval"](config("benchmark=geneval").benchmark).metadata()) == 553
    assert len(conditions(config, "geneval").prompts) == 4 * 553  # 4 images per prompt, GenEval's protocol


def test_a_category_keeps_the_noises_it_has_in_the_whole_set(config):
    whole = conditions(config, "drawbench", "benchmark.per_class=2")
    counting = conditions(config, "drawbench", "benchmark.per_class=2", "benchmark.categories=[Counting,Text]")
    assert len(counting.prompts) == 2 * (19 + 21) and set(counting.categories) == {"Counting", "Text"}
    position = {int(i): k for k, i in enumerate(whole.ids)}
    assert all(whole.prompts[position[int(i)]] == p for i, p in zip(counting.ids, counting.prompts))


def test_an_unknown_category_is_refused_in_one_line(config):
    with pytest.raises(ConfigError, match=r"benchmark: benchmark.categories has 'Colours', not a drawbench category; "
                                          r"choose from: Colors, Conflicting, Counting"):
        validate(config("model=flux_dev", "benchmark=drawbench", "benchmark.categories=[Colours]", "budget.nfe=28",
                        "verifier=clip_score"))


def test_metrics_are_reported_overall_and_per_category(folders, config, tiny_clip_folder, one_thread):  # noqa: F811
    tiny_flux = [o for o in overrides("flux_dev", folders["dev"]) if not o.startswith("benchmark")]
    cfg = config(*tiny_flux, "model.search_steps=2", "model.final_steps=2", "budget=one_sample", "verifier=clip_score",
                 f"verifier.clip={tiny_clip_folder}", "logger=none", "progress=false", "benchmark=drawbench", "benchmark.categories=[Conflicting,Rare Words]",
                 f"benchmark.metrics=[{{name: clip_score, label: clip, clip: {tiny_clip_folder}}}]")
    result = run(cfg)
    metrics, records = result["metrics"], result["records"]
    assert [r["category"] for r in records] == ["Conflicting"] * 10 + ["Rare Words"] * 7
    for name, key in [("verifier_score", "final_score"), ("metric_clip", "metric_clip")]:
        for category, n in [("Conflicting", 10), ("Rare Words", 7)]:
            mine = [r[key] for r in records if r["category"] == category]
            assert metrics[f"{name}/{category}"] == pytest.approx(sum(mine) / n, rel=1e-6)
        assert metrics[name] == pytest.approx(sum(r[key] for r in records) / 17, rel=1e-6)


def test_a_metric_is_named_by_its_verifier_alone(config):
    from inference_scaling.config import metric_configs

    metrics = metric_configs(config("benchmark=drawbench", "benchmark.metrics=[clip_score,aesthetic]").benchmark)
    assert list(metrics) == ["clip_score", "aesthetic"] and metrics["aesthetic"].name == "aesthetic"
    with pytest.raises(ConfigError, match="must be a verifier's name or its fields"):
        metric_configs(config("benchmark=drawbench", "benchmark.metrics=[3]").benchmark)


def test_the_provenance_note_ships_with_the_files():
    from importlib import resources

    folder = resources.files("inference_scaling") / "assets" / "benchmarks"
    note = (folder / "PROVENANCE.md").read_text()
    assert "Karine-Huang/T2I-CompBench" in note and "djghosh13/geneval" in note and "Saharia" in note
    assert "MIT" in (folder / "geneval" / "LICENSE").read_text()
    rows = list(csv.DictReader((folder / "drawbench.csv").open(encoding="utf-8", newline="")))
    assert len(rows) == 200 and torch.tensor([len(r["prompt"]) > 0 for r in rows]).all()
