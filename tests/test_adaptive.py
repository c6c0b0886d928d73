"""Adaptive budgets: the pool, the prefix of random search's stream, early stops, where the compute goes, refusals."""

import csv
import json
import os
import subprocess
import sys

import pytest
import torch

from inference_scaling.__main__ import main
from inference_scaling.denoiser import GuidedDenoiser
from inference_scaling.nfe import BudgetError, NFECounter
from inference_scaling.runner import replay
from inference_scaling.sampling import heun, linear_sigmas, sde, solver_nfe
from inference_scaling.search import SEARCHES, build_search
from inference_scaling.search.adaptive import AdaptiveSearch
from inference_scaling.search.base import SearchTask
from inference_scaling.search.random import CandidateStream, RandomSearch
from inference_scaling.store import load_selected

pytestmark = pytest.mark.usefixtures("one_thread")
COST = 3  # NFEs of one candidate: 2 Heun steps
THRESHOLD = 0.93  # classifier_prob on the digits model: about a third of candidates reach it


def make_task(flow, verifier, per_class=2, max_batch_size=1024, solver=heun):
    counter = NFECounter(flow)
    labels = torch.arange(10).repeat(per_class)
    sigmas = linear_sigmas(2 if solver is heun else 3)  # the SDE (Euler–Maruyama) with 3 steps: 3 NFEs as well
    task = SearchTask(denoiser=GuidedDenoiser(counter, 1.0, torch.tensor([10])), solver=solver, sigmas=sigmas,
                      cost_per_sample=solver_nfe(solver.__name__, sigmas), conds=labels,
                      condition_ids=torch.arange(len(labels)), noise_shape=(1, 8, 8), seed=0, verifier=verifier,
                      max_batch_size=max_batch_size)
    assert task.cost_per_sample == COST
    return task, counter


class SolvedAt:
    """A synthetic verifier: condition (label) c scores 1 at its k_c-th candidate and `low[c]` before, whatever the
    image; it records the labels of every call."""

    name = "solved_at"

    def __init__(self, verifier, k: dict[int, int], low: dict[int, float]):
        self.cost, self.k, self.low = verifier.cost, k, low
        self.seen = {c: 0 for c in k}
        self.calls: list[list[int]] = []

    def __call__(self, images, cond):
        labels = cond.tolist()
        self.calls.append(labels)
        scores = []
        for c in labels:
            self.seen[c] += 1
            scores.append(1.0 if self.seen[c] == self.k[c] else self.low[c])
        return torch.tensor(scores)


def test_the_pool_is_spent_round_by_round_and_stops_where_conditions_are_solved(flow, verifier):
    never = 10**9
    k = {0: 1, 1: 1, 2: 1, 3: 1, 4: 1, 5: 2, 6: 4, 7: never, 8: never, 9: never}
    synthetic = SolvedAt(verifier, k, low={**{c: 0.0 for c in range(7)}, 7: 0.3, 8: 0.1, 9: 0.2})
    task, counter = make_task(flow, synthetic, per_class=1, max_batch_size=4)
    result = AdaptiveSearch(success_threshold=1.0)(task, 9)  # N = 3: a pool of 30 candidates for 10 conditions
    # Rounds of 10 conditions, 5 (0-4 solved), 4 (5 solved at its 2nd), 4 (6 solved at its 4th), then 7, 8, 9 twice
    # (29 candidates so far); the last one goes to the lowest best score, condition 8's 0.1.
    assert result.candidates_per_condition.tolist() == [1, 1, 1, 1, 1, 2, 4, 6, 7, 6]
    assert counter.count == 30 * COST == 10 * 9 and result.verifier_calls == 30
    # Each round's candidates go out in calls of max_batch_size across conditions, not condition by condition.
    assert synthetic.calls[:3] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]] and synthetic.calls[3] == [5, 6, 7, 8]
    assert max(len(call) for call in synthetic.calls) == 4
    assert result.chosen.tolist() == [0, 0, 0, 0, 0, 1, 3, 0, 0, 0]  # the solving candidate, or the first of ties
    scores = result.candidate_scores
    assert scores.shape == (10, 7) and scores[:5, 1:].isnan().all() and scores[7, 6].isnan()
    assert torch.equal(result.scores, torch.tensor([1.0] * 7 + [0.3, 0.1, 0.2]))


def test_no_condition_gets_a_candidate_after_the_one_that_solves_it(flow, verifier):
    task, counter = make_task(flow, verifier)
    result = AdaptiveSearch(success_threshold=THRESHOLD)(task, 9)
    drawn, scores = result.candidates_per_condition, result.candidate_scores
    assert counter.count == int(drawn.sum()) * COST
    solved = result.scores >= THRESHOLD
    assert 5 <= solved.sum() < 20 and drawn.unique().numel() >= 3
    for c in range(20):
        m = int(drawn[c])
        assert (scores[c, :m - 1] < THRESHOLD).all() and scores[c, m:].isnan().all()
        assert bool(scores[c, m - 1] >= THRESHOLD) == bool(solved[c])
    assert (drawn[~solved] >= 3).all()  # an unsolved condition holds at least random search's N = 3


@pytest.mark.parametrize("budget,threshold,spent", [
    (10, None, 66),  # 200 NFEs buy 66 candidates: 6 conditions get a 4th, random search's N = 3 would spend 60
    (9, 0.0, 20),  # every candidate meets 0: one each, the rest of the pool of 60 is not spent
])
def test_nfes_counted_never_exceed_the_pool(flow, verifier, budget, threshold, spent):
    task, counter = make_task(flow, verifier)
    result = AdaptiveSearch(success_threshold=threshold)(task, budget)
    drawn = result.candidates_per_condition
    assert counter.count == int(drawn.sum()) * COST == spent * COST <= budget * 20
    assert result.verifier_calls == spent and result.n_candidates == budget // COST
    if threshold is None:  # the extra candidates went to the conditions with the lowest best of their first 3
        fourth = drawn == 4
        assert fourth.sum() == 6 and (drawn[~fourth] == 3).all()
        best3 = result.candidate_scores[:, :3].max(dim=1).values
        assert best3[fourth].max() <= best3[~fourth].min()


@pytest.mark.parametrize("solver", [heun, sde])
def test_a_conditions_candidates_are_random_searchs_first_m(flow, verifier, solver):
    """On an ODE and on the SDE, whose step noises are named by the candidate index as well."""
    # One row per call on both sides: CPU matmuls round differently at other batch sizes (bits match only then).
    task, _ = make_task(flow, verifier, max_batch_size=1, solver=solver)
    result = AdaptiveSearch(success_threshold=THRESHOLD)(task, 9)
    drawn = result.candidates_per_condition
    assert drawn.unique().numel() >= 3
    random_task, _ = make_task(flow, verifier, max_batch_size=1, solver=solver)
    stream = RandomSearch().extend(random_task, CandidateStream.empty(20), int(drawn.max()))
    for m in drawn.unique().tolist():
        uniform = RandomSearch.select(stream, m)
        for c in (drawn == m).nonzero().squeeze(1).tolist():
            assert torch.equal(result.candidate_scores[c, :m], stream.scores[c, :m])
            assert result.chosen[c] == uniform.chosen[c] and result.scores[c] == uniform.scores[c]
            assert torch.equal(result.images[c], uniform.images[c])
    # Other batch sizes: the same choices, the same samples to float tolerance.
    batched = AdaptiveSearch(success_threshold=THRESHOLD)(make_task(flow, verifier, max_batch_size=7, solver=solver)[0],
                                                          9)
    assert torch.equal(batched.candidates_per_condition, drawn) and torch.equal(batched.chosen, result.chosen)
    assert torch.allclose(batched.images, result.images, atol=1e-5)


def test_without_a_threshold_it_selects_exactly_what_random_search_selects(flow, verifier):
    task, counter = make_task(flow, verifier)
    adaptive = AdaptiveSearch()(task, 12)
    uniform_task, uniform_counter = make_task(flow, verifier)
    uniform = RandomSearch()(uniform_task, 12)
    assert (adaptive.candidates_per_condition == 4).all() and counter.count == uniform_counter.count == 20 * 12
    for field in ("chosen", "scores", "candidate_scores", "images"):
        assert torch.equal(getattr(adaptive, field), getattr(uniform, field)), field


def test_compute_moves_to_hard_conditions_and_never_loses_to_best_of_n(flow, verifier):
    """Against random search at the same pool: every condition scores at least min(best-of-N, threshold), the
    solved conditions spend less than N, and what they save goes to the others."""
    budget, n = 9, 3
    task, counter = make_task(flow, verifier, per_class=4)
    adaptive = AdaptiveSearch(success_threshold=THRESHOLD)(task, budget)
    uniform = RandomSearch()(make_task(flow, verifier, per_class=4)[0], budget)
    floor = torch.clamp(uniform.scores, max=THRESHOLD)
    assert (adaptive.scores >= floor).all()
    solved_adaptive, solved_uniform = adaptive.scores >= THRESHOLD, uniform.scores >= THRESHOLD
    assert (solved_adaptive >= solved_uniform).all() and solved_adaptive.sum() > solved_uniform.sum()
    drawn = adaptive.candidates_per_condition
    hard = ~solved_adaptive | (drawn > n)
    assert drawn[~hard].float().mean() < n < drawn[hard].float().mean()
    assert counter.count <= budget * 40


def test_a_cap_bounds_each_condition(flow, verifier):
    task, counter = make_task(flow, verifier)
    result = AdaptiveSearch(success_threshold=2.0, max_candidates_per_condition=2)(task, 9)  # 2.0: never reached
    assert (result.candidates_per_condition == 2).all() and counter.count == 20 * 2 * COST < 9 * 20


class SetLevel:
    set_level = True
    name = "set_level"


class WholeSet:
    needs_all_conditions = True
    name = "whole_set"


@pytest.mark.parametrize("make,budget,error,message", [
    (lambda: AdaptiveSearch(max_candidates_per_condition=0), None, ValueError,
     r"^search.max_candidates_per_condition=0 must be >= 1 \(or null: no cap beyond the pool\)$"),
    (lambda: AdaptiveSearch(), 2, BudgetError, r"^budget.nfe=2 is below the cost of one sample \(3 NFEs"),
    (SetLevel, 9, ValueError, "^adaptive search compares scores from different verifier calls; verifier 'set_level'"),
    (WholeSet, 9, ValueError, "^adaptive search stops conditions one by one; verifier 'whole_set' scores the whole"),
])
def test_bad_values_and_verifiers_are_refused_before_spending(flow, verifier, make, budget, error, message):
    with pytest.raises(error, match=message):
        made = make()
        search, checked = (made, verifier) if isinstance(made, AdaptiveSearch) else (AdaptiveSearch(), made)
        task, counter = make_task(flow, checked)
        try:
            search(task, budget)
        finally:
            assert counter.count == 0


@pytest.mark.parametrize("override,message", [
    ("search.max_candidates_per_condition=0", "error: search.max_candidates_per_condition=0 must be >= 1"),
    ("search.success_threshold=nan", "error: search.success_threshold=nan must be a finite number"),
    ("search.success_threshold=high", "error: bad override search.success_threshold=high"),
    ("search.cap=3", "error: unknown config key 'search.cap'; accepted keys in search: name, max_batch_size, "
                     "success_threshold, max_candidates_per_condition"),
])
def test_bad_config_values_are_one_line(tmp_path, monkeypatch, capsys, override, message):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["inference-scaling", "search=adaptive", override, "budget.nfe=9", "logger=none",
                                      "progress=false", f"hydra.run.dir={tmp_path / 'run'}"])
    with pytest.raises(SystemExit) as exit_:
        main()
    lines = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(lines) == 1 and lines[0].startswith(message), lines
    assert not (tmp_path / "run").exists()


def test_the_config_builds_the_search_with_its_parameters(config):
    cfg = config("search=adaptive", "search.success_threshold=0.5", "search.max_candidates_per_condition=8")
    search = build_search(cfg.search)
    assert SEARCHES["adaptive"] is AdaptiveSearch and isinstance(search, AdaptiveSearch)
    assert (search.success_threshold, search.max_candidates_per_condition) == (0.5, 8)


def test_cli_end_to_end_per_chunk_pools_records_and_replay(tmp_path, config):
    """A two-budget sweep on the digits model in chunks of 7: each chunk spends within its own pool, the records
    say what each condition got, nothing is reused across budgets, and the chosen index replays the image."""
    args = ["search=adaptive", f"search.success_threshold={THRESHOLD}", "benchmark.per_class=2",
            "benchmark.chunk_size=7", "model.final_steps=3", "logger=none", "progress=false"]
    sweep = tmp_path / "sweep"
    env = {**os.environ, "WANDB_SILENT": "true", "HYDRA_FULL_ERROR": "0", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "inference_scaling", "-m", *args, "budget.nfe=6,9",
                           f"hydra.sweep.dir={sweep}"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert not (sweep / ".reuse").exists()
    for budget in (6, 9):
        job = next(sweep.glob(f"*_nfe{budget}"))
        metrics = json.loads((job / "metrics.json").read_text())
        rows = list(csv.DictReader((job / "results.csv").open()))
        drawn = [int(r["n_candidates"]) for r in rows]
        nfe = [float(r["nfe_search"]) for r in rows]
        assert len(rows) == 20 and len(set(drawn)) > 1 and metrics["candidates_reused"] == 0
        assert nfe == [COST * d for d in drawn]
        assert metrics["nfe_search_per_condition"] == pytest.approx(sum(nfe) / 20)
        assert metrics["nfe_search_computed_per_condition"] == metrics["nfe_search_per_condition"]
        assert metrics["n_candidates"] == budget // COST and metrics["nfe_final_per_condition"] == 5
        for start, stop in [(0, 7), (7, 14), (14, 20)]:  # the pool is per chunk
            assert sum(nfe[start:stop]) <= budget * (stop - start)
    cfg = config(*args, "budget.nfe=9")
    images = load_selected(job)
    for c in (0, 13):
        assert torch.allclose(replay(cfg, c, int(rows[c]["chosen_index"]))[0], images[c], atol=1e-5)
