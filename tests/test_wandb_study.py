"""W&B: one group per study, a job's run resumed under its id, the report as a run of the group (offline)."""

import json
import re
from pathlib import Path

import pytest
import wandb
from omegaconf import OmegaConf

from inference_scaling.config import WandbConfig
from inference_scaling.reporting import curves, wandb_logger
from inference_scaling.reporting.wandb_logger import (REDACTED, finish_job, job_run_id, log_progress, redact, start_job,
                                                      study_group)


@pytest.fixture
def inits(tmp_path, monkeypatch):
    """wandb offline, with its own settings and caches under tmp_path and no key; the arguments of each wandb.init
    (the offline transaction log is written by a background service, so read the arguments rather than the file)."""
    for var in ("WANDB_DIR", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb-home"))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    calls, init = [], wandb.init
    monkeypatch.setattr(wandb, "init", lambda **kwargs: calls.append(kwargs) or init(**kwargs))
    return calls


def offline_ids(folder):
    """The run ids of the offline runs in `folder`/wandb: folders offline-run-<time>-<id>, and -1, -2, ... after
    that for a run started again within the same second."""
    return {re.fullmatch(r"offline-run-\d{8}_\d{6}-([a-z0-9]+)(-\d+)?", path.name).group(1)
            for path in (folder / "wandb").glob("offline-run-*")}


def test_a_study_folder_keeps_one_group_shared_with_its_sweeps(tmp_path):
    study, other = tmp_path / "study", tmp_path / "other"
    group = study_group(study)
    assert re.fullmatch(r"study-[0-9a-f]{8}", group)
    assert study_group(study) == group == (study / ".wandb_group").read_text()
    assert study_group(study / "steps") == group and study_group(study / "a" / "b" / "c") == group
    assert study_group(study / "a" / "b" / "c" / "d") != group  # more than 3 levels down: a study of its own
    assert study_group(other) != group and study_group(other).startswith("other-")


def test_a_writer_that_lost_the_race_keeps_the_first_group(tmp_path, monkeypatch):
    (tmp_path / ".wandb_group").write_text("sweep-00000001")  # the first writer's, written after our check
    monkeypatch.setattr(Path, "exists", lambda self: False)  # our check saw no file yet
    assert study_group(tmp_path) == "sweep-00000001"
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == [".wandb_group"]  # kept, and no temporary file left


def test_group_command_prints_the_group_for_shell_scripts(tmp_path, capsys):
    wandb_logger.main(["group", str(tmp_path / "out")])  # the study folder need not exist yet
    assert capsys.readouterr().out == study_group(tmp_path / "out") + "\n"


def test_a_job_folder_keeps_its_run_id(tmp_path):
    run_id = job_run_id(tmp_path / "a")
    assert re.fullmatch(r"[a-z0-9]{16}", run_id) and job_run_id(tmp_path / "a") == run_id
    assert job_run_id(tmp_path / "b") != run_id


def test_secrets_are_redacted_at_any_depth():
    config = {"verifier": {"name": "llm_grader", "api_key_env": "OPENAI_API_KEY", "tokenizer": "bert",
                           "api_key": "sk-123"},
              "HF_TOKEN": "hf_abc", "metrics": [{"Client_Secret": "s", "nfe": 3, "db-password": "p"}],
              "budget": {"nfe": 6}}
    assert redact(config) == {"verifier": {"name": "llm_grader", "api_key_env": "OPENAI_API_KEY", "tokenizer": "bert",
                                           "api_key": REDACTED},
                              "HF_TOKEN": REDACTED, "metrics": [{"Client_Secret": REDACTED, "nfe": 3,
                                                                 "db-password": REDACTED}],
                              "budget": {"nfe": 6}}


def test_a_restarted_job_resumes_its_run_without_secrets(tmp_path, inits):
    out = tmp_path / "job"
    out.mkdir()
    config = {"budget": {"nfe": 6}, "hf_token": "hf_do_not_log_me"}
    first = start_job(WandbConfig(), config, out, "study-0123abcd", "line-nfe6")
    log_progress(first, 1, 2)
    first.finish()  # the job is killed after one of its two chunks
    second = start_job(WandbConfig(), config, out, "study-0123abcd", "line-nfe6")
    assert second.id == first.id == job_run_id(out) and second.group == "study-0123abcd"
    log_progress(second, 2, 2)
    finish_job(second, {"nfe": 6, "accuracy": 0.5}, out)
    assert offline_ids(out) == {job_run_id(out)}
    assert [(i["id"], i["resume"], i["config"]) for i in inits] == [
        (job_run_id(out), "allow", {"budget": {"nfe": 6}, "hf_token": REDACTED})] * 2


def test_report_logs_table_line_plots_and_figure_in_the_study_group(tmp_path, inits):
    study = tmp_path / "study"
    for line, nfe, fid in (("a", 3, 40.0), ("a", 6, None), ("a", 12, 20.0), ("b", 3, 30.0)):  # a failed FID is null
        job = study / f"{line}{nfe}"
        job.mkdir(parents=True)
        OmegaConf.save({"label": line}, job / "config.yaml")
        (job / "metrics.json").write_text(json.dumps({"nfe": nfe, "n_candidates": nfe // 3, "accuracy": 0.5, "fid": fid}))
    curves.main([str(study), "--wandb"])
    report_id = (study / ".wandb_report_id").read_text()
    assert offline_ids(study) == {report_id}
    media = next((study / "wandb").glob("offline-run-*")) / "files" / "media"
    tables = {re.sub(r"_0_[0-9a-f]+\.table\.json$", "", p.relative_to(media / "table").as_posix())
              for p in (media / "table").rglob("*.table.json")}
    # the table, one line plot per metric, the fits
    assert tables == {"scaling_table", "scaling/accuracy_table", "scaling/fid_table", "scaling_fits"}
    [fits] = (media / "table").glob("scaling_fits_*.table.json")
    logged = json.loads(fits.read_text())
    assert logged["columns"] == curves.FIT_COLUMNS and len(logged["data"]) == 4  # (a, b) × (accuracy, fid)
    assert [p.name.split("_")[0] for p in (media / "images").iterdir()] == ["scaling"]
    [init] = inits
    assert (init["group"], init["name"], init["job_type"], init["resume"]) == (study_group(study), "report", "report",
                                                                               "allow")
