"""Noise reproducibility, budget accounting and random search on the embedded model."""

import math

import pytest
import torch

from inference_scaling.denoiser import GuidedDenoiser
from inference_scaling.nfe import BudgetError, NFECounter, check_budget
from inference_scaling.noise import candidate_noise, noise_seed, noise_seeds
from inference_scaling.sampling import heun, linear_sigmas
from inference_scaling.search import RandomSearch, SearchTask
from inference_scaling.search.base import comparable, keep_best
from inference_scaling.verifiers import VERIFIERS, build_verifier


def test_noise_depends_only_on_seed_condition_and_index():
    conds, idx = torch.tensor([0, 0, 5, 7]), torch.tensor([0, 1, 0, 3])
    batch = candidate_noise(3, conds, idx, (1, 8, 8))
    one_by_one = torch.cat([candidate_noise(3, conds[[k]], idx[[k]], (1, 8, 8)) for k in range(4)])
    assert torch.equal(batch, one_by_one)
    assert torch.equal(candidate_noise(3, conds.flip(0), idx.flip(0), (1, 8, 8)), batch.flip(0))
    assert not torch.equal(batch[0], batch[1]) and not torch.equal(batch[0], batch[2])
    assert not torch.equal(candidate_noise(4, conds, idx, (1, 8, 8)), batch)
    assert abs(candidate_noise(0, torch.zeros(2000, dtype=torch.long), torch.arange(2000), (64,)).std() - 1) < 0.01


def test_array_seeds_are_the_scalar_seeds_and_each_noise_its_own_generators():
    """The seeds computed on arrays equal the scalar 64-bit mix, at the ends of the ranges too, and each row of
    candidate_noise is torch.randn from a generator seeded with its seed (the noises of every earlier run)."""
    conds = torch.tensor([0, 1, 2**40, 2**63 - 1, 7, 123_456_789])
    idx = torch.tensor([0, 2**31 - 1, 5, 0, 2**62, 3])
    for seed in (0, 1, 2**62, 2**64 - 1):
        assert noise_seeds(seed, conds, idx) == [noise_seed(seed, c, i) for c, i in zip(conds.tolist(), idx.tolist())]
    noise = candidate_noise(11, conds, idx, (2, 3), "torch")
    for row, (c, i) in enumerate(zip(conds.tolist(), idx.tolist())):
        generator = torch.Generator().manual_seed(noise_seed(11, c, i))
        assert torch.equal(noise[row], torch.randn((2, 3), generator=generator))


def test_counter_noise_keeps_the_contract_and_is_standard_normal():
    """noise=counter: the same (seed, condition, index) gives the same noise whatever the batch and order, other
    pairs and seeds other noises, and the values are standard normal and uncorrelated."""
    conds, idx = torch.tensor([0, 0, 5, 7, 2**40]), torch.tensor([0, 1, 0, 3, 2**31])
    batch = candidate_noise(3, conds, idx, (3, 5), "counter")
    assert batch.dtype == torch.float32 and batch.shape == (5, 3, 5)
    one_by_one = torch.cat([candidate_noise(3, conds[[k]], idx[[k]], (3, 5), "counter") for k in range(5)])
    assert torch.equal(batch, one_by_one)
    assert torch.equal(candidate_noise(3, conds.flip(0), idx.flip(0), (3, 5), "counter"), batch.flip(0))
    assert not torch.equal(batch[0], batch[1]) and not torch.equal(batch[0], batch[2])
    assert not torch.equal(candidate_noise(4, conds, idx, (3, 5), "counter"), batch)
    assert not torch.equal(candidate_noise(3, conds, idx, (3, 5), "torch"), batch)  # other numbers than torch's
    many = candidate_noise(0, torch.zeros(4000, dtype=torch.long), torch.arange(4000), (63,), "counter")  # odd size
    flat = many.flatten().double()
    assert abs(flat.mean()) < 0.005 and abs(flat.std() - 1) < 0.005
    assert abs((flat.abs() < 1).double().mean() - 0.6827) < 0.003  # the normal's mass within one σ
    assert abs(torch.corrcoef(torch.stack([many[:, 0], many[:, 1]]))[0, 1]) < 0.05  # two pairs
    assert abs(torch.corrcoef(torch.stack([many[:, 0], many[:, 32]]))[0, 1]) < 0.05  # one Box–Muller pair: r·cos, r·sin
    assert abs(torch.corrcoef(torch.stack([many[:-1, 0], many[1:, 0]]))[0, 1]) < 0.05  # neighbouring candidates


def test_counter_noise_is_the_documented_construction(monkeypatch):
    """Element k of a candidate's noise, recomputed in plain Python integers and floats: word j = splitmix64's
    finaliser of (candidate seed + (j + 1)·γ); its high half gives u = (hi + ½)·2⁻³², its low half a = lo·2⁻³²
    (both rounded to float32, as the generator computes them), and Box–Muller makes elements j and pairs + j."""
    import numpy as np

    from inference_scaling.noise import _BLOCK, _splitmix64, noise_seed

    gamma, mask = 0x9E3779B97F4A7C15, (1 << 64) - 1
    f32 = lambda v: float(np.float32(v))  # noqa: E731
    shape, n = (3, 5), 15
    pairs = (n + 1) // 2
    got = candidate_noise(11, torch.tensor([4, 2**40]), torch.tensor([9, 0]), shape, "counter").flatten(1)
    for row, (c, i) in enumerate([(4, 9), (2**40, 0)]):
        key = noise_seed(11, c, i)
        # _splitmix64 adds γ before finalising: word j is its value at (key + j·γ)
        words = [_splitmix64((key + j * gamma) & mask) for j in range(pairs)]
        u = [f32(f32(f32(w >> 32) + 0.5) * 2.0**-32) for w in words]
        a = [f32(w & 0xFFFFFFFF) * 2.0**-32 for w in words]
        radius = [math.sqrt(-2 * math.log(v)) for v in u]
        expect = ([r * math.cos(2 * math.pi * v) for r, v in zip(radius, a)]
                  + [r * math.sin(2 * math.pi * v) for r, v in zip(radius, a)])[:n]
        assert torch.allclose(got[row].double(), torch.tensor(expect, dtype=torch.float64), rtol=1e-5, atol=1e-5)
    # Blocks of rows are computed apart (`_BLOCK`: 1,747 rows of 150 pairs on the CPU): rows across a block edge
    # equal the same rows computed alone, and the whole batch computed in one block (a GPU's block size).
    many = candidate_noise(2, torch.arange(3000), torch.zeros(3000, dtype=torch.long), (300,), "counter")
    assert torch.equal(many[1745:1750], candidate_noise(2, torch.arange(1745, 1750), torch.zeros(5, dtype=torch.long),
                                                        (300,), "counter"))
    monkeypatch.setitem(_BLOCK, "cpu", 1 << 24)
    assert torch.equal(many, candidate_noise(2, torch.arange(3000), torch.zeros(3000, dtype=torch.long), (300,), "counter"))


def test_a_job_with_torch_noise_searches_renders_and_replays_and_counter_is_the_default(config):
    from inference_scaling.runner import replay, run

    cfg = config("logger=none", "progress=false", "benchmark.per_class=1", "budget.nfe=9", "model.final_steps=4",
                 "noise=torch")
    result = run(cfg)
    record = result["records"][3]
    assert torch.allclose(replay(cfg, 3, record["chosen_index"])[0], result["images"][3], atol=1e-5)
    default = config("logger=none", "progress=false", "benchmark.per_class=1", "budget.nfe=9", "model.final_steps=4")
    assert default.noise == "counter"
    assert not torch.equal(run(default)["images"], result["images"])


def test_check_budget():
    assert check_budget(12, 3) == 4 and check_budget(14, 3) == 4 and check_budget(3, 3) == 1
    with pytest.raises(BudgetError, match=r"budget.nfe=2 is below the cost of one sample \(3 NFEs.*>= 3"):
        check_budget(2, 3)
    for bad in (0, -5):
        with pytest.raises(BudgetError, match=f"budget.nfe={bad} must be a positive"):
            check_budget(bad, 3)


def test_keep_best_matches_argmax_with_ties_to_lower_index():
    best, images = torch.full((2,), float("-inf")), torch.zeros(2, 1)
    rows = torch.tensor([0, 0, 0, 1, 1])
    scores = torch.tensor([0.2, 0.9, 0.9, 0.5, 0.1])
    x = torch.arange(5.0).view(5, 1)
    keep_best(best, images, rows, scores, x)
    assert images.squeeze(1).tolist() == [1.0, 3.0] and best.tolist() == [pytest.approx(0.9), 0.5]
    keep_best(best, images, torch.tensor([0, 1]), torch.tensor([0.9, 0.7]), torch.tensor([[7.0], [8.0]]))
    assert images.squeeze(1).tolist() == [1.0, 8.0]  # a tie does not replace; a higher score does


def test_keep_best_follows_its_rule_with_distinct_and_repeated_rows_and_returns_the_kept_positions():
    """Both of keep_best's paths (one candidate per condition, several) against the rule written out in Python:
    a candidate is kept if nothing is held or it beats the held best and every earlier candidate of its condition in
    the batch; failures (NaN, ±inf) rank as −inf."""
    gen = torch.Generator().manual_seed(0)
    values = torch.tensor([0.1, 0.5, 0.5, 0.9, float("nan"), float("inf"), float("-inf")])
    for trial in range(200):
        c = 6
        best, images = torch.full((c,), float("nan")), torch.zeros(c, 1)
        expect_best, expect_images = [float("nan")] * c, [0.0] * c
        for step in range(3):
            n = int(torch.randint(1, 9, (1,), generator=gen))
            distinct = trial % 2 == 0
            rows = (torch.randperm(c, generator=gen)[:min(n, c)] if distinct
                    else torch.randint(0, c, (n,), generator=gen))
            scores = values[torch.randint(0, len(values), (len(rows),), generator=gen)]
            x = torch.arange(float(len(rows))).view(-1, 1) + 10 * step
            kept = keep_best(best, images, rows, scores, x)
            expected = {}
            for pos, (row, score) in enumerate(zip(rows.tolist(), comparable(scores).tolist())):
                held = expect_best[row]
                if math.isnan(held) or score > held:
                    expect_best[row], expect_images[row] = score, float(x[pos])
                    expected[row] = pos
            assert sorted(kept.tolist()) == sorted(expected.values())
            assert best.tolist() == pytest.approx(expect_best, nan_ok=True)
            assert images.squeeze(1).tolist() == expect_images


def make_task(flow, verifier, per_class=4, max_batch_size=1024, guidance=1.0, seed=0):
    counter = NFECounter(flow)
    labels = torch.arange(10).repeat(per_class)
    task = SearchTask(
        denoiser=GuidedDenoiser(counter, guidance, torch.tensor([10])), solver=heun, sigmas=linear_sigmas(2),
        cost_per_sample=3 * (1 if guidance == 1.0 else 2), conds=labels, condition_ids=torch.arange(len(labels)),
        noise_shape=(1, 8, 8), seed=seed, verifier=verifier, max_batch_size=max_batch_size,
    )
    return task, counter


@pytest.mark.parametrize("budget,guidance", [(3, 1.0), (11, 1.0), (24, 1.0), (13, 2.0)])
def test_spending_never_exceeds_budget(flow, budget, guidance):
    verifier = build_verifier("classifier_prob")
    task, counter = make_task(flow, verifier, guidance=guidance)
    result = search_result = RandomSearch()(task, budget)
    n_cond = len(task.condition_ids)
    assert result.n_candidates == budget // task.cost_per_sample
    assert counter.count == n_cond * search_result.n_candidates * task.cost_per_sample <= n_cond * budget
    with pytest.raises(BudgetError):
        RandomSearch()(task, task.cost_per_sample - 1)


def test_selection_is_deterministic_and_batch_size_independent(flow):
    verifier = build_verifier("classifier_prob")
    results = [RandomSearch()(make_task(flow, verifier, max_batch_size=b)[0], 24) for b in (1024, 7, 1024)]
    for other in results[1:]:
        assert torch.equal(other.chosen, results[0].chosen)
        assert torch.allclose(other.images, results[0].images, atol=1e-5)
    assert results[0].chosen.unique().numel() > 1  # not trivially choosing index 0
    # The kept image is the chosen candidate's image, re-rendered from its noise alone.
    task, _ = make_task(flow, verifier)
    rows = torch.arange(len(task.condition_ids))
    rerendered = task.solve(task.noise(rows, results[0].chosen), rows)
    assert torch.allclose(rerendered, results[0].images, atol=1e-5)
    assert torch.allclose(verifier(rerendered, task.conds), results[0].scores, atol=1e-5)


@pytest.mark.parametrize("name", ["classifier_prob", "classifier_logit"])
def test_verifier_score_rises_with_budget(flow, name):
    verifier = build_verifier(name)
    means = [RandomSearch()(make_task(flow, verifier, per_class=10)[0], b).scores.mean().item() for b in (3, 12, 48)]
    assert means[0] < means[1] < means[2], means


def test_unknown_verifier_and_search_names():
    from inference_scaling.search import SEARCHES, build_search

    with pytest.raises(ValueError, match="unknown verifier 'clip'; choose one of: " + ", ".join(sorted(VERIFIERS))):
        build_verifier("clip")
    with pytest.raises(ValueError, match="unknown search 'beam'; choose one of: " + ", ".join(sorted(SEARCHES))):
        build_search("beam")
