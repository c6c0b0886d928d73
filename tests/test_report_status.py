"""The report lists unfinished, missing and shard jobs of a study (job folders built by hand, as the runner writes them)."""

import json

import pytest
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from inference_scaling.reporting.curves import BASIC_SWEEPER, collect, expected_jobs, main, study_status


def sweep(folder, *task, sweeper=BASIC_SWEEPER, params=None):
    """A Hydra multirun folder's multirun.yaml for the command line overrides `task`."""
    folder.mkdir(parents=True, exist_ok=True)
    OmegaConf.save({"hydra": {"sweep": {"dir": str(folder), "subdir": "${hydra.job.num}"},
                              "sweeper": {"_target_": sweeper, "params": params},
                              "overrides": {"task": list(task)}}}, folder / "multirun.yaml")
    return folder


def job(folder, *overrides, n_chunks=None, done=0, metrics=None, shard="", label="line"):
    """A job folder: Hydra's overrides, then (once started) plan.json and `done` chunk files, then (once finished)
    config.yaml and metrics.json."""
    (folder / ".hydra").mkdir(parents=True)
    OmegaConf.save(list(overrides), folder / ".hydra" / "overrides.yaml")
    if n_chunks is not None:
        (folder / "plan.json").write_text(json.dumps({"n_conditions": 10 * n_chunks, "n_chunks": n_chunks,
                                                      "fingerprint": "0123456789abcdef"}))
        (folder / "chunks").mkdir()
        for k in range(done):
            (folder / "chunks" / f"{k:05d}.safetensors").write_bytes(b"")
        (folder / "chunks" / f".{done:05d}.safetensors.tmp-1").write_bytes(b"")  # a chunk being written
    if metrics is not None:
        OmegaConf.save({"label": label, "benchmark": {"shard": shard}}, folder / "config.yaml")
        (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


def finished(nfe, accuracy=0.5):
    return {"nfe": nfe, "n_candidates": nfe // 3, "accuracy": accuracy}


@pytest.fixture
def half_done(tmp_path):
    """budget.nfe=3,6,12,48: 3 finished, 6 at 3 of 10 chunks, 12 not started, 48 never launched."""
    s = sweep(tmp_path / "sweep", "budget.nfe=3,6,12,48", "progress=false", "label='a b, c'")
    for num, nfe in enumerate((3, 6, 12)):  # Hydra writes a job's booleans capitalised
        job(s / str(num), f"budget.nfe={nfe}", "progress=False", "label='a b, c'",
            **{3: dict(n_chunks=4, done=4, metrics=finished(3)), 6: dict(n_chunks=10, done=3), 12: {}}[nfe])
    return s


def test_status_lists_unfinished_jobs_with_their_chunks_and_missing_jobs(half_done):
    status = study_status(half_done)
    assert status.unfinished == [("1", "3/10 chunks"), ("2", "not started")]
    assert status.missing == [(".", "budget.nfe=48")]
    assert status.shards == [] and status.not_listed == [] and status.incomplete
    assert status.lines() == ["unfinished: 1 (3/10 chunks)", "unfinished: 2 (not started)", "missing: budget.nfe=48"]


def test_expected_jobs_are_hydras_own_cartesian_product():
    params = {"seed": "1,2", "model": "scenes"}
    task = ["budget.nfe=range(3,10,3)", "verifier=a,b", "+extra='x, y',z", "seed=5", "label='a b'"]
    keys, jobs = expected_jobs(OmegaConf.create({"hydra": {"sweeper": {"_target_": BASIC_SWEEPER, "params": params},
                                                           "overrides": {"task": task}}}))
    lines = [f"{k}={v}" for k, v in params.items()] + task
    hydras = BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(lines), None)[0]
    assert keys == ["budget.nfe", "verifier", "+extra"]  # seed=5 replaces the swept seed
    assert [[f"{k}={v}" for k, v in j.items()] for j in jobs] == hydras and len(jobs) == 12


def test_each_sweep_of_a_study_folder_is_named(tmp_path):
    steps = sweep(tmp_path / "steps", "model.search_steps=1,2", "budget=one_sample")
    job(steps / "0", "model.search_steps=1", "budget=one_sample", metrics=finished(1))
    job(steps / "1", "model.search_steps=2", "budget=one_sample", metrics=finished(3))
    search = sweep(tmp_path / "search", "budget.nfe=7,14")
    job(search / "0", "budget.nfe=7", metrics=finished(7))
    single = sweep(tmp_path / "single", "budget.nfe=7", "verifier=scene_checker")  # a multirun of one job
    status = study_status(tmp_path)
    assert status.missing == [("search", "budget.nfe=14"), ("single", "budget.nfe=7 verifier=scene_checker")]
    assert status.lines() == ["missing: search: budget.nfe=14", "missing: single: budget.nfe=7 verifier=scene_checker"]
    job(single / "0", "budget.nfe=7", "verifier=scene_checker", n_chunks=2)
    assert study_status(tmp_path).missing == [("search", "budget.nfe=14")]


@pytest.mark.parametrize("override,sweeper,why", [
    ("model=glob(*)", BASIC_SWEEPER, "model=glob(*) is a glob sweep"),
    ("budget.nfe=interval(3,12)", BASIC_SWEEPER, "budget.nfe=interval(3,12) is an interval sweep"),
    ("budget.nfe=3,6", "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper",
     "its sweeper hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper chooses the jobs"),
])
def test_sweeps_that_cannot_be_listed_are_said_so(tmp_path, override, sweeper, why):
    s = sweep(tmp_path / "s", override, sweeper=sweeper)
    job(s / "0", "budget.nfe=3", metrics=finished(3))
    status = study_status(tmp_path)
    assert status.not_listed == [("s", why)] and status.missing == [] and not status.incomplete
    assert status.lines() == [f"not checked for missing jobs: s: {why}"]


def test_shard_jobs_are_listed_not_drawn(tmp_path):
    s = sweep(tmp_path, "benchmark.shard=0/2,1/2", "budget.nfe=6")
    job(s / "0", "benchmark.shard=0/2", "budget.nfe=6", metrics=finished(6, 0.4), shard="0/2")
    job(s / "1", "benchmark.shard=1/2", "budget.nfe=6", metrics=finished(6, 0.6), shard="1/2")
    job(tmp_path / "merged", metrics=finished(6))  # what a merge writes: a whole job
    assert [r["job"] for r in collect(tmp_path)] == ["merged"]
    status = study_status(tmp_path)
    assert status.shards == ["0", "1"] and not status.incomplete
    main([str(tmp_path)])
    assert "- shard jobs (merge with inference-scaling-merge): 0, 1\n" in (tmp_path / "scaling.md").read_text()


def test_report_draws_what_finished_lists_the_rest_and_strict_exits_1_after_writing(half_done, capsys):
    main([str(half_done)])
    out, err = capsys.readouterr()
    assert "| line | 3 |" in out and err.splitlines() == study_status(half_done).lines()
    assert [r["nfe"] for r in collect(half_done)] == [3]
    md = (half_done / "scaling.md").read_text()
    assert md.endswith("\n## Jobs not in the curves\n\n- unfinished: 1 (3/10 chunks)\n- unfinished: 2 (not started)\n"
                       "- missing: budget.nfe=48\n")
    (half_done / "scaling.png").unlink()
    with pytest.raises(SystemExit) as exit_:
        main([str(half_done), "--strict"])
    assert exit_.value.code == 1 and (half_done / "scaling.png").exists()


def test_strict_passes_a_complete_sweep(tmp_path):
    s = sweep(tmp_path, "budget.nfe=3,6")
    for num, nfe in enumerate((3, 6)):
        job(s / str(num), f"budget.nfe={nfe}", n_chunks=1, done=1, metrics=finished(nfe))
    main([str(tmp_path), "--strict"])
    assert "Jobs not in the curves" not in (tmp_path / "scaling.md").read_text()


def test_nothing_finished_names_the_unfinished_jobs(tmp_path, capsys):
    s = sweep(tmp_path, "budget.nfe=3,6")
    job(s / "0", "budget.nfe=3", n_chunks=4, done=2)
    with pytest.raises(SystemExit) as exit_:
        main([str(tmp_path)])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == (f"error: no finished job (a folder with metrics.json) below {str(tmp_path)!r}; "
                                       "unfinished: 0 (2/4 chunks); missing: budget.nfe=6\n")


def test_job_overrides_keep_interpolations_as_written(tmp_path):
    from inference_scaling.reporting.curves import _job_overrides

    (tmp_path / ".hydra").mkdir()
    OmegaConf.save(["model.final_steps=${model.search_steps}", "budget.nfe=7"], tmp_path / ".hydra" / "overrides.yaml")
    overrides = _job_overrides(tmp_path)  # read as text: resolving `${...}` outside its config would fail
    assert overrides["budget.nfe"] == "7" and "model.search_steps" in overrides["model.final_steps"]
