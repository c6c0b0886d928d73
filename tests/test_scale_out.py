"""Studies at scale: chunks, shards and their merge, kill-and-resume, finished jobs skipped, budget sweeps reused."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from inference_scaling.config import ConfigError, validate
from inference_scaling.reporting.merge import merge
from inference_scaling.runner import REUSE_DEPENDENT, TIMING
from inference_scaling.search.random import CandidateStream, RandomSearch
from inference_scaling.store import StoreError, load_selected
from inference_scaling.verifiers import build_verifier
from test_robust_scores import Failing
from test_search import make_task

QUICK = ["logger=none", "progress=false", "benchmark.per_class=4", "benchmark.chunk_size=10"]
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}  # float sums in the same order in every process


@pytest.fixture
def app(tmp_path, monkeypatch, capsys, one_thread):
    """The entry point in this process (one intra-op thread, as the CLI subprocesses): (exit code, stdout, stderr)."""
    from inference_scaling.__main__ import main

    monkeypatch.chdir(tmp_path)

    def call(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["inference-scaling", *args])
        try:
            main()
            code = 0
        except SystemExit as exit_:
            code = exit_.code
        out = capsys.readouterr()
        return code, out.out, out.err

    return call


def outcome(job: Path) -> tuple:
    """What must be byte-identical: records, lineage, selected images and every metric but the timings."""
    metrics = {k: v for k, v in json.loads((job / "metrics.json").read_text()).items()
               if k not in TIMING and k != "merged_shards"}
    lineage = (job / "lineage.jsonl").read_text() if (job / "lineage.jsonl").exists() else None
    return metrics, (job / "results.csv").read_text(), lineage, load_selected(job)


def same(a: tuple, b: tuple) -> bool:
    return a[:3] == b[:3] and torch.equal(a[3], b[3])


def test_shards_merge_into_the_unsharded_job(app, tmp_path):
    assert app(*QUICK, "budget.nfe=12", f"hydra.run.dir={tmp_path / 'whole'}")[0] == 0
    assert app("-m", *QUICK, "budget.nfe=12", "benchmark.shard=0/3,1/3,2/3", f"hydra.sweep.dir={tmp_path / 'sh'}")[0] == 0
    shards = sorted((tmp_path / "sh").glob("*_nfe12"))
    sizes = [json.loads((job / "metrics.json").read_text())["n_conditions"] for job in shards]
    assert sizes == [20, 10, 10]  # chunks 0,3 / 1 / 2 of 10 conditions
    ids = [int(r["condition_id"]) for job in shards for r in csv.DictReader((job / "results.csv").open())]
    assert sorted(ids) == list(range(40))  # global condition ids, every one once
    result = merge(shards, tmp_path / "merged")
    assert result["metrics"]["merged_shards"] == 3
    assert same(outcome(tmp_path / "merged"), outcome(tmp_path / "whole"))  # FID over the union included

    with pytest.raises(StoreError, match=r"missing: \[1\]"):
        merge([shards[0], shards[2]], tmp_path / "partial")
    with pytest.raises(StoreError, match="not empty"):
        merge(shards, tmp_path / "merged")


@pytest.mark.parametrize("override, message", [
    ("benchmark.shard=3/3", r"benchmark.shard='3/3': need 0 <= i < n"),
    ("benchmark.shard=half", r"benchmark.shard='half' is not i/n"),
    ("benchmark.shard=0/9", r"asks for 9 shards but the 40 conditions make 4 chunk\(s\)"),
    ("benchmark.chunk_size=0", r"benchmark.chunk_size=0 must be >= 1"),
])
def test_bad_shards_are_refused(config, override, message):
    with pytest.raises(ConfigError, match=message):
        validate(config(*QUICK, "budget.nfe=12", override))


def test_a_set_level_verifier_is_not_sharded(config):
    with pytest.raises(ConfigError, match="scores the whole selected set at once"):
        validate(config(*QUICK, "budget.nfe=12", "verifier=fid_oracle", "benchmark.shard=0/2"))
    with pytest.raises(ConfigError, match=r"gets 3 condition\(s\); the evaluation needs at least 4"):
        validate(config("benchmark.per_class=1", "benchmark.chunk_size=3", "budget.nfe=6", "benchmark.shard=1/4"))


KILLER = """
import os, signal, sys
import inference_scaling.store as store
real, calls = store.save_file, []
def save_then_die(tensors, path, metadata=None):  # the third chunk is on disk under its temporary name, not renamed
    real(tensors, path, metadata=metadata)
    calls.append(path)
    if len(calls) == 3:
        os.kill(os.getpid(), signal.SIGKILL)
store.save_file = save_then_die
sys.argv = ["inference-scaling", *sys.argv[1:]]
from inference_scaling.__main__ import main
main()
"""


def test_a_killed_job_resumes_after_its_last_chunk_byte_identical(app, tmp_path):
    """SIGKILL a real job while it writes its third chunk, run the same command again: it keeps the two chunks it
    had, continues its W&B run and ends as an uninterrupted run does; once finished it is skipped, and
    overwrite=true redoes it."""
    args = ["logger=wandb", "progress=false", "benchmark.per_class=4", "benchmark.chunk_size=5", "search=zero_order",
            "budget.nfe=24", f"hydra.run.dir={tmp_path / 'job'}"]
    env = {**ONE_THREAD, "WANDB_SILENT": "true", "WANDB_MODE": "offline"}
    killed = subprocess.run([sys.executable, "-c", KILLER, *args], cwd=tmp_path, env=env, capture_output=True)
    assert killed.returncode == -signal.SIGKILL
    job = tmp_path / "job"
    chunks = job / "chunks"
    kept = {p.name: p.stat().st_mtime_ns for p in chunks.glob("[0-9]*.safetensors")}
    assert sorted(kept) == ["00000.safetensors", "00001.safetensors"] and list(chunks.glob(".00002*"))
    assert not (job / "metrics.json").exists()
    run_id = (job / ".wandb_run_id").read_text()  # its W&B run started with the first chunk

    resumed = subprocess.run([sys.executable, "-m", "inference_scaling", *args], cwd=tmp_path, env=env,
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert all((chunks / name).stat().st_mtime_ns == mtime for name, mtime in kept.items())  # not redone
    assert len(list(chunks.glob("[0-9]*.safetensors"))) == 8
    starts = sorted((job / "wandb").glob("offline-run-*"))
    assert len(starts) == 2 and all(run_id in p.name for p in starts)  # both starts log to the same run
    quiet = [*args, "logger=none"]
    assert app(*args[:-1], "logger=none", f"hydra.run.dir={tmp_path / 'reference'}")[0] == 0
    assert same(outcome(job), outcome(tmp_path / "reference"))
    assert (job / "lineage.jsonl").exists()

    finished = (job / "metrics.json").stat().st_mtime_ns
    code, out, _ = app(*quiet)
    assert code == 0 and "skipping finished job" in out and "overwrite=true" in out
    assert (job / "metrics.json").stat().st_mtime_ns == finished
    assert app(*quiet, "overwrite=true")[0] == 0
    assert (job / "metrics.json").stat().st_mtime_ns != finished
    assert same(outcome(job), outcome(tmp_path / "reference"))


def test_a_folder_holding_another_configs_chunks_is_refused(app, tmp_path):
    job = tmp_path / "job"
    assert app(*QUICK, "budget.nfe=6", f"hydra.run.dir={job}")[0] == 0
    (job / "metrics.json").unlink()  # as if killed before the end
    code, _, err = app(*QUICK, "budget.nfe=12", f"hydra.run.dir={job}")
    assert code == 1 and "holds chunks of another config" in err and "overwrite=true" in err
    assert len(list((job / "chunks").glob("*.safetensors"))) == 4  # nothing lost


@pytest.mark.parametrize("search, budgets, nfes", [
    ("random", "3,6,12", (12.0, 21.0)),
    # the walks' and populations' prefixes are tested directly below; their CLI sweeps run with `make test-slow`
    pytest.param("zero_order", "15,27", (27.0, 42.0), marks=pytest.mark.slow),
    pytest.param("evolutionary", "42,60", (60.0, 102.0), marks=pytest.mark.slow)])
def test_a_budget_sweep_reuses_candidates_byte_identical(app, tmp_path, search, budgets, nfes):
    """-m budget.nfe=a,b,c of random search (zero-order search) computes only the largest budget's candidates
    (iterations), with the same choices, lineage and images as separate runs; a rerun of the whole sweep skips every
    finished job."""
    sweep = ["-m", *QUICK, f"search={search}", f"budget.nfe={budgets}"]
    assert app(*sweep, f"hydra.sweep.dir={tmp_path / 'reuse'}")[0] == 0
    assert app(*sweep, "reuse=false", f"hydra.sweep.dir={tmp_path / 'plain'}")[0] == 0
    computed = {}
    for name in ("reuse", "plain"):
        jobs = sorted((tmp_path / name).glob("*_nfe*"))
        computed[name] = sum(json.loads((j / "metrics.json").read_text())["nfe_search_computed_per_condition"]
                             for j in jobs)
    assert computed == {"reuse": nfes[0], "plain": nfes[1]}
    jobs = [f"{k}_nfe{b}" for k, b in enumerate(budgets.split(","))]
    for job in jobs:
        a, b = outcome(tmp_path / "reuse" / job), outcome(tmp_path / "plain" / job)
        assert a[1:3] == b[1:3] and torch.equal(a[3], b[3])
        assert ({k: v for k, v in a[0].items() if k not in REUSE_DEPENDENT}
                == {k: v for k, v in b[0].items() if k not in REUSE_DEPENDENT})
    code, out, _ = app(*sweep, f"hydra.sweep.dir={tmp_path / 'reuse'}")
    assert code == 0 and out.count("skipping finished job") == len(jobs)


@pytest.mark.parametrize("fail", [False, True])
def test_a_stream_extended_in_steps_selects_as_separate_runs(fail, one_thread):
    """Best of the first m of a stream (grown 0 → 2 → 5 → 9) equals random search at m, failed scores included."""
    from inference_scaling.models.digits import DigitsDenoiser, load_flow

    verifier = build_verifier("classifier_prob")
    if fail:  # every candidate of class 5 fails, and those of class 3 that score below 0.9
        verifier = Failing(verifier, lambda s, cond: s.masked_fill((cond == 5) | ((cond == 3) & (s < 0.9)), float("nan")))
    task, _ = make_task(DigitsDenoiser(load_flow()), verifier, per_class=1, max_batch_size=4)  # blocks 4, 4, 2
    search = RandomSearch()
    stream = CandidateStream.empty(10)
    for n in (2, 5, 9):
        stream = search.extend(task, stream, n)
        for m in (1, n - 1, n):
            expected = search(task, m * task.cost_per_sample)
            chosen = search.select(stream, m)
            assert torch.equal(chosen.chosen, expected.chosen)
            assert torch.equal(chosen.images, expected.images)
            assert torch.equal(chosen.scores.nan_to_num(-9.0), expected.scores.nan_to_num(-9.0))
    assert fail == bool(stream.scores.isnan().any())
    assert len(stream.record_index) < 10 * 9  # only records keep images


def test_a_zero_order_walk_extended_in_steps_selects_as_separate_runs(one_thread):
    """K iterations of a walk grown 0 → 1 → 3 end as a K-iteration zero-order run: pivots, images, lineage."""
    from inference_scaling.models.digits import DigitsDenoiser, load_flow
    from inference_scaling.search.zero_order import PivotWalk, ZeroOrderSearch

    task, _ = make_task(DigitsDenoiser(load_flow()), build_verifier("classifier_prob"), per_class=1, max_batch_size=8)
    search = ZeroOrderSearch(n=3, lam=0.6)
    walk = PivotWalk.empty(10)
    for K in (1, 3):
        walk = search.extend(task, walk, K)
        for k in range(1, K + 1):
            expected = search(task, (1 + k * 3) * task.cost_per_sample)
            chosen = search.select(walk, k)
            assert chosen.lineage == expected.lineage and torch.equal(chosen.chosen, expected.chosen)
            assert torch.equal(chosen.images, expected.images) and torch.equal(chosen.scores, expected.scores)
    assert len(walk.move_rows) > 0  # some pivots moved


def test_an_evolution_extended_in_steps_selects_as_separate_runs(one_thread):
    """G generations of a population grown 0 → 2 → 4 end as a G-generation evolutionary run: choices, images,
    ancestry."""
    from inference_scaling.models.digits import DigitsDenoiser, load_flow
    from inference_scaling.search.evolutionary import EvolutionarySearch, Population

    task, _ = make_task(DigitsDenoiser(load_flow()), build_verifier("classifier_prob"), per_class=1, max_batch_size=8)
    search = EvolutionarySearch(population=4, elites=1)
    pop = Population.empty(10)
    for G in (2, 4):
        pop = search.extend(task, pop, G)
        for g in range(2, G + 1):
            expected = search(task, search.total(g) * task.cost_per_sample)
            chosen = search.select(pop, g)
            assert chosen.lineage == expected.lineage and torch.equal(chosen.chosen, expected.chosen)
            assert torch.equal(chosen.images, expected.images) and torch.equal(chosen.scores, expected.scores)
    assert any(entry["mutations"] for entry in search.select(pop, 4).lineage)  # some winners are children


def test_precision_recall_blocks_stay_bounded_and_agree():
    """Sets up to 3,355 samples keep torch-fidelity's own block; larger sets get blocks of at most 2**25 distances,
    and blocked precision/recall agree with unblocked ones (up to ties between float sums)."""
    from torch_fidelity.metric_prc import calculate_precision_recall_part

    from inference_scaling.evaluation.fidelity import PRC_BLOCK, prc_batch_size

    assert prc_batch_size(1000) == prc_batch_size(3355) == 10_000
    assert prc_batch_size(50_000) == PRC_BLOCK // 50_000 == 671 and prc_batch_size(10**7) == 256
    generated, real = torch.randn(900, 16), torch.randn(700, 16) + 0.3
    whole = calculate_precision_recall_part(generated, real, batch_size=10_000)
    blocked = calculate_precision_recall_part(generated, real, batch_size=64)
    assert all(abs(a - b) <= 2 / 700 for a, b in zip(whole, blocked)) and 0 < whole[0] < 1 and 0 < whole[1] < 1
