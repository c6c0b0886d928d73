"""FLUX.1 and SD3.5 adapters on tiny random pipelines built from configs and saved with save_pretrained: parity with
diffusers' FluxPipeline / StableDiffusion3Pipeline, the σ grids, packing, NFE accounting, prompt caching, the CLI."""

import csv
import json
import os
import shutil
import subprocess
import sys
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import make_config
from tiny_text import tiny_clip_text, tiny_t5

from inference_scaling.benchmarks import Conditions
from inference_scaling.config import ConfigError, search_cost, validate
from inference_scaling.denoiser import x0_from_velocity
from inference_scaling.models import load_model
from inference_scaling.models.flux import FluxModel, check_scheduler, image_ids, pack, unpack
from inference_scaling.models.sd3 import SD3Model
from inference_scaling.nfe import NFECounter
from inference_scaling.noise import candidate_noise
from inference_scaling.runner import run
from inference_scaling.sampling import euler

diffusers = pytest.importorskip("diffusers")

PROMPTS = ["a red cube", "two cats on a mat"]
HEIGHT, WIDTH = 32, 64  # latents 4 × 8: a non-square grid catches row/column mix-ups
T5_TOKENS = 16
FLUX_SCHEDULER = dict(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15, base_image_seq_len=256,
                      max_image_seq_len=4096)


def seeded(build, seed):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return build()


def tiny_vae(latent_channels: int):
    """An AutoencoderKL that downsamples 8× like FLUX's and SD3's, with their kind of scaling and shift."""
    return seeded(lambda: diffusers.AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8,) * 4, layers_per_block=1, latent_channels=latent_channels, norm_num_groups=4,
        sample_size=32, use_quant_conv=False, use_post_quant_conv=False, scaling_factor=0.3611,
        shift_factor=0.1159), 10)


def clip_with_length(hidden, projection=None, seed=0):
    model, tokenizer = tiny_clip_text(hidden=hidden, projection=projection, seed=seed)
    tokenizer.model_max_length = 77  # as the OpenAI CLIP tokenizers declare
    return model, tokenizer


def flux_pipeline(guidance_embeds: bool, scheduler: dict):
    clip, clip_tokenizer = clip_with_length(32, seed=1)
    t5, t5_tokenizer = tiny_t5(d_model=32, seed=2)
    transformer = seeded(lambda: diffusers.FluxTransformer2DModel(
        patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16, num_attention_heads=2,
        joint_attention_dim=32, pooled_projection_dim=32, guidance_embeds=guidance_embeds, axes_dims_rope=[4, 4, 8]), 3)
    return diffusers.FluxPipeline(scheduler=diffusers.FlowMatchEulerDiscreteScheduler(**scheduler), vae=tiny_vae(4),
                                  text_encoder=clip, tokenizer=clip_tokenizer, text_encoder_2=t5,
                                  tokenizer_2=t5_tokenizer, transformer=transformer)


def sd3_pipeline():
    clip_l, tokenizer_l = clip_with_length(16, projection=16, seed=4)
    clip_g, tokenizer_g = clip_with_length(24, projection=24, seed=5)
    t5, t5_tokenizer = tiny_t5(d_model=64, seed=6)
    transformer = seeded(lambda: diffusers.SD3Transformer2DModel(
        sample_size=4, patch_size=2, in_channels=4, num_layers=2, attention_head_dim=8, num_attention_heads=4,
        joint_attention_dim=64, caption_projection_dim=32, pooled_projection_dim=40, out_channels=4,
        pos_embed_max_size=16, dual_attention_layers=(0,), qk_norm="rms_norm"), 7)
    return diffusers.StableDiffusion3Pipeline(
        transformer=transformer, scheduler=diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0), vae=tiny_vae(4),
        text_encoder=clip_l, tokenizer=tokenizer_l, text_encoder_2=clip_g, tokenizer_2=tokenizer_g,
        text_encoder_3=t5, tokenizer_3=t5_tokenizer)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Tiny FLUX.1-dev-like, FLUX.1-schnell-like and SD3.5-like pipelines, saved as a hub snapshot would be."""
    root = tmp_path_factory.mktemp("flow_t2i")
    pipes = {"dev": flux_pipeline(True, FLUX_SCHEDULER),
             "schnell": flux_pipeline(False, {**FLUX_SCHEDULER, "shift": 1.0, "use_dynamic_shifting": False}),
             "sd3": sd3_pipeline()}
    for name, pipe in pipes.items():
        pipe.save_pretrained(root / name)
    return {name: str(root / name) for name in pipes} | {"pipes": pipes}


def overrides(preset: str, folder: str, *extra: str) -> list[str]:
    return [f"model={preset}", f"model.weights={folder}", f"model.height={HEIGHT}", f"model.width={WIDTH}",
            f"model.max_sequence_length={T5_TOKENS}", "benchmark=prompts", f"benchmark.prompts=[{','.join(PROMPTS)}]",
            *extra]


def conditions(prompts=PROMPTS) -> Conditions:
    return Conditions(torch.zeros(len(prompts), dtype=torch.long), torch.arange(len(prompts)), list(prompts))


@pytest.fixture(scope="module")
def flux(folders, one_thread):
    cfg = make_config(*overrides("flux_dev", folders["dev"], "model.search_steps=3", "model.final_steps=3"))
    return load_model(cfg.model), cfg


@pytest.fixture(scope="module")
def sd3(folders, one_thread):
    cfg = make_config(*overrides("sd35_medium", folders["sd3"], "model.search_steps=3", "model.final_steps=3"))
    return load_model(cfg.model), cfg


def max_diff(a, b) -> float:
    return (a.float() - b.float()).abs().max().item()


def test_flux_matches_flux_pipeline(flux, folders):
    model, cfg = flux
    pipe = folders["pipes"]["dev"]
    rows = model.encode(conditions())
    with torch.no_grad():  # as inside the pipeline's __call__
        embeds, pooled, text_ids = pipe.encode_prompt(PROMPTS, max_sequence_length=T5_TOKENS)
    assert torch.equal(text_ids, torch.zeros(T5_TOKENS, 3))
    encode_diff = max(max_diff(rows.tensors["prompt_embeds"], embeds), max_diff(rows.tensors["pooled_prompt_embeds"],
                                                                                pooled))
    noise = candidate_noise(0, torch.arange(2), torch.zeros(2, dtype=torch.long), model.noise_shape)
    assert model.noise_shape == (4, HEIGHT // 8, WIDTH // 8)
    ours = euler(model, noise, FluxModel.sigmas(cfg.model, 3), rows)
    call = dict(prompt_embeds=embeds, pooled_prompt_embeds=pooled, latents=pack(noise), num_inference_steps=3,
                guidance_scale=cfg.model.guidance, height=HEIGHT, width=WIDTH, max_sequence_length=T5_TOKENS)
    theirs = unpack(pipe(**call, output_type="latent").images, HEIGHT // 8, WIDTH // 8)
    images = pipe(**call, output_type="pt").images
    latent_diff, image_diff = max_diff(ours, theirs), max_diff(model.decode(ours) / 2 + 0.5, images)
    print(f"FLUX parity max|diff|: embeddings {encode_diff:.2e}, latents {latent_diff:.2e}, images {image_diff:.2e}")
    assert encode_diff < 1e-6  # batch-size-dependent BLAS rounding at most
    assert latent_diff < 1e-5 and image_diff < 1e-5
    assert max_diff(ours, noise) > 0.1  # the network did move the state


def test_sd3_matches_sd3_pipeline_with_true_cfg(sd3, folders):
    model, cfg = sd3
    pipe = folders["pipes"]["sd3"]
    rows = model.encode(conditions())
    with torch.no_grad():  # as inside the pipeline's __call__
        embeds, negative, pooled, negative_pooled = pipe.encode_prompt(PROMPTS, None, None,
                                                                       max_sequence_length=T5_TOKENS)
    assert embeds.shape == (2, 77 + T5_TOKENS, 64) and pooled.shape == (2, 40)
    encode_diff = max(max_diff(rows.tensors["prompt_embeds"], embeds),
                      max_diff(rows.tensors["pooled_prompt_embeds"], pooled),
                      max_diff(model.null_cond.tensors["prompt_embeds"], negative[:1]),
                      max_diff(model.null_cond.tensors["pooled_prompt_embeds"], negative_pooled[:1]))
    noise = candidate_noise(0, torch.arange(2), torch.zeros(2, dtype=torch.long), model.noise_shape)
    ours = euler(model.guided(model, cfg.model.guidance), noise, SD3Model.sigmas(cfg.model, 3), rows)
    call = dict(prompt_embeds=embeds, pooled_prompt_embeds=pooled, negative_prompt_embeds=negative,
                negative_pooled_prompt_embeds=negative_pooled, latents=noise, num_inference_steps=3,
                guidance_scale=cfg.model.guidance, height=HEIGHT, width=WIDTH)
    theirs = pipe(**call, output_type="latent").images
    images = pipe(**call, output_type="pt").images
    latent_diff, image_diff = max_diff(ours, theirs), max_diff(model.decode(ours) / 2 + 0.5, images)
    print(f"SD3 parity max|diff|: embeddings {encode_diff:.2e}, latents {latent_diff:.2e}, images {image_diff:.2e}")
    assert encode_diff < 1e-6  # batch-size-dependent BLAS rounding at most
    assert latent_diff < 1e-5 and image_diff < 1e-5
    unguided = euler(model, noise, SD3Model.sigmas(cfg.model, 3), rows)
    assert max_diff(ours, unguided) > 1e-3  # guidance changed the result


def pipeline_sigmas(pipe, steps: int, height: int, width: int) -> torch.Tensor:
    """The scheduler grid a pipeline sets up, read after its first step (the remaining steps are skipped)."""
    seen = {}

    def stop(pipeline, i, t, kwargs):
        seen["sigmas"] = pipeline.scheduler.sigmas.clone()
        pipeline._interrupt = True
        return kwargs

    pipe(prompt="a", num_inference_steps=steps, height=height, width=width, output_type="latent",
         callback_on_step_end=stop, max_sequence_length=8)
    return seen["sigmas"]


def test_flux_grid_is_the_pipelines_at_every_resolution(folders, config):
    grids = []
    for steps, height, width in [(30, 32, 64), (30, 512, 768), (4, 1024, 1024)]:
        cfg = config(*overrides("flux_dev", folders["dev"], f"model.height={height}", f"model.width={width}")).model
        ours = FluxModel.sigmas(cfg, steps)
        assert ours.dtype == torch.float64 and len(ours) == steps + 1 and ours[0] == 1.0 and ours[-1] == 0.0
        assert torch.equal(ours.float(), pipeline_sigmas(folders["pipes"]["dev"], steps, height, width))
        grids.append(ours)
    # μ grows with the image token count (8 → 1,536 tokens), which pushes every level towards 1.
    assert (grids[1][1:-1] > grids[0][1:-1]).all()
    # At 4,096 tokens μ = max_shift: σ' = e^μ / (e^μ + 1/σ − 1) on linspace(1, 1/4, 4).
    plain = torch.tensor([1.0, 0.75, 0.5, 0.25], dtype=torch.float64)
    expected = np.exp(1.15) / (np.exp(1.15) + 1 / plain - 1)
    assert max_diff(grids[2][:-1], expected) < 1e-6


def test_schnell_and_sd3_grids_are_the_pipelines(folders, config):
    schnell = config(*overrides("flux_schnell", folders["schnell"])).model
    assert torch.equal(FluxModel.sigmas(schnell, 4), torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0], dtype=torch.float64))
    assert torch.equal(FluxModel.sigmas(schnell, 4).float(), pipeline_sigmas(folders["pipes"]["schnell"], 4, 32, 32))
    sd3 = config(*overrides("sd35_medium", folders["sd3"])).model
    shifted = lambda t: 3 * t / (1 + 2 * t)  # noqa: E731  static shift 3
    for steps in (5, 40):
        ours = SD3Model.sigmas(sd3, steps)
        assert torch.equal(ours.float(), pipeline_sigmas(folders["pipes"]["sd3"], steps, 32, 32))
        # The scheduler spaces levels from 1 to its (already shifted) smallest training level, then shifts again.
        expected = shifted(torch.linspace(1, shifted(1 / 1000), steps, dtype=torch.float64))
        assert max_diff(ours[:-1], expected) < 1e-6 and ours[-1] == 0.0


def test_pack_round_trip_ids_and_x0_prediction(flux):
    model, cfg = flux
    x = torch.randn(3, 4, 4, 8, generator=torch.Generator().manual_seed(0))
    tokens = pack(x)
    assert tokens.shape == (3, 2 * 4, 16)
    assert torch.equal(tokens, diffusers.FluxPipeline._pack_latents(x, 3, 4, 4, 8))
    assert torch.equal(unpack(tokens, 4, 8), x)
    assert torch.equal(image_ids(2, 4), diffusers.FluxPipeline._prepare_latent_image_ids(3, 2, 4, "cpu", torch.float32))
    assert image_ids(2, 4)[5].tolist() == [0.0, 1.0, 1.0]  # token 5 of a 2 × 4 grid: row 1, column 1
    # x0 = x − σ·v is the x0 diffusers' scheduler forms (its stochastic step to σ' = 0 returns exactly x0).
    rows = model.encode(conditions())
    x = x[:2]
    sigma = 0.6
    v = model(x, torch.full((2,), sigma), rows)
    scheduler = diffusers.FlowMatchEulerDiscreteScheduler(stochastic_sampling=True)
    scheduler.set_timesteps(sigmas=[sigma])
    theirs = scheduler.step(v, scheduler.timesteps[0], x, return_dict=False)[0]
    assert max_diff(x0_from_velocity(x, torch.full((2,), sigma), v), theirs) < 1e-6
    seen = []
    euler(model, x, torch.tensor([sigma, 0.3, 0.0], dtype=torch.float64), rows, callback=seen.append)
    assert max_diff(seen[0].x0, theirs) < 1e-6


def test_nfe_accounting_follows_the_guidance_kind(flux, sd3):
    unguided = SimpleNamespace(guidance=1.0)
    assert FluxModel.evals_per_call(unguided) == SD3Model.evals_per_call(unguided) == 1
    for (model, cfg), per_eval in [(flux, 1), (sd3, 2)]:
        assert type(model).evals_per_call(cfg.model) == per_eval
        assert search_cost(cfg.model) == 3 * per_eval
        counter = NFECounter(model)
        rows = model.encode(conditions())
        noise = torch.randn(2, *model.noise_shape)
        start = time.perf_counter()
        euler(model.guided(counter, cfg.model.guidance), noise, type(model).sigmas(cfg.model, 3), rows)
        seconds = time.perf_counter() - start
        assert counter.count == 2 * 3 * per_eval  # 2 samples × 3 steps
        print(f"{cfg.model.name}: {seconds / counter.count * 1e3:.2f} ms per NFE (tiny, CPU, batches of "
              f"{2 * per_eval} rows)")


def test_bfloat16_networks_return_float32_velocities(folders, sd3, flux):
    """model.dtype=bfloat16 puts every network part in bfloat16 (diffusers without accelerate can leave a
    checkpoint's float32 tensors in place) while velocities, states and images stay float32."""
    for (reference, cfg), folder in [(flux, folders["dev"]), (sd3, folders["sd3"])]:
        model = load_model(make_config(*overrides(cfg.model.name, folder, "model.dtype=bfloat16")).model)
        parts = [model.transformer, model.vae, model.text_encoder, model.text_encoder_2]
        assert {p.dtype for part in parts for p in part.parameters()} == {torch.bfloat16}
        rows = model.encode(conditions())
        x = torch.randn(2, *model.noise_shape, generator=torch.Generator().manual_seed(1))
        sigma = torch.full((2,), 0.7)
        v, v32 = model(x, sigma, rows), reference(x, sigma, reference.encode(conditions()))
        assert v.dtype == torch.float32 and model.decode(x).dtype == torch.float32
        assert 0 < max_diff(v, v32) < 0.05 * v32.abs().max().item()


def count_rows(module) -> list[int]:
    """Rows a module is called with, recorded by a forward hook."""
    rows = []
    module.register_forward_hook(lambda mod, args, out: rows.append(len(args[0])))
    return rows


def test_prompts_are_encoded_once_and_cached_on_disk(folders, config, tmp_path, one_thread):
    cache = tmp_path / "texts"
    cfg = config(*overrides("flux_dev", folders["dev"], f"model.text_cache={cache}")).model
    model = load_model(cfg)
    clip_rows, t5_rows = count_rows(model.text_encoder), count_rows(model.text_encoder_2)
    repeated = ["two cats on a mat", "a red cube", "two cats on a mat", "two cats on a mat"]
    rows = model.encode(conditions(repeated))
    assert sum(clip_rows) == 2 and sum(t5_rows) == 2 and model.texts.encoded == 2
    assert len(rows) == 4 and torch.equal(rows.tensors["prompt_embeds"][0], rows.tensors["prompt_embeds"][3])
    assert not torch.equal(rows.tensors["prompt_embeds"][0], rows.tensors["prompt_embeds"][1])
    assert len(list(cache.glob("*.safetensors"))) == 2
    # A new job reads the cache and never runs its encoders, even after freeing them.
    again = load_model(cfg)
    again.free_encoders()
    assert again.text_encoder is None and again.text_encoder_2 is None
    cached = again.encode(conditions(repeated))
    assert again.texts.encoded == 0
    assert all(torch.equal(cached.tensors[k], rows.tensors[k]) for k in rows.tensors)
    with pytest.raises(RuntimeError, match="free_encoders"):
        again.encode(conditions(["a prompt never seen"]))
    # Other text settings are another cache key.
    longer = load_model(config(*overrides("flux_dev", folders["dev"], f"model.text_cache={cache}",
                                          "model.max_sequence_length=24")).model)
    assert longer.encode(conditions(["a red cube"])).tensors["prompt_embeds"].shape[1] == 24
    assert longer.texts.encoded == 1


def test_random_search_with_one_candidate_is_plain_sampling(folders, config, tiny_clip_folder, one_thread):
    cfg = config(*overrides("sd35_medium", folders["sd3"], "model.search_steps=2", "model.final_steps=2",
                            "model.height=32", "model.width=32", "search=random", "budget=one_sample",
                            "verifier=clip_score", f"verifier.clip={tiny_clip_folder}", "logger=none",
                            "progress=false"))
    assert cfg.budget.nfe == 4  # 2 steps × 2 (true CFG)
    result = run(cfg)
    assert result["metrics"]["n_candidates"] == 1 and result["metrics"]["nfe_search_per_condition"] == 4
    model = load_model(cfg.model)
    rows = model.encode(conditions())
    noise = candidate_noise(cfg.seed, torch.arange(2), torch.zeros(2, dtype=torch.long), model.noise_shape)
    plain = model.decode(euler(model.guided(model, cfg.model.guidance), noise, SD3Model.sigmas(cfg.model, 2), rows))
    assert torch.equal(result["images"], plain)


def start_cli(*args: str, cwd) -> subprocess.Popen:
    """The CLI in a background process (as tests/test_cli.py's `cli`), one thread: tiny networks only stall on more."""
    env = {**os.environ, "WANDB_SILENT": "true", "HYDRA_FULL_ERROR": "0", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "inference_scaling", *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(proc: subprocess.Popen) -> tuple[int, str]:
    _, stderr = proc.communicate(timeout=300)
    return proc.returncode, stderr


def test_every_search_runs_on_both_backends_through_the_cli(folders, tiny_clip_folder, tmp_path):
    """One multirun per backend over every algorithm; budgets are the smallest all their plans accept."""
    searches = "random,zero_order,paths,fk_steering,evolutionary,adaptive"
    backends = [("flux_dev", folders["dev"], 1, 28), ("sd35_medium", folders["sd3"], 2, 56)]
    procs = [start_cli("-m", f"search={searches}", *overrides(preset, folder, "model.height=32", "model.width=32",
                                                              "model.search_steps=2", "model.final_steps=3"),
                       "verifier=clip_score", f"verifier.clip={tiny_clip_folder}", f"budget.nfe={budget}",
                       "logger=none", "progress=false", f"hydra.sweep.dir={tmp_path / preset}", cwd=tmp_path)
             for preset, folder, _, budget in backends]
    for proc, (preset, _, per_eval, budget) in zip(procs, backends):
        returncode, stderr = finish(proc)
        assert returncode == 0, stderr[-3000:]
        jobs = sorted(p.parent for p in (tmp_path / preset).rglob("metrics.json"))
        assert len(jobs) == len(searches.split(","))
        for job in jobs:
            metrics = json.loads((job / "metrics.json").read_text())
            assert metrics["n_conditions"] == 2
            assert 0 < metrics["nfe_search_per_condition"] <= budget
            assert metrics["nfe_search_per_condition"] % per_eval == 0
            assert metrics["nfe_final_per_condition"] >= 3 * per_eval  # 3 final steps
            rows = list(csv.DictReader((job / "results.csv").open()))
            assert [r["prompt"] for r in rows] == PROMPTS


@pytest.mark.parametrize("case", ["no_transformer", "schnell_guidance"])
def test_bad_folders_fail_in_one_line_before_anything_is_written(folders, tmp_path, monkeypatch, capsys, case):
    """The CLI's entry point in this process (its checks run before Hydra starts, so no subprocess is needed)."""
    from inference_scaling.__main__ import main

    if case == "no_transformer":
        broken = tmp_path / "broken"
        shutil.copytree(folders["dev"], broken, ignore=shutil.ignore_patterns("transformer"))
        args, message = overrides("flux_dev", str(broken)), f"error: model.weights='{broken}' has no 'transformer'"
    else:
        args = overrides("flux_schnell", folders["schnell"], "model.guidance=3.5")
        message = "error: model.guidance=3.5 but the transformer of model.weights="
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["inference-scaling", *args, "verifier=clip_score", "hydra.run.dir=run"])
    with pytest.raises(SystemExit) as exit_:
        main()
    lines = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(lines) == 1 and lines[0].startswith(message), lines
    assert not (tmp_path / "run").exists() and not (tmp_path / "outputs").exists()


def test_a_folder_with_another_scheduler_is_refused(folders, config):
    cheap = ("model.guidance=1", "model.search_steps=2", "budget.nfe=2", "verifier=clip_score")
    cfg = config(*overrides("flux_dev", folders["schnell"], *cheap))
    with pytest.raises(ConfigError, match=r"has shift=1.0 but model.shift=3.0; set model.shift=1.0"):
        validate(cfg)
    cfg = config(*overrides("flux_dev", folders["schnell"], *cheap, "model.shift=1.0",
                            "model.use_dynamic_shifting=false"))
    assert validate(cfg) >= 1
    # Keys a scheduler file leaves out take the scheduler's defaults; options the grid cannot follow are refused.
    dev = config(*overrides("flux_dev", folders["dev"])).model
    check_scheduler(dev, FLUX_SCHEDULER)
    with pytest.raises(ValueError, match="has use_dynamic_shifting=False but model.use_dynamic_shifting=True"):
        check_scheduler(dev, {"shift": 3.0})
    with pytest.raises(ValueError, match="supports only use_karras_sigmas=False"):
        check_scheduler(dev, {**FLUX_SCHEDULER, "use_karras_sigmas": True})
