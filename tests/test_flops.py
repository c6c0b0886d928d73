"""Model FLOPs per NFE (inference_scaling.flops), the GFLOPs metrics of a job and the GFLOPs axis of the report."""

import json

import pytest
import torch
from test_report_status import job

from inference_scaling.flops import gflops_per_nfe
from inference_scaling.reporting.curves import collect, main, series
from inference_scaling.runner import run


class LinearDenoiser(torch.nn.Module):
    """v = W·[x, c]: 2·(in·out) FLOPs a sample, whatever the batch."""

    def __init__(self, features: int, cond: int):
        super().__init__()
        self.net = torch.nn.Linear(features + cond, features, bias=False)

    def forward(self, x, sigma, cond):
        return self.net(torch.cat([x.flatten(1), cond], 1)).view_as(x)


def test_gflops_per_nfe_counts_one_samples_matmuls():
    denoiser = LinearDenoiser(features=48, cond=5)
    assert gflops_per_nfe(denoiser, (3, 4, 4), torch.zeros(1, 5)) == pytest.approx(2 * 53 * 48 / 1e9)


def test_a_job_writes_its_gflops_per_nfe_and_per_condition(config, one_thread):
    cfg = config("model=scenes", "benchmark=scenes", "verifier=scene_checker", "benchmark.per_class=1",
                 "benchmark.counts=[1,2]", "budget.nfe=14", "logger=none", "progress=false")
    metrics = run(cfg)["metrics"]
    params = 1_418_753  # the scenes flow model (README): about 2 FLOPs per parameter a sample
    assert 1.5 * params / 1e9 < metrics["gflops_per_nfe"] < 2.5 * params / 1e9
    nfes = metrics["nfe_search_per_condition"] + metrics["nfe_final_per_condition"]
    assert metrics["gflops_per_condition"] == pytest.approx(metrics["gflops_per_nfe"] * nfes)


def test_report_draws_curves_against_gflops(tmp_path, capsys):
    for nfe, (gflops, accuracy) in {3: (1.0, 0.2), 6: (2.0, 0.4)}.items():
        job(tmp_path / "small" / str(nfe), metrics={"nfe": nfe, "accuracy": accuracy, "gflops_per_nfe": gflops / nfe,
                                                   "gflops_per_condition": gflops}, label="small")
    job(tmp_path / "large" / "3", metrics={"nfe": 3, "accuracy": 0.5, "gflops_per_nfe": 4.0 / 3,
                                           "gflops_per_condition": 4.0}, label="large")
    rows = collect(tmp_path)
    assert series(rows, "accuracy", "gflops") == {"large": [(4.0, 0.5)], "small": [(1.0, 0.2), (2.0, 0.4)]}
    assert series(rows, "accuracy") == {"large": [(3, 0.5)], "small": [(3, 0.2), (6, 0.4)]}
    main([str(tmp_path), "--x", "gflops"])
    assert (tmp_path / "scaling.png").stat().st_size > 0
    assert "gflops_per_condition" in (tmp_path / "scaling.md").read_text()
    with pytest.raises(SystemExit):
        main([str(tmp_path), "--x", "flops"])
    assert "invalid choice: 'flops'" in capsys.readouterr().err
    assert json.loads((tmp_path / "large" / "3" / "metrics.json").read_text())["accuracy"] == 0.5
