"""The stochastic sampler (model.solver=sde): its marginals, its noise contract, every search on it, its refusals."""

import json
import math

import pytest
import torch
from test_sampling import MU, S, _a, gaussian_velocity

from inference_scaling.config import ConfigError, validate
from inference_scaling.denoiser import GuidedDenoiser
from inference_scaling.models.digits import DigitsDenoiser, load_flow
from inference_scaling.nfe import NFECounter
from inference_scaling.sampling import euler, heun, is_stochastic, linear_sigmas, sde, solver_nfe
from inference_scaling.search import SEARCHES
from inference_scaling.search.base import SearchTask, solve_between
from inference_scaling.search.evolutionary import EvolutionarySearch
from inference_scaling.search.fk_steering import FKSteering
from inference_scaling.search.paths import SearchOverPaths
from inference_scaling.search.random import RandomSearch
from inference_scaling.search.zero_order import ZeroOrderSearch

pytestmark = pytest.mark.usefixtures("one_thread")

N = 20_000  # samples of the Gaussian toy: the tolerances below are 4 standard errors of this many


def toy_sde(sigmas, scale, seed=0, noise=True):
    """SDE samples of the Gaussian toy from x_1 ~ N(0, 1) on `sigmas` (float64), with the starting noises."""
    gen = torch.Generator().manual_seed(seed)
    x1 = torch.randn(N, 1, dtype=torch.float64, generator=gen)
    z = (lambda i: torch.randn(N, 1, dtype=torch.float64, generator=gen)) if noise else (lambda i: torch.zeros(N, 1))
    return x1, sde(gaussian_velocity, x1, sigmas, None, noise=z, scale=scale)


def assert_normal(x, mean, std):
    """Sample mean and standard deviation within 4 standard errors of N(mean, std²)."""
    assert abs(x.mean().item() - mean) < 4 * std / math.sqrt(len(x)), (x.mean().item(), mean)
    assert abs(x.std().item() - std) < 4 * std / math.sqrt(2 * len(x)), (x.std().item(), std)


# The sampler on the closed-form Gaussian toy of test_sampling: x0 ~ N(MU, S²), x_σ ~ N((1 − σ)·MU, a(σ)²).


@pytest.mark.parametrize("scale", [1.0, 3.0])
def test_sde_marginals_match_the_closed_form_and_the_ode(scale):
    # 500 steps: the discretisation error (first order) is below one standard error of N samples.
    for sigma_end in (0.4, 0.0):
        sigmas = linear_sigmas(500, 1.0, sigma_end)
        x1, x = toy_sde(sigmas, scale)
        mean, std = (1 - sigma_end) * MU, _a(torch.tensor(sigma_end, dtype=torch.float64)).item()
        assert_normal(x, mean, std)
        assert_normal(euler(gaussian_velocity, x1, sigmas, None), mean, std)  # the ODE's marginal, same grid
        # A different sampler of the same marginal: the ODE maps x_1 monotonically (correlation 1), the SDE does not.
        assert torch.corrcoef(torch.cat([x1, x], dim=1).T)[0, 1] < 0.995
    # The check sees a wrong SDE: the same drift without its noise shrinks the variance.
    _, x = toy_sde(linear_sigmas(500), scale, noise=False)
    with pytest.raises(AssertionError):
        assert_normal(x, MU, S)


def test_more_diffusion_forgets_more_of_the_start():
    correlations = [torch.corrcoef(torch.cat(toy_sde(linear_sigmas(100), scale), dim=1).T)[0, 1]
                    for scale in (0.5, 1.0, 3.0)]
    assert correlations[0] > correlations[1] > correlations[2]


def test_scale_zero_is_euler_bit_for_bit_and_no_noise_is_drawn():
    flow = DigitsDenoiser(load_flow())
    x = torch.randn(12, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(12) % 10
    for sigmas in (linear_sigmas(4), linear_sigmas(3, 0.8, 0.3)):
        assert torch.equal(sde(flow, x, sigmas, labels, scale=0.0), euler(flow, x, sigmas, labels))
    x1 = torch.linspace(-2, 2, 9, dtype=torch.float64)[:, None]
    assert torch.equal(sde(gaussian_velocity, x1, linear_sigmas(7), None, scale=0.0),
                       euler(gaussian_velocity, x1, linear_sigmas(7), None))


def test_last_step_to_zero_is_the_x0_prediction_with_no_noise():
    x = torch.linspace(-2, 2, 9, dtype=torch.float64)[:, None]
    drawn = []
    sigmas = torch.tensor([0.3, 0.0], dtype=torch.float64)
    out = sde(gaussian_velocity, x, sigmas, None, noise=lambda i: drawn.append(i) or torch.ones_like(x), scale=2.0)
    v = gaussian_velocity(x, torch.full((9,), 0.3, dtype=torch.float64), None)
    assert drawn == [] and torch.equal(out, x - 0.3 * v)
    sde(gaussian_velocity, x, linear_sigmas(3), None, noise=lambda i: drawn.append(i) or torch.ones_like(x), scale=2.0)
    assert drawn == [0, 1]  # steps 1 → 2/3 and 2/3 → 1/3 draw noise, the step to 0 does not


def test_one_nfe_per_step():
    counter = NFECounter(gaussian_velocity)
    sde(counter, torch.zeros(4, 1), linear_sigmas(5), None, noise=lambda i: torch.randn(4, 1), scale=1.0)
    assert counter.count == 4 * 5 == 4 * solver_nfe("sde", linear_sigmas(5))
    assert is_stochastic(sde) and not is_stochastic(euler) and not is_stochastic(heun)


def test_sampler_without_noise_is_refused():
    with pytest.raises(ValueError, match=r"^solver 'sde' draws fresh noise at every step: pass noise="):
        sde(gaussian_velocity, torch.zeros(2, 1), linear_sigmas(2), None)


# The noise contract: step t of candidate i of condition c under seed s depends on (s, c, i, t) alone.


def make_task(flow, verifier, solver=sde, steps=4, per_class=1, max_batch_size=1024, seed=0, scale=1.0, classes=10):
    labels = torch.arange(classes).repeat(per_class)
    sigmas = linear_sigmas(steps)
    return SearchTask(denoiser=GuidedDenoiser(NFECounter(flow), 1.0, torch.tensor([10])), solver=solver,
                      sigmas=sigmas, cost_per_sample=solver_nfe(solver.__name__, sigmas), conds=labels,
                      condition_ids=torch.arange(len(labels)), noise_shape=(1, 8, 8), seed=seed, verifier=verifier,
                      max_batch_size=max_batch_size, sde_scale=scale)


def test_solves_are_reproducible_and_batch_size_independent(flow, verifier):
    task = make_task(flow, verifier, per_class=2)
    rows, index = torch.arange(20), torch.arange(20) % 3
    x = task.noise(rows, index)
    full = task.solve(x, rows, index)
    assert torch.equal(task.solve(x, rows, index), full)  # reproducible
    small = make_task(flow, verifier, per_class=2, max_batch_size=7).solve(x, rows, index)
    assert torch.allclose(small, full, atol=1e-5)  # batch size: only the network's float rounding differs
    perm = torch.randperm(20, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(task.solve(x[perm], rows[perm], index[perm]), full[perm], atol=1e-5)  # order
    noise = task.step_noise(rows, index)
    assert torch.equal(task.step_noise(rows[5:9], index[5:9])(2), noise(2)[5:9])  # each row's own draw
    assert not torch.equal(noise(0), noise(1))  # a new draw each step
    assert not torch.equal(noise(0), task.noise(rows, index))  # never a candidate noise
    other = task.solve(x, rows, index + 3)  # same start, other index: another path
    assert (other - full).flatten(1).norm(dim=1).min() > 0.1
    reseeded = make_task(flow, verifier, per_class=2, seed=1).solve(x, rows, index)
    assert (reseeded - full).flatten(1).norm(dim=1).min() > 0.1
    ode = make_task(flow, verifier, solver=euler, per_class=2).solve(x, rows)
    assert torch.equal(make_task(flow, verifier, per_class=2, scale=0.0).solve(x, rows, index), ode)


def test_missing_indices_are_refused_in_one_line(flow, verifier):
    task = make_task(flow, verifier)
    rows = torch.arange(10)
    x = task.noise(rows, torch.zeros(10, dtype=torch.long))
    for call in (lambda: task.solve(x, rows), lambda: task.solve_and_score(x, rows),
                 lambda: solve_between(task, x, rows, 1.0, 0.5)):
        with pytest.raises(ValueError, match=r"^solver 'sde' draws noise at every step from each row's candidate "
                                             r"index, but this search solved rows without indices=") as err:
            call()
        assert "\n" not in str(err.value)
    ode = make_task(flow, verifier, solver=heun)  # ODE solvers ignore indices
    assert torch.equal(ode.solve(x, rows, torch.arange(10)), ode.solve(x, rows))


# Every search that passes indices runs on the SDE, and its replay reproduces the chosen sample.

SDE_SEARCHES = {
    "random": RandomSearch,
    "zero_order": lambda: ZeroOrderSearch(n=3),
    "paths": SearchOverPaths,
    "fk_steering": FKSteering,
    "fk_steering_no_renoise": lambda: FKSteering(delta_f=0.0),
    "evolutionary": lambda: EvolutionarySearch(population=4, elites=1),
}


def replay(search, task, result):
    if result.lineage is None:  # random search: the chosen index names the noise and the solver's draws
        rows = torch.arange(len(task.condition_ids))
        return task.solve(task.noise(rows, result.chosen), rows, result.chosen)
    return search.replay(task, json.loads(json.dumps(result.lineage)))


@pytest.mark.parametrize("name", SDE_SEARCHES)
def test_every_search_runs_on_the_sde_and_its_replay_reproduces_the_choice(flow, verifier, name):
    # One row per denoiser call in search and replay, so the network rounds alike and bits must match.
    task = make_task(flow, verifier, steps=6, max_batch_size=1, classes=4)
    search = SDE_SEARCHES[name]()
    result = search(task, 60)
    assert torch.equal(replay(search, task, result), result.images)
    assert torch.allclose(verifier(result.images, task.conds), result.scores, atol=1e-5)


class Recorder:
    """A denoiser that remembers the level and input of every call."""

    def __init__(self, denoiser):
        self.denoiser, self.calls = denoiser, []

    def __call__(self, x, sigma, cond):
        self.calls.append((sigma[0].item(), x.clone()))
        return self.denoiser(x, sigma, cond)


def test_fk_without_renoising_parts_resampled_copies_on_the_sde(flow, verifier):
    recorder = Recorder(flow)
    task = make_task(recorder, verifier, steps=8)
    search = FKSteering(delta_f=0.0, lam=1000.0)  # near-greedy resampling: many copies of the best particles
    k = search.particles(task, 96)
    search(task, 96)
    # The last segment, 0.25 → 0, is two steps: it starts from the resampled states and steps 0.25 → 0.125.
    (_, start), (_, after) = [(s, x) for s, x in recorder.calls if s in (0.25, 0.125)][-2:]
    start, after = start.view(10, k, -1), after.view(10, k, -1)
    copies = [len(start[c].unique(dim=0)) for c in range(10)]
    assert min(copies) < k  # resampling made copies ...
    assert all(len(after[c].unique(dim=0)) == k for c in range(10))  # ... which the SDE step parts


def test_fk_without_renoising_is_refused_where_copies_would_stay_identical(flow, verifier):
    rule = "search.delta_f=0 leaves resampled particles identical under the deterministic solver"
    for task, what in [(make_task(flow, verifier, solver=heun), "'heun': use"),
                       (make_task(flow, verifier, scale=0.0), "'sde' with sde_scale=0: use")]:
        with pytest.raises(ValueError, match=f"^{rule} {what}"):
            FKSteering(delta_f=0.0)(task, 96)
    with pytest.raises(ValueError, match=r"^search.delta_f=0: the last segment, σ = 0.25 to 0, is one solver step"):
        FKSteering(delta_f=0.0)(make_task(flow, verifier, steps=4), 96)
    with pytest.raises(ValueError, match=r"search.delta_f=-0.1 must be in \[0, 1\]"):
        FKSteering(delta_f=-0.1)


# The command line: model.solver=sde and model.sde_scale, and what the checks refuse.


@pytest.mark.parametrize("overrides,message", [
    (["model.solver=sde", "model.sde_scale=-1"], "model.sde_scale=-1.0 must be >= 0.0"),
    (["model.solver=sde", "model.final_steps=4"], "model.solver=sde draws fresh noise at every step, so "
                                                  "model.final_steps=4 would render another sample"),
    (["model.solver=sde", "search=gradient"], "model.solver=sde draws its noise from each candidate's index, which "
                                              "search=gradient does not pass; use an ODE solver or search: random, "),
    (["search=fk_steering", "search.delta_f=0", "budget.nfe=96"], "search.delta_f=0 leaves resampled particles "
                                                                   "identical under the deterministic solver 'heun'"),
    (["model.solver=sde", "search=fk_steering", "search.delta_f=0", "budget.nfe=96"],
     "search.delta_f=0: the last segment, σ = 0.25 to 0, is one solver step"),
])
def test_config_checks_refuse_what_the_sde_cannot_do(config, overrides, message):
    with pytest.raises(ConfigError) as err:
        validate(config(*overrides))
    assert str(err.value).startswith(message) and "\n" not in str(err.value), str(err.value)


def test_config_accepts_the_sde_for_every_search_that_passes_indices(config):
    able = [name for name, kind in SEARCHES.items() if getattr(kind, "passes_indices", False)]
    assert {"random", "zero_order", "paths", "fk_steering", "evolutionary"} <= set(able)
    for name in able:
        assert validate(config("model.solver=sde", "model.search_steps=8", "model.final_steps=8", f"search={name}",
                               "budget.nfe=200")) >= 1
    cfg = config("model.solver=sde", "model.search_steps=8", "model.final_steps=8", "model.sde_scale=2",
                 "search=fk_steering", "search.delta_f=0", "budget.nfe=96")
    assert validate(cfg) >= 1 and cfg.model.sde_scale == 2.0


def test_runner_renders_and_replays_an_sde_choice(config):
    from inference_scaling.runner import replay, run

    common = ("logger=none", "progress=false", "benchmark.per_class=1", "budget.nfe=12", "model.solver=sde",
              "model.search_steps=3", "model.final_steps=3")
    result = run(config(*common))
    for c in (0, 7):
        chosen = result["records"][c]["chosen_index"]
        assert torch.allclose(replay(config(*common), c, chosen)[0], result["images"][c], atol=1e-5)
    narrower = run(config(*common, "model.sde_scale=1"))
    assert not torch.allclose(narrower["images"], result["images"], atol=1e-3)


def test_cli_end_to_end_fk_steering_on_the_sde(tmp_path, run_main):
    run = tmp_path / "run"
    code, err = run_main(["model.solver=sde", "model.sde_scale=2", "model.search_steps=8", "model.final_steps=8",
                          "search=fk_steering", "search.delta_f=0", "budget.nfe=48", "benchmark.per_class=1",
                          f"hydra.run.dir={run}"])
    assert code == 0, err
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0 < metrics["nfe_search_per_condition"] <= 48 and metrics["nfe_final_per_condition"] == 0
    assert "solver: sde" in (run / "config.yaml").read_text() and "sde_scale: 2.0" in (run / "config.yaml").read_text()
    lineage = [json.loads(line) for line in (run / "lineage.jsonl").read_text().splitlines()]
    assert all(r["sigma_up"] == r["sigma"] for entry in lineage for r in entry["rounds"])  # no renoising
    code, err = run_main(["search=fk_steering", "search.delta_f=0", "budget.nfe=48",
                          f"hydra.run.dir={tmp_path / 'refused'}"])
    assert code == 2 and len(err) == 1 and err[0].startswith("error: search.delta_f=0 leaves resampled particles")
    assert not (tmp_path / "refused").exists()


def test_sde_scale_is_fingerprinted_only_where_it_changes_the_bits(config):
    from inference_scaling.store import fingerprint

    ode = [fingerprint(config(f"model.sde_scale={s}")) for s in (3.0, 1.0)]
    sde = [fingerprint(config("model.solver=sde", f"model.sde_scale={s}")) for s in (3.0, 1.0)]
    assert ode[0] == ode[1]  # an ODE job folder from before sde_scale existed keeps its fingerprint
    assert sde[0] != sde[1] and sde[0] not in ode
