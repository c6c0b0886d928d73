"""Failed scores (NaN, ±inf) never win and never block others; all-failed conditions keep a real candidate and are
flagged; metrics.json is strict JSON; no Inception weights file is ever unpickled."""

import csv
import json
import math

import pytest
import torch
from tiny_models import random_inception_weights

import inference_scaling.runner as runner
from inference_scaling.denoiser import GuidedDenoiser
from inference_scaling.nfe import NFECounter
from inference_scaling.reporting.records import write_job
from inference_scaling.sampling import heun, linear_sigmas, solver_nfe
from inference_scaling.search.base import SearchTask, comparable, keep_best, no_best
from inference_scaling.search.evolutionary import EvolutionarySearch
from inference_scaling.search.fk_steering import FKSteering, resample
from inference_scaling.search.paths import SearchOverPaths
from inference_scaling.search.random import RandomSearch
from inference_scaling.search.zero_order import ZeroOrderSearch
from inference_scaling.verifiers import build_verifier
from inference_scaling.verifiers.inception_is import load_inception
from inference_scaling.weights import WeightsError

pytestmark = pytest.mark.usefixtures("one_thread")

NAN, INF = float("nan"), float("inf")


class Failing:
    """A verifier that replaces the scores `fail(scores, cond)` picks by its NaN / ±inf; the rest delegate."""

    def __init__(self, inner, fail):
        self.inner, self.fail = inner, fail

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def __call__(self, images, cond, **kwargs):
        return self.fail(self.inner(images, cond, **kwargs).clone(), cond)


class EveryThirdFails:
    """Images 0, 3, 6, … scored NaN, 1, 7, … −inf, 4, 10, … +inf; 2, 5, 8, … keep a real score, counting the images
    of every call in turn (so a condition's candidates fail differently, whatever the calls hold)."""

    def __init__(self):
        self.seen = 0

    def __call__(self, s, cond):
        k = self.seen + torch.arange(len(s))
        self.seen += len(s)
        return every_third(s, k)


def every_third(s, k):
    s[k % 3 == 0] = NAN
    s[k % 6 == 1] = -INF
    s[k % 6 == 4] = INF
    return s


def all_fail(s, cond):
    return torch.full_like(s, NAN)


# ---------- the rule, in one batch ----------


def test_keep_best_is_not_blocked_by_a_failed_score_and_keeps_the_first_of_all_failed():
    best, images = no_best(3), torch.zeros(3, 1)
    rows = torch.tensor([0, 0, 0, 1, 1, 2, 2])
    scores = torch.tensor([NAN, 0.3, INF, -INF, 0.1, NAN, -INF])
    keep_best(best, images, rows, scores, torch.arange(7.0).view(7, 1))
    assert images.squeeze(1).tolist() == [1.0, 4.0, 5.0]  # the real best; the first of an all-failed condition
    assert best[:2].tolist() == [pytest.approx(0.3), pytest.approx(0.1)] and best[2] == -INF
    keep_best(best, images, torch.tensor([0, 2, 2]), torch.tensor([NAN, NAN, -5.0]), torch.arange(7.0, 10).view(3, 1))
    assert images.squeeze(1).tolist() == [1.0, 4.0, 9.0]  # a failure replaces nothing; a real score beats a failure
    assert comparable(torch.tensor([NAN, INF, -INF, -3e38])).tolist() == [-INF, -INF, -INF, pytest.approx(-3e38)]


def test_resampling_gives_failed_particles_no_weight_and_all_failed_uniform_weight():
    u = torch.linspace(0.01, 0.99, 8).repeat(2, 1)
    ancestors = resample(torch.tensor([[NAN, 0.0, INF, -INF], [NAN, NAN, -INF, INF]]).repeat_interleave(2, 1), u)
    assert set(ancestors[0].tolist()) == {2, 3}  # only the real particle (slots 2, 3) is copied
    assert ancestors[1].tolist() == list(range(8))  # no real weight: uniform


# ---------- every algorithm, end to end on the embedded model ----------


def make_task(flow, fail):
    labels = torch.arange(10)
    sigmas = linear_sigmas(2)
    return SearchTask(denoiser=GuidedDenoiser(NFECounter(flow), 1.0, torch.tensor([10])), solver=heun,
                      sigmas=sigmas, cost_per_sample=solver_nfe("heun", sigmas), conds=labels,
                      condition_ids=torch.arange(10), noise_shape=(1, 8, 8), seed=0,
                      verifier=Failing(build_verifier("classifier_prob"), fail), max_batch_size=1024)


def run_search(name, task):
    """The algorithm, its budget, and how many trailing candidate scores its final choice compares."""
    if name == "random":
        return RandomSearch()(task, 12), 4
    if name == "zero_order":
        result = ZeroOrderSearch(n=2)(task, 3 * (1 + 2 * 3))
        return result, result.n_candidates  # the pivot is the best of everything scored
    if name == "evolutionary":
        result = EvolutionarySearch(population=4, elites=1)(task, 3 * (4 + 2 * 3))
        return result, result.n_candidates
    if name == "paths":
        search = SearchOverPaths()
        return search(task, 2 * search.path_cost(task)), 2 * search.m  # the last round's N·M branches
    search = FKSteering()
    return search(task, 3 * search.particle_cost(task)), 3  # the final K particles


def rendered(name, task, result):
    """The chosen samples re-rendered from their noises alone."""
    if result.lineage is None:
        return task.solve(task.noise(torch.arange(10), result.chosen), torch.arange(10))
    search = {"zero_order": ZeroOrderSearch, "evolutionary": EvolutionarySearch, "paths": SearchOverPaths,
              "fk_steering": FKSteering}[name]
    return search.replay(task, result.lineage)


ALGORITHMS = ["random", "zero_order", "evolutionary", "paths", "fk_steering"]


@pytest.mark.parametrize("name", ALGORITHMS)
def test_failed_scores_never_win_nor_block_the_best_real_candidate(flow, name):
    task = make_task(flow, EveryThirdFails())
    result, compared = run_search(name, task)
    final = result.candidate_scores[:, -compared:]
    real = torch.isfinite(final).any(dim=1)  # conditions with a real score in the final comparison
    assert final.isnan().any() and final.isinf().any() and real.sum() >= 5
    assert torch.equal(result.failed, ~real) and torch.isfinite(result.scores[real]).all()
    assert torch.equal(result.scores[real], comparable(final).max(dim=1).values[real])  # the best real score wins
    assert torch.allclose(rendered(name, task, result), result.images, atol=1e-5)  # and it is the image kept


@pytest.mark.parametrize("name", ALGORITHMS)
def test_all_failed_conditions_keep_the_candidate_picked_among_equal_scores(flow, name):
    task = make_task(flow, all_fail)
    result, _ = run_search(name, task)
    assert result.failed.all() and result.scores.isnan().all()
    if name in ("random", "zero_order", "evolutionary"):  # candidate 0: the pivot never moves, nor the first member
        assert result.chosen.tolist() == [0] * 10
    if name == "paths":  # the first survivor of every round: initial noise 0, then each round's first branch
        search = SearchOverPaths()
        n = result.n_candidates // len(search.rounds()) // search.m
        assert all(e["initial"] == 0 and [r["noise"] for r in e["rounds"]] ==
                   [n + r * n * search.m for r in range(len(e["rounds"]))] for e in result.lineage)
    assert torch.isfinite(result.images).all() and result.images.flatten(1).abs().amax(dim=1).min() > 0.5
    assert torch.allclose(rendered(name, task, result), result.images, atol=1e-5)


# ---------- through the runner: results.csv, metrics.json, selected.safetensors ----------


def strict_json(text):
    def refuse(token):
        raise ValueError(f"not JSON: {token}")

    return json.loads(text, parse_constant=refuse)


def test_all_failed_conditions_are_rendered_flagged_and_counted(config, monkeypatch, tmp_path):
    def threes_fail(s, cond):  # every candidate of the conditions of class 3 fails
        s[cond.cpu() == 3] = NAN
        return s

    monkeypatch.setattr(runner, "build_verifier", lambda cfg, device="cpu": Failing(build_verifier(cfg, device),
                                                                                       threes_fail))
    cfg = config("logger=none", "progress=false", "benchmark.per_class=2", "budget.nfe=9")
    result = runner.run(cfg)
    write_job(tmp_path, "", result, save_images=True)
    with open(tmp_path / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    failed = [3, 13]  # conditions are the classes 0..9, twice
    assert [r["all_candidates_failed"] == "True" for r in rows] == [c in failed for c in range(20)]
    assert all(rows[c]["chosen_index"] == "0" and rows[c]["search_score"] == "nan" == rows[c]["final_score"]
               for c in failed)
    metrics = strict_json((tmp_path / "metrics.json").read_text())
    assert metrics["conditions_all_failed"] == 2 and math.isfinite(metrics["search_verifier_score"])
    saved = result["images"]  # every selected image, read back from the job's chunk files
    for c in failed:  # a real rendering of candidate 0, not zeros
        assert saved[c].abs().max() > 0.5
        assert torch.allclose(saved[c], runner.replay(cfg, c, 0)[0], atol=1e-5)


def test_metrics_json_is_strict_json_with_non_finite_metrics(tmp_path):
    result = {"records": [{"condition_id": 0, "search_score": -INF}], "images": torch.zeros(1, 1, 2, 2),
              "prompts": ["0"], "metrics": {"fid": NAN, "verifier_score": -INF, "is": INF, "nfe": 3,
                                            "per_class": [1.0, NAN]}}
    write_job(tmp_path, "", result, save_images=False)
    metrics = strict_json((tmp_path / "metrics.json").read_text())
    assert metrics == {"fid": None, "verifier_score": None, "is": None, "nfe": 3, "per_class": [1.0, None]}
    assert (tmp_path / "results.csv").read_text().splitlines()[1] == "0,nan"


# ---------- Inception weights are never unpickled ----------


class WritesMarker:
    """Unpickling this runs code: it writes `marker`."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('unpickled')",)


@pytest.fixture(scope="module")
def inception_weights(tmp_path_factory):
    return random_inception_weights(tmp_path_factory.mktemp("inception") / "weights-inception-random.pth")


@pytest.fixture
def torch_loads(monkeypatch):
    """Every torch.load call's weights_only argument."""
    seen, real = [], torch.load

    def spy(*args, **kwargs):
        seen.append(kwargs.get("weights_only"))
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    return seen


def test_a_pickled_object_is_refused_and_never_unpickled(tmp_path, torch_loads):
    marker = tmp_path / "marker"
    state = {"fc.weight": torch.zeros(1008, 2048), "fc.bias": WritesMarker(marker)}
    torch.save(state, tmp_path / "evil.pth")
    with pytest.raises(WeightsError, match="not a plain state dict"):
        load_inception(str(tmp_path / "evil.pth"))
    assert not marker.exists() and torch_loads == [True]
    torch.load(tmp_path / "evil.pth", weights_only=False)  # the file does run code when unpickled in full
    assert marker.read_text() == "unpickled"


def test_a_plain_state_dict_loads_with_weights_only(inception_weights, torch_loads):
    net = load_inception(inception_weights)
    state = torch.load(inception_weights, weights_only=True)
    assert torch_loads == [True, True]  # ours, and the check above: torch-fidelity never read the file
    assert all(torch.equal(net.state_dict()[k], v) for k, v in state.items())


def test_the_download_is_read_with_weights_only(inception_weights, monkeypatch):
    seen = []

    def download(url, **kwargs):
        seen.append((url, kwargs.get("weights_only")))
        return torch.load(inception_weights, weights_only=True)

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", download)
    load_inception("")
    assert seen == [("https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
                     "weights-inception-2015-12-05-6726825d.pth", True)]
