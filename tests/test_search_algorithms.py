"""Zero-order search, search over paths, FK steering and evolutionary search: geometry, levels, NFEs, replay."""

import json

import pytest
import torch

from inference_scaling.denoiser import GuidedDenoiser
from inference_scaling.models.digits import DigitsDenoiser, load_flow
from inference_scaling.nfe import BudgetError, NFECounter
from inference_scaling.noise import candidate_noise
from inference_scaling.sampling import euler, heun, linear_sigmas, solver_nfe
from inference_scaling.search.base import SearchTask, renoise, segment_sigmas
from inference_scaling.search.evolutionary import EvolutionarySearch, mutate
from inference_scaling.search.fk_steering import FKSteering, potential, resample
from inference_scaling.search.paths import SearchOverPaths
from inference_scaling.search.zero_order import ZeroOrderSearch, neighbour
from inference_scaling.verifiers import build_verifier

ALGORITHMS = {
    "zero_order": ZeroOrderSearch,
    "paths": SearchOverPaths,
    "fk_steering": FKSteering,
    "evolutionary": EvolutionarySearch,
}


pytestmark = pytest.mark.usefixtures("one_thread")


class Recorder:
    """A denoiser that remembers the level and the input of every call."""

    def __init__(self, denoiser):
        self.denoiser = denoiser
        self.calls: list[tuple[float, torch.Tensor]] = []

    def __call__(self, x, sigma, cond):
        assert torch.all(sigma == sigma[0]), "one level per call"
        self.calls.append((sigma[0].item(), x.clone()))
        return self.denoiser(x, sigma, cond)


def make_task(denoiser, verifier, per_class=2, solver=heun, steps=2, guidance=1.0, max_batch_size=1024, seed=0):
    counter = NFECounter(denoiser)
    labels = torch.arange(10).repeat(per_class)
    sigmas = linear_sigmas(steps)
    task = SearchTask(
        denoiser=GuidedDenoiser(counter, guidance, torch.tensor([10])), solver=solver, sigmas=sigmas,
        cost_per_sample=solver_nfe(solver.__name__, sigmas) * (1 if guidance == 1.0 else 2), conds=labels,
        condition_ids=torch.arange(len(labels)), noise_shape=(1, 8, 8), seed=seed, verifier=verifier,
        max_batch_size=max_batch_size,
    )
    return task, counter


def free_parameter(search, task, budget):
    """The quantity each algorithm derives from the budget (K, N, K particles, G)."""
    for name in ("iterations", "beam_width", "particles", "generations"):
        if hasattr(search, name):
            return getattr(search, name)(task, budget)
    raise AssertionError(f"{type(search).__name__} derives nothing from the budget")


# Zero-order search: neighbours on the Gaussian shell.


@pytest.mark.parametrize("lam", [0.05, 0.6, 1.5, 2.0])
def test_neighbour_keeps_the_norm_and_lies_at_distance_lambda(lam):
    pivot = candidate_noise(0, torch.zeros(50, dtype=torch.long), torch.zeros(50, dtype=torch.long), (1, 8, 8))
    direction = candidate_noise(0, torch.arange(50), torch.ones(50, dtype=torch.long), (1, 8, 8))
    n = neighbour(pivot, direction, lam)
    radius = pivot.flatten(1).norm(dim=1)
    assert torch.allclose(n.flatten(1).norm(dim=1), radius, rtol=1e-6)
    assert torch.allclose((n - pivot).flatten(1).norm(dim=1), lam * radius, rtol=1e-5, atol=1e-6)
    assert n.unique(dim=0).shape[0] == (50 if lam < 2 else 1)  # fifty directions, one antipode


def test_zero_order_candidates_are_neighbours_of_the_current_pivot(flow, verifier):
    recorder = Recorder(flow)
    task, _ = make_task(recorder, verifier, per_class=2)
    search = ZeroOrderSearch(n=3, lam=0.4)
    result = search(task, 3 * (1 + 3 * 3))  # K = 3 iterations
    c, N = 20, 3
    inputs = torch.cat([x for sigma, x in recorder.calls if sigma == 1.0])  # what each solve started from
    assert inputs.shape[0] == c * (1 + 3 * N)
    pivot, pivot_score = inputs[:c], result.candidate_scores[:, 0]
    history = [[0] for _ in range(c)]
    assert torch.equal(pivot, task.noise(torch.arange(c), torch.zeros(c, dtype=torch.long)))
    for k in range(3):
        candidates = inputs[c + k * c * N:c + (k + 1) * c * N].view(c, N, -1)
        p = pivot.flatten(1)[:, None]
        assert torch.allclose(candidates.norm(dim=2), p.norm(dim=2).expand(c, N), rtol=1e-5)
        assert torch.allclose((candidates - p).norm(dim=2), 0.4 * p.norm(dim=2).expand(c, N), rtol=1e-4)
        # The best candidate becomes the pivot only if it beats it.
        s = result.candidate_scores[:, 1 + k * N:1 + (k + 1) * N]
        moved = s.max(dim=1).values > pivot_score
        pivot = torch.where(moved[:, None, None, None], candidates[torch.arange(c), s.argmax(dim=1)].view_as(pivot), pivot)
        pivot_score = torch.maximum(pivot_score, s.max(dim=1).values)
        for row in moved.nonzero().squeeze(1).tolist():
            history[row].append(1 + k * N + int(s[row].argmax()))
    assert torch.equal(result.scores, pivot_score)
    assert [e["pivots"] for e in result.lineage] == history and any(len(h) > 1 for h in history)
    assert [h[-1] for h in history] == result.chosen.tolist()


# Search over paths: the forward process and the levels it visits.


def test_renoise_is_the_forward_process_of_the_interpolant():
    gen = torch.Generator().manual_seed(0)
    x0 = torch.rand(1, 64, generator=gen) * 2 - 1
    sigma, sigma_up = 0.3, 0.55
    x = (1 - sigma) * x0 + sigma * torch.randn(20000, 64, generator=gen)
    noise = renoise(x, sigma, sigma_up, torch.randn(20000, 64, generator=gen)) - (1 - sigma_up) * x0
    assert noise.mean().abs() < 0.01 and abs(noise.std() - sigma_up) < 0.01 * sigma_up  # x_σ' = (1−σ')x0 + σ'ε
    eps = torch.randn(5, 64, generator=gen)
    assert torch.equal(renoise(x[:5], sigma, sigma, eps), x[:5])  # no step, no change
    assert torch.equal(renoise(x[:5], sigma, 1.0, eps), eps)  # all the way up: pure fresh noise


def test_segments_follow_the_search_grid():
    grid = linear_sigmas(4)
    assert torch.equal(segment_sigmas(grid, 1.0, 0.0), grid)
    assert segment_sigmas(grid, 0.7, 0.35).tolist() == pytest.approx([0.7, 0.525, 0.35])  # 1.4 grid steps -> 2
    assert segment_sigmas(grid, 0.3, 0.29).tolist() == pytest.approx([0.3, 0.29])  # never fewer than one step


def test_paths_rounds_step_by_delta_f_up_and_delta_b_down():
    rounds = SearchOverPaths(m=2, sigma_start=0.5, delta_f=0.2, delta_b=0.35).rounds()
    expected = [(0.5, 0.7, 0.35), (0.35, 0.55, 0.2), (0.2, 0.4, 0.05), (0.05, 0.25, 0.0)]  # last one clipped to 0
    assert [pytest.approx(r) for r in rounds] == expected
    assert rounds[-1][2] == 0.0
    assert SearchOverPaths(sigma_start=0.9, delta_f=0.3, delta_b=0.5).rounds()[0] == pytest.approx((0.9, 1.0, 0.7))


def test_search_over_paths_visits_exactly_the_implied_levels(flow, verifier):
    recorder = Recorder(flow)
    task, _ = make_task(recorder, verifier, solver=euler, steps=2)  # every segment here is one Euler step
    search = SearchOverPaths(m=2, sigma_start=0.5, delta_f=0.2, delta_b=0.35)
    search(task, search.path_cost(task) * 2)
    visited = [sigma for sigma, _ in recorder.calls]
    # start; then per round: the renoised level σ + Δf (solve) and the end level (x0-prediction), none at 0.
    assert visited == pytest.approx([1.0, 0.7, 0.35, 0.55, 0.2, 0.4, 0.05, 0.25])
    assert [x.shape[0] for _, x in recorder.calls] == [20 * 2] + [20 * 2 * 2] * 7  # N paths, then N·M branches


def test_the_chosen_path_survived_every_selection(flow, verifier):
    task, _ = make_task(flow, verifier)
    search = SearchOverPaths(m=3)
    N, M = search.beam_width(task, 60), 3
    result = search(task, 60)
    for c, entry in enumerate(result.lineage):
        for r, step in enumerate(entry["rounds"]):
            round_scores = result.candidate_scores[c, r * N * M:(r + 1) * N * M]
            mine = round_scores[step["noise"] - N - r * N * M]
            assert (round_scores > mine).sum() < N  # among the top N of its round's N·M branches
        assert mine == round_scores.max() == result.scores[c]  # and the best of the last round


# NFEs: the closed forms against the one counter.


@pytest.mark.parametrize("name", ALGORITHMS)
@pytest.mark.parametrize("solver,steps,guidance,budget", [(heun, 2, 1.0, 50), (heun, 4, 2.0, 300), (euler, 3, 1.0, 100)])
def test_nfe_spent_equals_the_formula(flow, verifier, name, solver, steps, guidance, budget):
    task, counter = make_task(flow, verifier, per_class=1, solver=solver, steps=steps, guidance=guidance)
    search = ALGORITHMS[name]()
    free = free_parameter(search, task, budget)
    result = search(task, budget)
    assert counter.count == 10 * search.nfe(task, free) <= 10 * budget
    assert search.nfe(task, free + 1) > budget  # the budget buys no more
    assert result.verifier_calls == 10 * result.n_candidates == result.candidate_scores.numel()


# Replay: the lineage re-renders the chosen sample from the seed alone.


@pytest.mark.parametrize("name", ALGORITHMS)
def test_replaying_the_lineage_reproduces_the_chosen_sample_bit_for_bit(flow, verifier, name):
    # One row per denoiser call in search and replay: CPU matmuls round differently at other batch sizes, so bits
    # match only for equal batch composition (the next test checks other batch sizes to float tolerance).
    task, _ = make_task(flow, verifier, per_class=1, max_batch_size=1)
    search = ALGORITHMS[name]()
    result = search(task, 60)
    lineage = json.loads(json.dumps(result.lineage))  # the record survives a results file
    assert [(e["algorithm"], e["condition_id"]) for e in lineage] == [(name, c) for c in range(10)]
    assert torch.equal(search.replay(task, lineage), result.images)
    assert torch.equal(search.replay(task, lineage[3:4])[0], result.images[3])  # one condition alone


@pytest.mark.parametrize("name", ALGORITHMS)
def test_selection_is_deterministic_and_batch_size_independent(flow, verifier, name):
    results = [ALGORITHMS[name]()(make_task(flow, verifier, max_batch_size=b)[0], 60) for b in (1024, 7)]
    assert torch.equal(results[0].chosen, results[1].chosen)
    assert results[0].lineage == results[1].lineage
    assert torch.allclose(results[0].images, results[1].images, atol=1e-5)
    task, _ = make_task(flow, verifier)
    replayed = ALGORITHMS[name].replay(task, results[0].lineage)
    assert torch.allclose(verifier(replayed, task.conds), results[0].scores, atol=1e-4)


# Budgets that buy nothing are refused with what would fit.


@pytest.mark.parametrize("search,budget,message", [
    (ZeroOrderSearch(n=4), 12, r"budget.nfe=12 buys 4 sample\(s\); zero-order search needs 1 \+ N = 5 .*budget.nfe >= 15"),
    (SearchOverPaths(), 9, r"budget.nfe=9 is below the cost of one path .*\(10 NFEs with M=2, 2 rounds.*budget.nfe >= 10"),
    (FKSteering(), 9, r"budget.nfe=9 is below the cost of one FK-steering particle \(10 NFEs.*budget.nfe >= 10"),
    (EvolutionarySearch(population=8, elites=2), 39,
     r"budget.nfe=39 buys 13 sample\(s\); evolutionary search needs P \+ \(P − E\) = 14 .*budget.nfe >= 42"),
])
def test_budget_refusals_say_what_would_fit(flow, verifier, search, budget, message):
    task, counter = make_task(flow, verifier)
    with pytest.raises(BudgetError, match=message):
        search(task, budget)
    with pytest.raises(BudgetError, match=r"below the cost of one sample \(3 NFEs"):
        search(task, 2)
    assert counter.count == 0  # refused before spending


@pytest.mark.parametrize("make,message", [
    (lambda: ZeroOrderSearch(lam=2.5), r"search.lam=2.5 must be in \(0, 2\]"),
    (lambda: SearchOverPaths(delta_f=0.3, delta_b=0.3), "need 0 < search.delta_f < search.delta_b"),
    (lambda: SearchOverPaths(sigma_start=1.0), r"search.sigma_start=1.0 must be in \(0, 1\)"),
    (lambda: FKSteering(potential="min"), "search.potential='min'; choose one of: max, add, diff"),
    (lambda: EvolutionarySearch(population=4, elites=4), "need 1 <= search.elites < search.population"),
])
def test_bad_parameters_are_refused(make, message):
    with pytest.raises(ValueError, match=message):
        make()


class SetLevel:
    """A verifier whose scores are relative to its call's candidates (like the rank ensemble); records call sizes."""

    set_level = True
    name = "set_level"

    def __init__(self, verifier):
        self.verifier = verifier
        self.cost = verifier.cost
        self.sizes: list[int] = []

    def __call__(self, images, cond, groups):
        assert len(groups) == len(images)  # set-level verifiers are told which candidates share a condition
        self.sizes.append(len(images))
        return self.verifier(images, cond)


def test_set_level_verifiers_see_whole_conditions_or_are_refused(flow, verifier):
    for search, per_condition in [(SearchOverPaths(m=2), 4 * 2), (FKSteering(), 4)]:  # N = 4 paths, K = 4 particles
        recorder = SetLevel(verifier)
        search(make_task(flow, recorder, max_batch_size=7)[0], 40)
        assert recorder.sizes and all(size == per_condition for size in recorder.sizes), recorder.sizes
    for search in (ZeroOrderSearch(), EvolutionarySearch()):
        with pytest.raises(ValueError, match="compares scores from different verifier calls; verifier 'set_level'"):
            search(make_task(flow, SetLevel(verifier))[0], 60)


# FK steering: potentials, resampling, and fresh noise after resampling.


def test_potentials_and_resampling():
    r1, r2 = torch.tensor([0.2, 0.9]), torch.tensor([0.5, 0.4])
    assert torch.equal(potential("max", r1, None)[0], r1)
    assert potential("max", r2, r1)[0].tolist() == pytest.approx([0.5, 0.9])
    assert potential("add", r2, r1)[0].tolist() == pytest.approx([0.7, 1.3])
    assert potential("diff", r2, r1)[0].tolist() == pytest.approx([0.3, -0.5])
    u = torch.tensor([[0.1, 0.3, 0.6, 0.9]])
    assert resample(torch.zeros(1, 4), u).tolist() == [[0, 1, 2, 3]]  # equal weights: inverse CDF of u
    assert resample(torch.tensor([[0.0, 0.0, 50.0, 0.0]]), u).tolist() == [[2, 2, 2, 2]]
    assert resample(torch.log(torch.tensor([[0.5, 0.0, 0.0, 0.5]])), u).tolist() == [[0, 0, 3, 3]]


def test_resampled_copies_part_ways_with_fresh_noise(flow, verifier):
    task, _ = make_task(flow, verifier)
    search = FKSteering(lam=1e4)  # the first resampling copies the best particle into every slot
    result = search(task, search.particle_cost(task) * 4)
    first = result.candidate_scores[:, :4]
    assert [e["initial"] for e in result.lineage] == first.argmax(dim=1).tolist()  # every slot holds the best
    after = result.candidate_scores[:, 4:8]  # the four copies, renoised and scored at the next level
    assert (after.max(dim=1).values > after.min(dim=1).values).all()


def test_children_mutate_the_elites_in_rank_order(flow, verifier):
    recorder = Recorder(flow)
    task, _ = make_task(recorder, verifier)
    search = EvolutionarySearch(population=5, elites=2, mutation=0.3)
    result = search(task, 3 * (5 + 3 * 2))  # G = 3 generations
    c, P, E = 20, 5, 2
    inputs = torch.cat([x for sigma, x in recorder.calls if sigma == 1.0])
    assert inputs.shape[0] == c * (P + 2 * (P - E))
    members, noises = torch.arange(P).repeat(c, 1), inputs[:c * P].view(c, P, -1)
    for g in (1, 2):
        ranked = result.candidate_scores.gather(1, members).argsort(dim=1, descending=True, stable=True)[:, :E]
        children = inputs[c * P + (g - 1) * c * (P - E):c * P + g * c * (P - E)].view(c, P - E, -1)
        index = P + (g - 1) * (P - E) + torch.arange(P - E)
        for j in range(P - E):
            parent = noises[torch.arange(c), ranked[:, j % E]]
            fresh = task.noise(torch.arange(c), index[j].repeat(c)).flatten(1)
            assert torch.equal(children[:, j], mutate(parent, fresh, 0.3))
        members = torch.cat([members.gather(1, ranked), index.repeat(c, 1)], dim=1)
        noises = torch.cat([noises[torch.arange(c)[:, None], ranked], children], dim=1)
    assert torch.equal(result.chosen, result.candidate_scores.argmax(dim=1))


def test_mutation_preserves_the_gaussian():
    gen = torch.Generator().manual_seed(0)
    child = mutate(torch.randn(2000, 64, generator=gen), torch.randn(2000, 64, generator=gen), 0.5)
    assert abs(child.std() - 1) < 0.01 and child.mean().abs() < 0.01


# End to end: more budget, better selected samples.


@pytest.mark.parametrize("name,budgets", [("zero_order", (15, 51, 195)), ("paths", (10, 40, 160)),
                                          ("fk_steering", (10, 40, 160)), ("evolutionary", (42, 114, 258))])
def test_verifier_score_rises_with_budget(flow, verifier, name, budgets):
    search = ALGORITHMS[name]()
    means = [search(make_task(flow, verifier, per_class=10)[0], b).scores.mean().item() for b in budgets]
    assert means[0] < means[1] < means[2], means


# States carried between rounds stay on the model's device (SearchTask.hold) unless they exceed hold_bytes.


def test_hold_keeps_states_where_they_are_until_the_limit(flow, verifier):
    task, _ = make_task(flow, verifier)
    small = torch.empty(4, 1, 8, 8, device="meta")  # a meta tensor cannot be copied to the host: hold must not try
    assert task.hold(small) is small
    task.hold_bytes = small.numel() * small.element_size() - 1
    with pytest.raises((NotImplementedError, RuntimeError)):  # over the limit: hold copies it to the host
        task.hold(small)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("name", ALGORITHMS)
def test_cuda_search_matches_cpu_and_returns_host_images(verifier, name):
    cpu_task, _ = make_task(DigitsDenoiser(load_flow()), verifier)
    gpu_task, _ = make_task(DigitsDenoiser(load_flow(device="cuda")), build_verifier("classifier_prob", device="cuda"))
    gpu_task.device = "cuda"
    a, b = (ALGORITHMS[name]()(task, 60) for task in (cpu_task, gpu_task))
    assert b.images.device.type == "cpu"
    assert torch.allclose(a.images, b.images, atol=1e-3)
