"""One command per figure (inference_scaling.figures): every figure's smoke chain on tiny random models, the full-scale
experiment configs, and the command's refusals."""

import csv
import json
import sys
from pathlib import Path

import pytest
from hydra.core.global_hydra import GlobalHydra
from tiny_models import smoke_models

from inference_scaling import figures
from inference_scaling.__main__ import CONF_DIR
from inference_scaling.config import validate
from inference_scaling.figures import FIGURES

EXPERIMENTS = sorted(p.stem for p in (Path(CONF_DIR) / "experiment").glob("*.yaml"))


@pytest.fixture(scope="module")
def smoke_root(tmp_path_factory):
    return smoke_models(tmp_path_factory.mktemp("smoke_models"))


@pytest.fixture
def in_process(smoke_root, tmp_path, monkeypatch, one_thread):
    """Each line's multirun through the CLI's entry point in this process (the command runs them as processes)."""
    from inference_scaling.__main__ import main

    monkeypatch.setenv("INFERENCE_SCALING_SMOKE", str(smoke_root))
    monkeypatch.chdir(tmp_path)
    commands = []

    def launch(command):
        assert command[:3] == [sys.executable, "-m", "inference_scaling"]
        commands.append(command)
        monkeypatch.setattr(sys, "argv", ["inference-scaling", *command[3:]])
        try:
            main()
        except SystemExit as exit_:
            return exit_.code
        finally:
            GlobalHydra.instance().clear()
        return 0

    monkeypatch.setattr(figures, "launch", launch)
    return commands


def finished_jobs(sweep: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(sweep.glob("*/metrics.json"))]


JOBS = {"fig1_steps": 2, "fig1_random_is": 1, "fig1_random_fid": 1, "fig4_clip_zeroshot": 2, "fig4_dino_linear": 2,
        "fig5_ssl_dino": 2, "fig6_zero_order": 2, "fig6_paths": 1, "fig11_no_search": 3, "fig11_search": 3,
        "table2_no_search": 1, "table2_search": 6, "table1_no_search": 1, "table1_search": 2}


@pytest.mark.parametrize("name", list(FIGURES))
def test_each_figure_runs_its_smoke_chain_and_draws_it(name, in_process, tmp_path, capsys):
    out = tmp_path / name
    figures.main([name, str(out), "--smoke"])
    figure = FIGURES[name]
    assert [c[4] for c in in_process] == [f"+experiment={line}_smoke" for line in figure.lines]
    for line in figure.lines:
        jobs = finished_jobs(out / f"{line}_smoke")
        assert len(jobs) == JOBS[line], line
        assert all(job["gflops_per_nfe"] > 0 for job in jobs)
    printed = capsys.readouterr().out
    if figure.report == "table":
        assert printed.strip().endswith(f"{name}: {out / 'table.png'}")
        rows = list(csv.DictReader((out / "table.csv").open()))
        assert rows[0]["search verifier"] == "no search" and len(rows) == 1 + JOBS[figure.lines[1]]
        return
    assert printed.strip().endswith(f"{name}: {out / 'scaling.png'}") and (out / "scaling.png").stat().st_size
    rows = list(csv.DictReader((out / "scaling.csv").open()))
    assert len(rows) == sum(JOBS[line] for line in figure.lines)
    if figure.x == "gflops":  # Figure 11's sizes share the tiny architecture here, so only their labels differ
        assert {r["line"] for r in rows} >= {"sit_b2, no search", "sit_xl2, random search / dino_linear"}


@pytest.mark.parametrize("experiment", [e for e in EXPERIMENTS if not e.endswith("_smoke")])
def test_each_full_scale_experiment_composes_and_validates(experiment, config, monkeypatch):
    """The paper-scale configs as a GPU run gets them (their sweeps' first values), checks that need the weights
    left out: no checkpoint can be downloaded here."""
    cfg = config(f"+experiment={experiment}")
    monkeypatch.setattr("inference_scaling.config._check_files", lambda cfg: None, raising=False)
    assert cfg.label and cfg.benchmark.name in {"imagenet", "drawbench", "t2i_compbench"}
    if cfg.benchmark.name == "imagenet":
        assert cfg.benchmark.per_class == 50 and cfg.benchmark.inception  # FID-50K
    assert f"{experiment}_smoke" in EXPERIMENTS


def test_list_names_every_figure_and_its_lines(capsys):
    figures.main(["--list"])
    out = capsys.readouterr().out
    for name, figure in FIGURES.items():
        assert f"{name}: {figure.title}" in out and ", ".join(figure.lines) in out


def test_an_unknown_figure_is_refused_naming_the_figures(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_:
        figures.main(["fig2", str(tmp_path / "out")])
    assert exit_.value.code == 2
    assert "invalid choice: 'fig2' (choose from 'fig1', 'fig4', 'fig6', 'fig11', 'table2', 'table1')" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_failing_line_stops_the_figure_in_one_line(in_process, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        figures.main(["fig1", str(tmp_path / "out"), "--smoke", "budget.nfe=1"])
    assert exit_.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: the multirun of line fig1_steps_smoke exited with 2")
    assert len(in_process) == 1 and not (tmp_path / "out" / "scaling.png").exists()


def test_a_figure_reaches_the_study_groups_wandb_report(in_process, tmp_path, monkeypatch):
    """Outside --smoke and logger=none the figure goes to W&B: one group for every line's jobs, fixed before the first
    (the smoke jobs themselves log nowhere here), and the table with its heatmap in the group's run "report"."""
    import re

    import wandb
    from test_wandb_study import offline_ids

    from inference_scaling.reporting.wandb_logger import study_group

    for var in ("WANDB_DIR", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb-home"))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    inits, init = [], wandb.init
    monkeypatch.setattr(wandb, "init", lambda **kwargs: inits.append(kwargs) or init(**kwargs))
    out = tmp_path / "table2"
    lines = [f"{line}_smoke" for line in FIGURES["table2"].lines]
    monkeypatch.setitem(FIGURES, "table2", figures.Figure("t", tuple(lines), report="table"))  # the smoke twins, as lines
    assert figures.logs_to_wandb([], smoke=False) and not figures.logs_to_wandb(["logger=none"], smoke=False)
    figures.main(["table2", str(out)])
    assert [c[4] for c in in_process] == [f"+experiment={line}" for line in lines]
    assert offline_ids(out) == {(out / ".wandb_report_id").read_text()}
    [report] = inits
    assert (report["group"], report["name"]) == (study_group(out), "report")
    media = next((out / "wandb").glob("offline-run-*")) / "files" / "media"
    assert {re.sub(r"_0_[0-9a-f]+\.table\.json$", "", p.name) for p in (media / "table").rglob("*.table.json")} == {
        "verifier_metric_table"}
    assert [p.name.split("_")[0] for p in (media / "images").iterdir()] == ["verifier"]
