"""ε-prediction backends on a discrete VP schedule (DiT, PixArt-Σ): the exact change of variables onto our flow ODE,
DDIM (η = 0) as Euler, parity with diffusers' DDIM loops and pipelines, and every search end to end on tiny models."""

import csv
import json
import os
import shutil
import subprocess
import sys
import time

import pytest
import torch
from conftest import make_config
from diffusers import (AutoencoderKL, DDIMScheduler, DiTPipeline, DiTTransformer2DModel, PixArtSigmaPipeline,
                       PixArtTransformer2DModel)
from tiny_text import tiny_t5

from inference_scaling.benchmarks import Conditions
from inference_scaling.config import ConfigError, validate
from inference_scaling.denoiser import x0_from_velocity
from inference_scaling.models import load_model
from inference_scaling.models.vp import VPConversion, abar_of_sigma, ddim_scheduler, sigma_of_abar, vp_sigmas
from inference_scaling.noise import candidate_noise
from inference_scaling.sampling import euler
from inference_scaling.search.base import SearchTask
from inference_scaling.weights import WeightsError

pytestmark = pytest.mark.usefixtures("one_thread")
SEARCHES = "random,zero_order,paths,fk_steering,evolutionary,adaptive"
PROMPTS = ["a red cube", "two cats"]


def tiny_vae() -> AutoencoderKL:
    """A two-level VAE (scale factor 2): 8×8×4 latents decode to 16×16 images. Random ε-networks end at latents of
    size ~100 (their ε̂ is not the noise, and x̂0 divides by √ᾱ), so its scaling factor is 100: decoded images are
    then not saturated and the image comparisons can fail."""
    return AutoencoderKL(block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
                         up_block_types=("UpDecoderBlock2D",) * 2, layers_per_block=1, latent_channels=4,
                         norm_num_groups=8, sample_size=16, scaling_factor=100.0)


def unsaturated(images: torch.Tensor) -> float:
    """The fraction of pixels strictly inside (-1, 1) (not clamped by the decode)."""
    return (images.abs() < 0.999).float().mean().item()


def tiny_dit() -> DiTTransformer2DModel:
    return DiTTransformer2DModel(num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=8,
                                 num_layers=1, sample_size=8, patch_size=2, num_embeds_ada_norm=1000)


def tiny_pixart() -> PixArtTransformer2DModel:
    return PixArtTransformer2DModel(sample_size=8, num_layers=1, patch_size=2, attention_head_dim=8,
                                    num_attention_heads=2, caption_channels=32, in_channels=4, cross_attention_dim=16,
                                    out_channels=8, attention_bias=True, activation_fn="gelu-approximate",
                                    num_embeds_ada_norm=1000, norm_type="ada_norm_single",
                                    norm_elementwise_affine=False, norm_eps=1e-6, use_additional_conditions=False)


def ddim(**overrides) -> DDIMScheduler:
    """Deterministic DDIM to exactly ᾱ = 1 (the reference of every parity check)."""
    return DDIMScheduler(**{"clip_sample": False, "set_alpha_to_one": True, **overrides})


def save_dit(folder, **scheduler):
    with torch.random.fork_rng():
        torch.manual_seed(0)
        pipe = DiTPipeline(transformer=tiny_dit().eval(), vae=tiny_vae().eval(), scheduler=ddim(**scheduler))
    pipe.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def dit_folder(tmp_path_factory):
    return save_dit(tmp_path_factory.mktemp("dit"))


@pytest.fixture(scope="module")
def pixart_folder(tmp_path_factory):
    """A tiny PixArt-Σ pipeline with DDIM on "leading" timesteps, where diffusers' DDIM steps timestep to timestep."""
    folder = tmp_path_factory.mktemp("pixart")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        text_encoder, tokenizer = tiny_t5(d_model=32)
        PixArtSigmaPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=tiny_vae().eval(),
                            transformer=tiny_pixart().eval(),
                            scheduler=ddim(timestep_spacing="leading")).save_pretrained(folder)
    return folder


def dit_config(folder, *overrides):
    return make_config("model=dit_xl2", f"model.weights={folder}", "benchmark=imagenet", "benchmark.classes=[1,2]",
                       "verifier=clip_zeroshot", *overrides)


PIXART_TINY = ["model.height=16", "model.width=16", "model.max_sequence_length=16"]


def pixart_config(folder, *overrides):
    return make_config("model=pixart_sigma", f"model.weights={folder}", *PIXART_TINY, "benchmark=prompts",
                       f"benchmark.prompts=[{','.join(PROMPTS)}]", "verifier=clip_score", *overrides)


def noise(n: int, shape=(4, 8, 8), seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    return torch.randn(n, *shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def task_on(denoiser, sigmas, conds, shape) -> SearchTask:
    """A search task that only solves (what random search and the runner use to draw a sample)."""
    return SearchTask(denoiser=denoiser, solver=euler, sigmas=sigmas, cost_per_sample=0, conds=conds,
                      condition_ids=torch.arange(len(conds)), noise_shape=shape, seed=0, verifier=None,
                      max_batch_size=64)


# The change of variables and the grid: exact maths, no network.


def test_change_of_variables_and_eps_v_round_trip(config):
    cfg = config("model=dit_xl2").model
    table = ddim_scheduler(cfg).alphas_cumprod.double()
    steps = torch.tensor([0, 10, 250, 500, 999])
    abar = table[steps].view(-1, 1, 1, 1)
    x0, eps = noise(5, dtype=torch.float64), noise(5, seed=1, dtype=torch.float64)
    x_vp = abar.sqrt() * x0 + (1 - abar).sqrt() * eps
    scale, sigma = abar.sqrt() + (1 - abar).sqrt(), sigma_of_abar(abar)
    x = x_vp / scale
    assert torch.allclose(x, (1 - sigma) * x0 + sigma * eps, rtol=0, atol=1e-12)  # our linear interpolant
    assert torch.allclose(abar_of_sigma(sigma), abar, rtol=1e-12, atol=0)

    seen = {}

    def oracle(x_in, t):  # a perfect ε-network: it sees x_VP and the training timestep
        seen.update(x_vp=x_in, t=t)
        return eps

    v = VPConversion(table.float()).velocity(oracle, x, sigma.flatten())
    assert torch.equal(seen["t"], steps.double())
    assert torch.allclose(seen["x_vp"], x_vp, rtol=0, atol=1e-12)
    assert torch.allclose(v, eps - x0, rtol=0, atol=1e-9)  # v = ε − x0
    assert torch.allclose(x0_from_velocity(x, sigma.flatten(), v), x0, rtol=0, atol=1e-12)
    assert torch.allclose(x + (1 - sigma) * v, eps, rtol=0, atol=1e-12)  # ε back from v


@pytest.mark.parametrize("spacing,steps", [("leading", 50), ("linspace", 30), ("trailing", 13), ("leading", 7)])
def test_grid_is_ddim_timesteps_then_zero_and_timesteps_are_exact_integers(config, spacing, steps):
    cfg = config("model=dit_xl2", f"model.timestep_spacing={spacing}").model
    scheduler = ddim_scheduler(cfg)
    scheduler.set_timesteps(steps)
    grid = vp_sigmas(cfg, steps)
    assert grid.dtype == torch.float64 and len(grid) == steps + 1 and grid[-1] == 0.0 and grid[0] < 1.0
    assert bool((grid[1:] < grid[:-1]).all())
    conversion = VPConversion(scheduler.alphas_cumprod)
    abar = scheduler.alphas_cumprod.double()[scheduler.timesteps]
    for dtype in (torch.float32, torch.float64):  # the solvers pass levels in the state's dtype
        t, found = conversion.levels(grid[:-1].to(dtype))
        assert torch.equal(t, scheduler.timesteps.double()), dtype
        assert torch.equal(found, abar)
    # Between grid levels: fractional, monotone timesteps; below the lowest level, timestep 0.
    middle, _ = conversion.levels(((grid[:-2] + grid[1:-1]) / 2).float())
    assert bool((middle < scheduler.timesteps[:-1]).all() and (middle > scheduler.timesteps[1:]).all())
    assert bool((middle != middle.round()).any())
    sweep, _ = conversion.levels(torch.linspace(1e-4, float(grid[0]), 500, dtype=torch.float64))
    assert bool((sweep[1:] >= sweep[:-1]).all()) and sweep[0] == 0.0


def test_ddim_step_is_an_euler_step_on_the_converted_ode(config):
    """DDIM (η = 0) from diffusers and Euler on our grid visit the same states: x_VP = s·x at every level, the same
    x0-predictions, and each Euler step lands on x_σ' = (1 − σ')·x̂0 + σ'·ε̂."""
    cfg = config("model=dit_xl2", "model.timestep_spacing=trailing").model
    steps = 8
    scheduler = ddim_scheduler(cfg)
    scheduler.set_timesteps(steps)
    conversion = VPConversion(scheduler.alphas_cumprod)

    def eps_net(x_vp, t):  # a deterministic stand-in network, smooth in x_VP and t
        return torch.tanh(0.7 * x_vp + t.view(-1, 1, 1, 1) / 400) + 0.1 * x_vp

    eps0 = noise(3, dtype=torch.float64)
    grid = vp_sigmas(cfg, steps)
    task = task_on(lambda x, s, c: conversion.velocity(eps_net, x, s), grid, torch.zeros(3), (4, 8, 8))
    x, top = task.enter(eps0, 1.0)
    abar_top = scheduler.alphas_cumprod.double()[scheduler.timesteps[0]]
    scale_top = abar_top.sqrt() + (1 - abar_top).sqrt()
    latents = (1 - abar_top).sqrt() * eps0  # the pipeline's initial latents for our initial state σ_top·ε
    assert top == grid[0] and torch.allclose(scale_top * x, latents, rtol=0, atol=1e-15)

    reference = []
    for t in scheduler.timesteps:
        out = scheduler.step(eps_net(latents, t.double().expand(3)), t, latents)
        reference.append((latents, out.pred_original_sample))
        latents = out.prev_sample
    steps_seen = []
    final = euler(task.denoiser, x, grid, torch.zeros(3), callback=steps_seen.append)
    # diffusers computes DDIM's coefficients from float32 ᾱ in float32 (1 − ᾱ, square roots): agreement to ~1e-7.
    for step, (x_vp, x0) in zip(steps_seen, reference):
        abar = abar_of_sigma(torch.tensor(step.sigma, dtype=torch.float64))
        assert relative_error(step.x * (abar.sqrt() + (1 - abar).sqrt()), x_vp) < 1e-6
        assert relative_error(step.x0, x0) < 1e-6  # our x − σ·v is DDIM's pred_original_sample
    for step, following in zip(steps_seen, steps_seen[1:] + [None]):
        eps_hat = (step.x - (1 - step.sigma) * step.x0) / step.sigma
        landed = final if following is None else following.x
        assert torch.allclose(landed, (1 - step.sigma_next) * step.x0 + step.sigma_next * eps_hat, rtol=0, atol=1e-12)
    assert relative_error(final, latents) < 1e-6  # at σ = 0, x = x_VP = x0
    assert relative_error(final, eps0) > 0.1


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


# DiT: parity with DiTPipeline's denoising loop (mirrored: the pipeline takes no latents) and with the pipeline itself.


def dit_reference(transformer, scheduler, latents, labels, guidance: float, channels=None):
    """DiTPipeline.__call__'s loop (diffusers 0.42.1) on given latents: half-batch CFG over [cond, null], integer
    timesteps, ε = the first 4 of 8 channels; `channels` = 3 guides as DiT's own code does. Also returns the
    scheduler's pred_original_sample of every step."""
    c = transformer.config.in_channels
    guided = guidance > 1
    x = torch.cat([latents] * 2) if guided else latents
    labels = torch.cat([labels, torch.full_like(labels, 1000)]) if guided else labels
    x0s = []
    for t in scheduler.timesteps:
        if guided:
            half = x[: len(x) // 2]
            x = torch.cat([half, half])
        out = transformer(x, timestep=t[None].expand(len(x)), class_labels=labels).sample
        if guided:
            k = channels or c
            eps, rest = out[:, :k], out[:, k:]
            cond, uncond = eps.chunk(2)
            half_eps = uncond + guidance * (cond - uncond)
            out = torch.cat([torch.cat([half_eps, half_eps]), rest], dim=1)
        step = scheduler.step(out[:, :c], t, x)
        x0s.append(step.pred_original_sample[: len(latents)])
        x = step.prev_sample
    return x[: len(latents)], x0s


@pytest.mark.parametrize("guidance,channels", [(1.0, None), (4.0, None), (4.0, 3)])
def test_dit_euler_equals_the_ddim_loop_of_dit_pipeline(dit_folder, guidance, channels):
    steps = 5
    cfg = dit_config(dit_folder, f"model.search_steps={steps}", f"model.guidance={guidance}",
                     f"model.guidance_channels={channels or 'null'}").model
    model = load_model(cfg)
    labels = torch.tensor([1, 2])
    eps = noise(2)
    ours = []
    task = task_on(model.guided(model, guidance), model.sigmas(cfg, steps), labels, model.noise_shape)
    with torch.no_grad():
        final = task.solve_on(task.sigmas, task.enter(eps, 1.0)[0], torch.arange(2), callback=ours.append)
        pipe = DiTPipeline.from_pretrained(dit_folder)
        scheduler = pipe.scheduler
        scheduler.set_timesteps(steps)
        abar_top = scheduler.alphas_cumprod[scheduler.timesteps[0]]
        reference, x0s = dit_reference(pipe.transformer, scheduler, (1 - abar_top).sqrt() * eps, labels, guidance,
                                       channels)
        images = model.decode(final)
        reference_images = pipe.vae.decode(reference / pipe.vae.config.scaling_factor).sample.clamp(-1, 1)
    latent_diff = (final - reference).abs().max().item()
    x0_diff = max(relative_error(step.x0, x0) for step, x0 in zip(ours, x0s))
    image_diff = (images - reference_images).abs().max().item()
    print(f"DiT guidance={guidance} channels={channels}: max |Δ| latents {latent_diff:.2e} (relative "
          f"{relative_error(final, reference):.1e}), x0-predictions relative {x0_diff:.1e}, images {image_diff:.2e}")
    assert relative_error(final, reference) < 1e-6 and x0_diff < 1e-6 and image_diff < 1e-5
    assert images.shape == (2, 3, 16, 16) and unsaturated(images) > 0.5
    assert relative_error(final, eps) > 0.1  # the network did move the state


def test_dit_matches_dit_pipeline_images_from_its_own_noise(dit_folder):
    """DiTPipeline draws its latents itself and starts at x_VP = ε: our Euler from x = ε / s_top gives its images."""
    steps, guidance = 4, 3.0
    cfg = dit_config(dit_folder, f"model.search_steps={steps}", f"model.guidance={guidance}",
                     "model.guidance_channels=null").model
    model = load_model(cfg)
    pipe = DiTPipeline.from_pretrained(dit_folder)
    images = pipe(class_labels=[1, 2], guidance_scale=guidance, generator=torch.Generator().manual_seed(7),
                  num_inference_steps=steps, output_type="pt").images
    eps = torch.randn(2, *model.noise_shape, generator=torch.Generator().manual_seed(7))
    grid = model.sigmas(cfg, steps)
    abar = abar_of_sigma(grid[0])
    x = eps / float(abar.sqrt() + (1 - abar).sqrt())
    ours = (model.decode(euler(model.guided(model, guidance), x, grid, torch.tensor([1, 2]))) + 1) / 2
    diff = (ours - images).abs().max().item()
    print(f"DiTPipeline images vs ours: max |Δ| {diff:.2e}")
    assert diff < 1e-5 and unsaturated(images * 2 - 1) > 0.5


# PixArt-Σ: parity with PixArtSigmaPipeline on the same embeddings and latents.


def test_pixart_euler_equals_pixart_sigma_pipeline(pixart_folder):
    steps, guidance = 4, 4.5
    cfg = pixart_config(pixart_folder, f"model.search_steps={steps}", f"model.guidance={guidance}",
                        "model.timestep_spacing=leading").model
    model = load_model(cfg)
    conds = model.encode(Conditions(torch.zeros(2), torch.arange(2), PROMPTS))
    pipe = PixArtSigmaPipeline.from_pretrained(pixart_folder)
    embeds, mask, neg_embeds, neg_mask = pipe.encode_prompt(PROMPTS, True, negative_prompt="", clean_caption=False,
                                                            max_sequence_length=cfg.max_sequence_length)
    assert torch.equal(conds.tensors["prompt_attention_mask"], mask.float())  # our text rows are the pipeline's
    assert torch.allclose(conds.tensors["prompt_embeds"], embeds, rtol=0, atol=1e-6)
    assert torch.allclose(model.null_cond.tensors["prompt_embeds"], neg_embeds[:1], rtol=0, atol=1e-6)
    assert not torch.equal(embeds[0], embeds[1])

    eps = noise(2)
    task = task_on(model.guided(model, guidance), model.sigmas(cfg, steps), conds, model.noise_shape)
    with torch.no_grad():
        final = task.solve(eps, torch.arange(2))
        images = model.decode(final)
    pipe.scheduler.set_timesteps(steps)
    abar_top = pipe.scheduler.alphas_cumprod[pipe.scheduler.timesteps[0]]
    inputs = dict(prompt_embeds=embeds, prompt_attention_mask=mask, negative_prompt_embeds=neg_embeds,
                  negative_prompt=None, negative_prompt_attention_mask=neg_mask, num_inference_steps=steps,
                  guidance_scale=guidance, height=16, width=16, use_resolution_binning=False)
    reference = pipe(latents=(1 - abar_top).sqrt() * eps, output_type="latent", **inputs).images
    reference_images = pipe(latents=(1 - abar_top).sqrt() * eps, output_type="pt", **inputs).images
    latent_diff = (final - reference).abs().max().item()
    image_diff = ((images + 1) / 2 - reference_images).abs().max().item()
    print(f"PixArt-Σ: max |Δ| latents {latent_diff:.2e} (relative {relative_error(final, reference):.1e}), "
          f"images {image_diff:.2e}")
    assert relative_error(final, reference) < 1e-6 and image_diff < 1e-5 and unsaturated(images) > 0.5
    assert relative_error(final[0], final[1]) > 0.1  # the two prompts lead to different samples


def test_pixart_encodes_each_prompt_once_caches_on_disk_and_frees_t5(pixart_folder, tmp_path):
    cfg = pixart_config(pixart_folder, f"model.text_cache={tmp_path / 'cache'}").model
    model = load_model(cfg)
    rows = model.encode(Conditions(torch.zeros(3), torch.arange(3), [PROMPTS[0], PROMPTS[1], PROMPTS[0]]))
    assert model.text.encoded == 3  # "", then the two distinct prompts
    assert torch.equal(rows.tensors["prompt_embeds"][0], rows.tensors["prompt_embeds"][2])
    model.free_encoders()
    assert model.text_encoder is None
    again = load_model(cfg)  # a second job of a sweep: every embedding from the disk cache
    assert again.text.encoded == 0
    assert torch.equal(again.encode(Conditions(torch.zeros(2), torch.arange(2), PROMPTS)).tensors["prompt_embeds"],
                       rows.tensors["prompt_embeds"][:2])


# The runner and the CLI.


def test_random_search_with_one_candidate_is_plain_sampling_of_candidate_zero(dit_folder, tiny_clip_folder):
    from inference_scaling.runner import run

    cfg = dit_config(dit_folder, "model.search_steps=3", "model.final_steps=3", "model.guidance=2.0", "search=random",
                     "budget=one_sample", f"verifier.clip={tiny_clip_folder}", "logger=none", "progress=false")
    assert cfg.budget.nfe == 6
    result = run(cfg)
    model = load_model(cfg.model)
    eps = candidate_noise(cfg.seed, torch.arange(2), torch.zeros(2, dtype=torch.long), model.noise_shape)
    task = task_on(model.guided(model, 2.0), model.sigmas(cfg.model, 3), torch.tensor([1, 2]), model.noise_shape)
    plain = model.decode(task.solve(eps, torch.arange(2)))
    assert result["metrics"]["n_candidates"] == 1 and result["metrics"]["nfe_search_per_condition"] == 6
    assert torch.equal(result["images"], plain)


def check_sweep(sweep, n_jobs: int, n_conditions: int, budget: int) -> None:
    jobs = sorted(p.parent for p in sweep.rglob("metrics.json"))
    assert len(jobs) == n_jobs, jobs
    for job in jobs:
        metrics = json.loads((job / "metrics.json").read_text())
        assert metrics["n_conditions"] == n_conditions
        assert 0 < metrics["nfe_search_per_condition"] <= budget and metrics["nfe_final_per_condition"] > 0
        assert len(list(csv.DictReader((job / "results.csv").open()))) == n_conditions


BUDGET = 84  # Euler, 3 steps, CFG: 6 NFEs a candidate; evolutionary search (population 8) needs 14 candidates


def launch(args: list[str], cwd) -> subprocess.Popen:
    """`python -m inference_scaling ARGS` in the background, one thread (tiny networks run fastest so)."""
    env = {**os.environ, "WANDB_SILENT": "true", "HYDRA_FULL_ERROR": "0", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "inference_scaling", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_every_search_runs_end_to_end_through_the_cli(dit_folder, pixart_folder, tiny_clip_folder, tmp_path):
    """One multirun per backend over every algorithm (the two run side by side)."""
    common = [f"search={SEARCHES}", f"budget.nfe={BUDGET}", "model.search_steps=3", "model.final_steps=4",
              "model.guidance=2.0", "progress=false", "logger=none", f"verifier.clip={tiny_clip_folder}"]
    runs = {
        "dit": ["model=dit_xl2", f"model.weights={dit_folder}", "benchmark=imagenet", "benchmark.classes=[1,2]",
                "verifier=clip_zeroshot"],
        "pixart": ["model=pixart_sigma", f"model.weights={pixart_folder}", *PIXART_TINY, "benchmark=prompts",
                   f"benchmark.prompts=[{','.join(PROMPTS)}]", "verifier=clip_score"],
    }
    start = time.perf_counter()
    procs = {name: launch(["-m", *args, *common, f"hydra.sweep.dir={tmp_path / name}"], tmp_path)
             for name, args in runs.items()}
    for name, proc in procs.items():
        _, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"{name}: {stderr[-3000:]}"
        check_sweep(tmp_path / name, len(SEARCHES.split(",")), 2, BUDGET)
    print(f"{2 * len(SEARCHES.split(','))} jobs (two multiruns side by side) in {time.perf_counter() - start:.1f} s")


def test_a_folder_without_a_transformer_is_refused_before_anything_is_written(dit_folder, tmp_path, monkeypatch,
                                                                               capsys):
    """The CLI's entry point (in this process: the console script calls the same `main`)."""
    from inference_scaling.__main__ import main

    broken = tmp_path / "no_transformer"
    shutil.copytree(dit_folder, broken)
    shutil.rmtree(broken / "transformer")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["inference-scaling", "-m", "model=dit_xl2", f"model.weights={broken}",
                                      "benchmark=imagenet", "benchmark.classes=[1]", "verifier=clip_zeroshot",
                                      "budget=one_sample", f"hydra.sweep.dir={tmp_path / 'sweep'}"])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: model.weights='{broken}' has no 'transformer'"), lines
    assert not (tmp_path / "sweep").exists() and not (tmp_path / "outputs").exists()


def test_folders_of_another_architecture_or_schedule_are_refused_in_one_line(dit_folder, pixart_folder, tmp_path):
    with pytest.raises(ConfigError, match=r"transformer/config.json describes a PixArtTransformer2DModel") as err:
        validate(dit_config(pixart_folder, "budget=one_sample"))
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match=r"has no 'text_encoder'"):
        validate(pixart_config(dit_folder, "budget=one_sample"))
    other = save_dit(tmp_path / "other_schedule", beta_end=0.012)
    with pytest.raises(ConfigError, match=r"scheduler_config.json has beta_end=0.012 but model.beta_end=0.02; "
                                          r"set model.beta_end=0.012"):
        validate(dit_config(other, "budget=one_sample"))
    with pytest.raises(WeightsError, match=r"has beta_end=0.012"):  # the same check when loading (hub ids)
        load_model(dit_config(other).model)
    validate(dit_config(other, "budget=one_sample", "model.beta_end=0.012"))  # the schedule in the config: accepted


def test_a_checkpoint_with_a_missing_key_is_refused_when_loading(dit_folder, tmp_path):
    from safetensors.torch import load_file, save_file

    broken = tmp_path / "missing_key"
    shutil.copytree(dit_folder, broken)
    (file,) = (broken / "transformer").glob("*.safetensors")
    state = load_file(file)
    state.pop("pos_embed.proj.bias")
    save_file(state, file, metadata={"format": "pt"})
    with pytest.raises(WeightsError, match=r"transformer/ checkpoint has 1 missing keys .* 'pos_embed.proj.bias'"):
        load_model(dit_config(broken).model)
