"""The search-verifier × evaluation-metric table (the paper's Table 2) from a study of real jobs."""

from __future__ import annotations

import csv

import pytest
from omegaconf import OmegaConf

from inference_scaling.reporting.records import write_job
from inference_scaling.reporting.table import BASELINE, build, collect, main
from inference_scaling.runner import run

METRICS = "benchmark.metrics=[classifier_prob,{name: classifier_logit, label: logit}]"


@pytest.fixture(scope="module")
def study(tmp_path_factory, one_thread):
    from conftest import make_config

    folder = tmp_path_factory.mktemp("study")
    jobs = {"none": ["budget=one_sample"], "prob": ["budget.nfe=6"], "prob12": ["budget.nfe=12"],
            "logit": ["verifier=classifier_logit", "budget.nfe=12"], "zo": ["search=zero_order", "budget.nfe=15"]}
    for name, extra in jobs.items():
        cfg = make_config("logger=none", "progress=false", "benchmark.per_class=1", METRICS, *extra)
        write_job(folder / name, OmegaConf.to_yaml(OmegaConf.structured(cfg)), run(cfg), save_images=False)
    return folder


def test_rows_are_search_verifiers_at_their_largest_budget_with_the_no_search_row_first(study):
    metrics, rows = build(collect(study))
    assert metrics == ["classifier_prob", "logit"]
    assert [name for name, _ in rows] == [BASELINE, "classifier_logit (random, 12 NFEs)",
                                          "classifier_prob (random, 12 NFEs)", "classifier_prob (zero_order, 15 NFEs)"]
    base, logit_search = rows[0][1], rows[1][1]
    assert logit_search["logit"] > base["logit"]  # searching with a verifier raises its own metric
    assert [name for name, _ in build(collect(study), nfe=6)[1]] == [BASELINE, "classifier_prob (random, 6 NFEs)"]


def test_the_command_writes_scores_gains_and_a_heatmap(study, capsys):
    main([str(study)])
    out = capsys.readouterr().out
    assert "Gain over no search (%)" in out and (study / "table.png").stat().st_size > 0
    rows = {r["search verifier"]: r for r in csv.DictReader((study / "table.csv").open())}
    base, row = rows[BASELINE], rows["classifier_prob (random, 12 NFEs)"]
    gain = 100 * (float(row["classifier_prob"]) - float(base["classifier_prob"])) / abs(float(base["classifier_prob"]))
    assert float(row["gain_classifier_prob"]) == pytest.approx(gain)


def test_a_study_without_metrics_is_refused_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([str(tmp_path)])
    assert exit_.value.code == 2 and "benchmark.metrics=[...]" in capsys.readouterr().err
