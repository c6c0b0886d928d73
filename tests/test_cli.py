"""The command line: every config option composes, a multirun writes its record and figure, bad input fails cleanly."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from inference_scaling.__main__ import CONF_DIR, precheck
from inference_scaling.config import validate
from inference_scaling.search import SEARCHES
from inference_scaling.verifiers import VERIFIERS

ROOT = Path(__file__).resolve().parents[1]
GROUPS = ["model", "verifier", "search", "budget", "logger", "benchmark"]


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_SILENT": "true", "HYDRA_FULL_ERROR": "0"}
    return subprocess.run([sys.executable, "-m", "inference_scaling", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


SCENES = ["model=scenes", "benchmark=scenes", "verifier=scene_checker"]
SCENES_OPTIONS = {("model", "scenes"), ("model", "scenes_small"), ("model", "scenes_large"), ("benchmark", "scenes"),
                  ("verifier", "scene_checker"), ("verifier", "scene_classifier")}
IMAGENET = ["benchmark=imagenet", "verifier=clip_zeroshot", "budget=one_sample"]  # one SiT sample: 50 NFEs
NO_PUBLIC_SIT = "model.weights=https://example.org/SiT.pt"  # SiT-L/2, B/2: no public weights; a URL is fetched on load
IMAGENET_OPTIONS = {("model", "sit_xl2"): IMAGENET, ("model", "sit_l2"): [*IMAGENET, NO_PUBLIC_SIT],
                    ("model", "sit_b2"): [*IMAGENET, NO_PUBLIC_SIT], ("benchmark", "imagenet"): ["model=sit_xl2", *IMAGENET[1:]],
                    ("model", "dit_xl2"): IMAGENET}
PROMPTS = ["benchmark=prompts", "benchmark.prompts=[a red cube]", "verifier=clip_score", "budget=one_sample"]
PROMPTS_OPTIONS = {**{("model", m): PROMPTS for m in ("flux_dev", "flux_schnell", "sd35_medium", "pixart_sigma")},
                   ("benchmark", "prompts"): ["model=flux_dev", *PROMPTS[1:]],
                   **{("benchmark", b): ["model=flux_dev", *PROMPTS[2:]] for b in ("drawbench", "t2i_compbench", "geneval")}}


@pytest.mark.parametrize("group,option", [(g, p.stem) for g in GROUPS for p in sorted((Path(CONF_DIR) / g).glob("*.yaml"))])
def test_every_config_option_composes_and_validates(config, group, option):
    base = SCENES if (group, option) in SCENES_OPTIONS else IMAGENET_OPTIONS.get((group, option),
                                                                                  PROMPTS_OPTIONS.get((group, option), []))
    if group == "search":
        base = ["budget.nfe=96"]  # the smallest budget some algorithms accept on the default sampler is 42
    if option.startswith("ssl_"):
        base = ["model.search_steps=4", "budget.nfe=14"]  # the x0-prediction must come before the last step
    cfg = config(*base, f"{group}={option}")
    assert validate(cfg) >= 1
    if group not in ("budget", "logger"):
        assert getattr(cfg, group).name == option


def test_multirun_writes_records_and_scaling_figure(tmp_path):
    sweep = tmp_path / "sweep"
    proc = cli("-m", "budget.nfe=3,9", "benchmark.per_class=3", "progress=false", f"hydra.sweep.dir={sweep}",
               cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    jobs = sorted(p.parent for p in sweep.rglob("metrics.json"))
    assert len(jobs) == 2
    for job, nfe in zip(jobs, (3, 9)):
        metrics = json.loads((job / "metrics.json").read_text())
        assert metrics["nfe"] == nfe and metrics["n_candidates"] == nfe // 3
        assert {"is", "fid", "kid", "precision", "recall", "accuracy", "verifier_score"} <= set(metrics)
        rows = list(csv.DictReader((job / "results.csv").open()))
        assert len(rows) == 30 and all(int(r["chosen_index"]) < nfe // 3 for r in rows)
        assert (job / "samples.png").read_bytes()[:4] == b"\x89PNG"
        assert "budget:\n  nfe: %d" % nfe in (job / "config.yaml").read_text()
        assert list((job / "wandb").glob("offline-run-*")), "W&B offline run missing"
    report = subprocess.run([sys.executable, "-m", "inference_scaling.reporting.curves", str(sweep)],
                            capture_output=True, text=True, cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    assert (sweep / "scaling.png").read_bytes()[:4] == b"\x89PNG"
    table = list(csv.DictReader((sweep / "scaling.csv").open()))
    assert [int(r["nfe"]) for r in table] == [3, 9]


@pytest.mark.parametrize("override,message", [
    ("search=beam", "error: unknown search 'beam'; choose one of: " + ", ".join(sorted(SEARCHES))),
    ("verifier=clip", "error: unknown verifier 'clip'; choose one of: " + ", ".join(sorted(VERIFIERS))),
    ("budget.nfee=3", "error: unknown config key 'budget.nfee'; accepted keys in budget: nfe"),
    ("budget.nfe=abc", "error: bad override budget.nfe=abc: Value 'abc' of type 'str' could not be converted to Integer"),
    ("budget.nfe=0", "error: budget.nfe=0 must be a positive number of NFEs per condition"),
    ("budget.nfe=-4", "error: budget.nfe=-4 must be a positive number of NFEs per condition"),
    ("budget.nfe=2", "error: budget.nfe=2 is below the cost of one sample (3 NFEs"),
    ("search.max_batch_size=0", "error: search.max_batch_size=0 must be >= 1"),
    ("model.solver=rk4", "error: model.solver='rk4' is not a solver; choose one of: euler, heun"),
    ("model.weights=/nonexistent/flow.safetensors", "error: model.weights: weights file '/nonexistent/flow.safetensors'"),
    ("model=scenes", "error: model=scenes takes scenes conditions but benchmark=digits gives digits conditions; models for it: digits"),
    ("verifier=scene_checker", "error: verifier=scene_checker does not score benchmark=digits; it scores: scenes"),
])
def test_bad_input_is_refused_before_anything_is_written(tmp_path, override, message):
    proc = cli("-m", "budget.nfe=3,6", override, f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), proc.stderr
    assert not (tmp_path / "sweep").exists() and not (tmp_path / "outputs").exists()


@pytest.mark.parametrize("search,budget", [("zero_order", 15), ("paths", 10), ("fk_steering", 10), ("evolutionary", 42)])
def test_each_search_runs_end_to_end_and_records_its_lineage(tmp_path, search, budget):
    proc = cli(f"search={search}", f"budget.nfe={budget}", "benchmark.per_class=1", "logger=none", "progress=false",
               "model.final_steps=3", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert 0 < metrics["nfe_search_per_condition"] <= budget
    # Rendered from the lineage with 3 Heun steps: 5 NFEs from one initial noise; a path that is renoised on
    # the way (paths, FK steering) is re-solved segment by segment, which costs at least that.
    if search in ("zero_order", "evolutionary"):
        assert metrics["nfe_final_per_condition"] == 5
    else:
        assert metrics["nfe_final_per_condition"] >= 5
    lineage = [json.loads(line) for line in (tmp_path / "run" / "lineage.jsonl").read_text().splitlines()]
    assert [entry["condition_id"] for entry in lineage] == list(range(10))


@pytest.mark.parametrize("override,message", [
    ("search=zero_order", "error: budget.nfe=12 buys 4 sample(s); zero-order search needs 1 + N = 5"),
    ("search=evolutionary", "error: budget.nfe=12"),
    ("search.n=0", "error: unknown config key 'search.n'"),
])
def test_search_plans_are_checked_before_any_job(tmp_path, override, message):
    proc = cli(override, "budget.nfe=12", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[0].startswith(message), proc.stderr
    assert not (tmp_path / "run").exists()


def test_bad_algorithm_parameter_is_refused(tmp_path):
    proc = cli("search=zero_order", "search.n=0", "budget.nfe=96", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: search.n=0 must be >= 1 neighbour per iteration", proc.stderr


def test_one_sample_budget_follows_the_sampler(config):
    assert config("budget=one_sample").budget.nfe == 3  # 2 Heun steps: 2·2 − 1
    assert config("budget=one_sample", "model.search_steps=8", "model.solver=euler").budget.nfe == 8
    assert config("budget=one_sample", "model.guidance=2.0").budget.nfe == 6  # guidance doubles every evaluation


def test_a_sweep_value_below_the_cost_fails_the_whole_sweep_up_front():
    with pytest.raises(Exception, match="budget.nfe=1 is below the cost"):
        precheck(["budget.nfe=3,1"])
    assert precheck(["budget.nfe=3,6", "model.search_steps=1,2"]) == 4


def test_corrupt_weights_fail_with_one_line_and_no_results(tmp_path):
    corrupt = tmp_path / "flow.safetensors"
    corrupt.write_bytes(os.urandom(64))
    proc = cli(f"model.weights={corrupt}", "logger=none", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]  # one line
    assert proc.stderr.startswith(f"error: model.weights: weights file '{corrupt}' is not a readable")
    assert not (tmp_path / "run").exists()  # refused before Hydra made the job's folder
