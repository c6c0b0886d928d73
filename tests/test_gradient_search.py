"""Gradient search: backward passes counted apart and priced, the plan a priced budget buys, ascent on the Gaussian
shell, replay, refusals, differentiable verifiers that score as before, and the CLI end to end."""

import json
import math
import sys

import pytest
import torch

from inference_scaling.__main__ import main
from inference_scaling.config import ConfigError, validate
from inference_scaling.denoiser import GuidedDenoiser
from inference_scaling.models.digits import DigitsDenoiser
from inference_scaling.models.scenes import load as load_scenes_flow
from inference_scaling.nfe import BudgetError, NFECounter, NotDifferentiableError, priced_nfe
from inference_scaling.noise import candidate_noise
from inference_scaling.sampling import euler, heun, heun2, linear_sigmas, solver_nfe
from inference_scaling.search import build_search
from inference_scaling.search.base import SearchTask
from inference_scaling.search.gradient import GradientSearch, shell_step
from inference_scaling.verifiers import VERIFIERS, build_verifier

pytestmark = pytest.mark.usefixtures("one_thread")


def make_task(denoiser, verifier, per_class=2, steps=2, guidance=1.0, max_batch_size=1024, solver=heun):
    counter = NFECounter(denoiser)
    labels = torch.arange(10).repeat(per_class)
    sigmas = linear_sigmas(steps)
    task = SearchTask(denoiser=GuidedDenoiser(counter, guidance, torch.tensor([10])), solver=solver, sigmas=sigmas,
                      cost_per_sample=solver_nfe(solver.__name__, sigmas) * (1 if guidance == 1.0 else 2),
                      conds=labels, condition_ids=torch.arange(len(labels)), noise_shape=(1, 8, 8), seed=0,
                      verifier=verifier, max_batch_size=max_batch_size)
    return task, counter


# The counter: backward rows counted apart, exactly.


@pytest.mark.parametrize("solver,steps,guidance", [(heun, 3, 1.0), (euler, 4, 1.0), (heun2, 2, 2.0)])
def test_backward_rows_are_counted_apart_once_per_row_and_evaluation(flow, solver, steps, guidance):
    counter = NFECounter(flow)
    denoiser = GuidedDenoiser(counter, guidance, torch.tensor([10]))
    x = candidate_noise(0, torch.arange(5), torch.zeros(5, dtype=torch.long), (1, 8, 8)).requires_grad_(True)
    sigmas = linear_sigmas(steps)
    evaluations = solver_nfe(solver.__name__, sigmas) * (1 if guidance == 1.0 else 2)  # rows per sample
    with torch.enable_grad():
        out = solver.__wrapped__(denoiser, x, sigmas, torch.arange(5))
    assert counter.count == 5 * evaluations and counter.backward_count == 0  # nothing back-propagated yet
    torch.autograd.grad(out.square().sum(), x, retain_graph=True)
    assert counter.backward_count == 5 * evaluations
    torch.autograd.grad(out.sum(), x)  # a second backward through the same graph is computed again: counted again
    assert counter.backward_count == 2 * 5 * evaluations and counter.count == 5 * evaluations


def test_a_forward_without_graph_is_unchanged_and_counts_no_backward(flow):
    x = candidate_noise(0, torch.arange(6), torch.zeros(6, dtype=torch.long), (1, 8, 8))
    counter = NFECounter(flow)
    sigmas = linear_sigmas(3)
    counted = heun(counter, x, sigmas, torch.arange(6))
    assert torch.equal(counted, heun(flow, x, sigmas, torch.arange(6)))
    with torch.enable_grad():  # the graph kept: the same values
        kept = heun.__wrapped__(counter, x.clone().requires_grad_(True), sigmas, torch.arange(6))
    assert torch.equal(kept.detach(), counted) and kept.requires_grad
    assert counter.count == 2 * 5 * 6 and counter.backward_count == 0


def test_a_network_that_keeps_no_graph_is_refused_not_silently_wrong(flow):
    counter = NFECounter(torch.no_grad()(flow.__call__))  # an adapter under torch.no_grad, as SiT's is
    x = torch.zeros(2, 1, 8, 8, requires_grad=True)
    with torch.enable_grad(), pytest.raises(NotDifferentiableError, match="returned no graph"):
        counter(x, torch.ones(2), torch.arange(2))


# Pricing and the plan.


@pytest.mark.parametrize("backward_nfe", [0.0, 0.75, 1.0, 2.3])
@pytest.mark.parametrize("cost", [3, 7])
def test_the_plan_is_the_most_steps_whose_priced_nfes_fit(backward_nfe, cost):
    search = GradientSearch(backward_nfe=backward_nfe)
    task = SearchTask(denoiser=None, solver=heun, sigmas=linear_sigmas(2), cost_per_sample=cost, conds=torch.zeros(0),
                      condition_ids=torch.zeros(0), noise_shape=(), seed=0, verifier=None, max_batch_size=1)
    least = math.ceil(cost * (2 + backward_nfe) - 1e-9)  # one step (forward + backward) and the last forward
    for budget in range(least, 20 * cost):
        k = search.plan(task, budget)
        assert search.nfe(task, k) == priced_nfe((k + 1) * cost, k * cost, backward_nfe) <= budget
        assert search.nfe(task, k + 1) > budget
        assert search.nfe(task, k) == pytest.approx(cost * (1 + k * (1 + backward_nfe)))
    refused = rf"budget.nfe={least - 1} buys no gradient step: .* use budget.nfe >= {least}$"
    with pytest.raises(BudgetError, match=refused):
        search.plan(task, least - 1)


def test_a_run_spends_exactly_its_plan(flow):
    verifier = build_verifier("classifier_logit")
    task, counter = make_task(flow, verifier, per_class=3, max_batch_size=7)
    search = GradientSearch(lr=0.2, backward_nfe=0.75)
    k = search.plan(task, 40)  # 3·(1 + K·1.75) <= 40: K = 7
    assert k == 7
    result = search(task, 40)
    assert result.n_candidates == k + 1 and result.candidate_scores.shape == (30, k + 1)
    assert counter.count == 30 * (k + 1) * 3 and counter.backward_count == 30 * k * 3
    assert priced_nfe(counter.count, counter.backward_count, 0.75) / 30 == search.nfe(task, k) <= 40


# The ascent and the shell.


def test_a_shell_step_keeps_the_norm_moves_lr_and_leaves_gradientless_rows():
    x = candidate_noise(0, torch.arange(40), torch.zeros(40, dtype=torch.long), (1, 8, 8))
    g = candidate_noise(1, torch.arange(40), torch.zeros(40, dtype=torch.long), (1, 8, 8))
    g[3] = 0.0
    g[5, 0, 0, 0] = float("nan")
    g[7] = 2.5 * x[7]  # no tangent part
    out = shell_step(x, g, 0.3)
    radius = x.flatten(1).norm(dim=1)
    assert torch.allclose(out.flatten(1).norm(dim=1), radius, rtol=1e-6)
    stay = torch.zeros(40, dtype=torch.bool)
    stay[[3, 5, 7]] = True
    assert torch.equal(out[stay], x[stay])
    assert torch.allclose((out - x).flatten(1).norm(dim=1)[~stay], 0.3 * radius[~stay], rtol=1e-5)
    # Towards the gradient: the step's cosine with the gradient's tangent part is positive.
    assert ((out - x).flatten(1) * g.flatten(1))[~stay].sum(dim=1).gt(0).all()


@pytest.mark.parametrize("name", ["classifier_prob", "classifier_logit"])
def test_one_small_step_raises_the_score_and_the_best_iterate_beats_the_start(flow, name):
    task, _ = make_task(flow, build_verifier(name), per_class=4)
    result = GradientSearch(lr=0.05)(task, 12)  # K = 1
    first, second = result.candidate_scores[:, 0], result.candidate_scores[:, 1]
    if name == "classifier_prob":  # saturated rows (p = 1.0 in float32) cannot rise
        moved = first < 0.999
        first, second = first[moved], second[moved]
    assert (second > first).float().mean() >= 0.8 and second.mean() > first.mean()
    longer = GradientSearch(lr=0.3)(make_task(flow, build_verifier(name), per_class=4)[0], 48)
    assert torch.equal(longer.candidate_scores[:, 0], result.candidate_scores[:, 0])  # iterate 0: candidate 0
    assert torch.all(longer.scores >= longer.candidate_scores[:, 0])
    assert longer.scores.mean() > longer.candidate_scores[:, 0].mean() + 0.1 * longer.candidate_scores[:, 0].std()


def test_every_iterate_stays_on_candidate_zeros_shell_and_replay_reproduces_the_choice(flow):
    task, counter = make_task(flow, build_verifier("classifier_logit"), per_class=2, max_batch_size=8)
    result = GradientSearch(lr=0.4)(task, 30)
    assert result.chosen.max() > 0 and (result.chosen < result.n_candidates).all()
    entry = result.lineage[4]
    assert entry["algorithm"] == "gradient" and entry["initial"] == 0 and entry["gradient_steps"] == 5
    assert entry["lr"] == 0.4 and entry["iterate"] == int(result.chosen[4]) and entry["solver"] == "heun"
    assert json.loads(json.dumps(result.lineage)) == result.lineage  # JSON-ready
    start = task.noise(torch.arange(20), torch.zeros(20, dtype=torch.long))
    noises = GradientSearch.iterates(task, result.lineage)
    assert torch.allclose(noises.flatten(1).norm(dim=1), start.flatten(1).norm(dim=1), rtol=1e-6)
    assert torch.equal(noises[result.chosen == 0], start[result.chosen == 0])
    # The whole chunk's lineage, in the search's blocks: bit for bit; the winner's score is its own solve's.
    replayed = GradientSearch.replay(task, result.lineage)
    assert torch.equal(replayed, result.images)
    assert torch.equal(task.score(replayed, torch.arange(20)), result.scores)
    # A subset (other blocks): to float rounding.
    some = [result.lineage[i] for i in (13, 4)]
    assert torch.allclose(GradientSearch.replay(task, some), result.images[[13, 4]], atol=1e-5)
    # Another grid renders the same noises with its sampler (the walk is retaken on the recorded grid).
    final = SearchTask(**{**task.__dict__, "sigmas": linear_sigmas(3)})
    assert torch.equal(GradientSearch.replay(final, result.lineage), final.solve(noises, torch.arange(20)))


class FailsOnThrees:
    """classifier_logit that cannot score digit 3 (NaN, as a verifier that failed)."""

    name = "fails_on_threes"
    differentiable = True

    def __init__(self):
        self.inner = build_verifier("classifier_logit")

    def _mask(self, scores, cond):
        return torch.where(cond.to(scores.device) == 3, torch.full_like(scores, float("nan")), scores)

    def __call__(self, images, cond):
        return self._mask(self.inner(images, cond), cond)

    def differentiable_score(self, images, cond):
        return self._mask(self.inner.differentiable_score(images, cond), cond)


def test_a_failed_score_leaves_its_noise_in_place_and_the_others_ascend(flow):
    task, _ = make_task(flow, FailsOnThrees(), per_class=2)
    result = GradientSearch(lr=0.3)(task, 24)
    threes = task.conds == 3
    assert result.failed[threes].all() and (result.chosen[threes] == 0).all() and not result.failed[~threes].any()
    noises = GradientSearch.iterates(task, [{**e, "iterate": e["gradient_steps"]} for e in result.lineage])
    start = task.noise(torch.arange(20), torch.zeros(20, dtype=torch.long))
    assert torch.equal(noises[threes], start[threes]) and not torch.equal(noises[~threes], start[~threes])
    assert (result.scores[~threes] > result.candidate_scores[~threes, 0]).float().mean() >= 0.8


# Refusals.


class CheckerLike:
    name = "not_differentiable"

    def __call__(self, images, cond):
        return images.flatten(1).mean(dim=1)


class SetLevel(CheckerLike):
    name = "ranks"
    set_level = True
    differentiable = True

    def differentiable_score(self, images, cond):
        return images.flatten(1).mean(dim=1)


def test_a_verifier_without_a_differentiable_score_is_refused_in_one_line(flow):
    task, counter = make_task(flow, CheckerLike())
    with pytest.raises(ValueError) as err:
        GradientSearch()(task, 24)
    assert str(err.value) == ("search=gradient back-propagates through the verifier, but verifier=not_differentiable "
                              "does not declare a differentiable score; use one of: classifier_logit, "
                              "classifier_prob, scene_classifier")
    assert counter.count == 0
    with pytest.raises(ValueError, match="compares scores from different verifier calls"):
        GradientSearch()(make_task(flow, SetLevel())[0], 24)


def test_the_config_refuses_a_non_differentiable_verifier_and_a_bad_step(config):
    cfg = config("search=gradient", "model=scenes", "benchmark=scenes", "verifier=scene_checker", "budget.nfe=40")
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    assert str(err.value).startswith("search=gradient back-propagates through the verifier, but verifier="
                                     "scene_checker does not declare a differentiable score; use one of: ")
    assert validate(config("search=gradient", "model=scenes", "benchmark=scenes", "verifier=scene_classifier",
                           "budget.nfe=40")) == 2  # 7·(1 + K·1.75) <= 40
    with pytest.raises(ConfigError, match=r"search.lr=0.0 must be in \(0, 2\]"):
        validate(config("search=gradient", "search.lr=0.0", "budget.nfe=24"))
    with pytest.raises(ValueError, match="search.backward_nfe=-1.0 must be a finite number >= 0"):
        build_search(config("search=gradient", "search.backward_nfe=-1.0").search)


def test_the_config_option_and_the_class_share_their_defaults(config):
    from inference_scaling.config import GradientConfig

    search, typed, option = GradientSearch(), GradientConfig(name="gradient"), config("search=gradient").search
    assert (search.lr, search.backward_nfe) == (typed.lr, typed.backward_nfe) == (option.lr, option.backward_nfe)
    built = build_search(config("search=gradient", "search.lr=0.25", "search.backward_nfe=1.5").search)
    assert isinstance(built, GradientSearch) and (built.lr, built.backward_nfe) == (0.25, 1.5)


# Differentiable verifiers: declared, and scoring exactly as before.


def test_differentiable_verifiers_score_as_before_and_keep_a_graph_only_when_asked():
    assert sorted(n for n, cls in VERIFIERS.items() if getattr(cls, "differentiable", False)) == [
        "classifier_logit", "classifier_prob", "scene_classifier"]
    digits = torch.rand(12, 1, 8, 8) * 2 - 1
    labels = torch.arange(12) % 10
    scenes = torch.rand(12, 1, 16, 16) * 2 - 1
    tokens = torch.stack([torch.arange(12) % 6, torch.arange(12) % 2], dim=1)
    for name, images, cond in [("classifier_prob", digits, labels), ("classifier_logit", digits, labels),
                               ("scene_classifier", scenes, tokens)]:
        verifier = build_verifier(name)
        with torch.no_grad():  # the formulas the verifiers had before they became differentiable
            if name == "scene_classifier":
                expected = verifier.net.condition_log_prob(images, cond, "both").exp().float()
            else:
                logits = verifier.net(images).float()
                expected = (logits.softmax(-1) if name == "classifier_prob" else logits)[torch.arange(12), labels]
        with torch.enable_grad():
            plain = verifier(images, cond)
            leaf = images.clone().requires_grad_(True)
            kept = verifier.differentiable_score(leaf, cond)
        assert torch.equal(plain, expected) and not plain.requires_grad
        assert torch.equal(kept.detach(), expected) and kept.requires_grad
        (grad,) = torch.autograd.grad(kept.sum(), leaf)
        assert grad.abs().sum() > 0
        assert verifier.cost.calls == 2 and verifier.cost.images == 24


def test_scenes_gradient_search_raises_the_learned_verifiers_score():
    flow = DigitsDenoiser(load_scenes_flow())
    counter = NFECounter(flow)
    tokens = torch.stack([torch.arange(12) % 6, torch.arange(12) % 2], dim=1)
    task = SearchTask(denoiser=counter, solver=heun, sigmas=linear_sigmas(4), cost_per_sample=7, conds=tokens,
                      condition_ids=torch.arange(12), noise_shape=(1, 16, 16), seed=0,
                      verifier=build_verifier("scene_classifier"), max_batch_size=1024)
    result = GradientSearch(lr=0.3)(task, 40)  # K = 2
    assert counter.count == 12 * 3 * 7 and counter.backward_count == 12 * 2 * 7
    assert result.scores.mean() > result.candidate_scores[:, 0].mean()


# The command line.


def test_gradient_search_runs_end_to_end_and_reports_priced_nfes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the entry point in this process (tests/test_cli.py runs it as a subprocess)
    monkeypatch.setattr(sys, "argv", ["inference-scaling", "search=gradient", "budget.nfe=24", "benchmark.per_class=1",
                                      "logger=none", "progress=false", "model.final_steps=3",
                                      f"hydra.run.dir={tmp_path / 'run'}"])
    main()
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    # K = 4 steps: 5 forward solves and 4 backward solves of 3 NFEs; priced 15 + 0.75·12 = 24.
    assert metrics["n_candidates"] == 5 and metrics["nfe"] == 24
    assert metrics["nfe_search_per_condition"] == 15 and metrics["nfe_backward_search_per_condition"] == 12
    assert metrics["nfe_priced_search_per_condition"] == 24
    lineage = [json.loads(line) for line in (tmp_path / "run" / "lineage.jsonl").read_text().splitlines()]
    assert [entry["condition_id"] for entry in lineage] == list(range(10))
    # Rendered with 3 Heun steps (5 NFEs) after retaking each walk up to its winner: 3 forward and 3 backward NFEs
    # per step of the longest walk.
    longest = max(entry["iterate"] for entry in lineage)
    assert metrics["nfe_final_per_condition"] == 5 + 3 * longest
    assert metrics["nfe_backward_final_per_condition"] == 3 * longest


@pytest.mark.parametrize("args,message", [
    (["model=scenes", "benchmark=scenes", "verifier=scene_checker", "budget.nfe=40"],
     "error: search=gradient back-propagates through the verifier, but verifier=scene_checker does not declare a "
     "differentiable score; use one of: classifier_logit, classifier_prob, scene_classifier"),
    (["budget.nfe=8"], "error: budget.nfe=8 buys no gradient step: one step is a forward solve and its backward, "
                       "3 + 0.75×3 = 5.25 priced NFEs, and the last iterate's solve 3 more; use budget.nfe >= 9"),
])
def test_the_command_line_refuses_in_one_line_before_anything_is_written(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["inference-scaling", "search=gradient", *args, "logger=none", "progress=false"])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [message]
    assert not (tmp_path / "outputs").exists()
