"""The SiT backend (Ma et al. 2024) on a tiny random SiT in the official key layout and a tiny random SD-style VAE:
velocity, time and x0 conventions against SiT's equations and an independent forward pass, strict checkpoint
checks, SiT's 3-channel guidance, every search end to end through the CLI, and the three presets."""

import argparse
import csv
import json
import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import make_config
from diffusers import AutoencoderKL
from safetensors.torch import save_file
from test_cli import cli

from inference_scaling.benchmarks import BENCHMARKS
from inference_scaling.config import ConfigError, validate
from inference_scaling.denoiser import x0_from_velocity
from inference_scaling.models import model_class
from inference_scaling.models.sit import SiT, SiTModel, expected_shapes, load_sit, sincos_2d
from inference_scaling.nfe import NFECounter
from inference_scaling.noise import candidate_noise
from inference_scaling.runner import run
from inference_scaling.sampling import heun2
from inference_scaling.weights import WeightsError

TINY = dict(depth=2, hidden_size=32, num_heads=2, patch_size=2, latent_size=8, in_channels=4, learn_sigma=True,
            num_classes=1000)


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory):
    """A tiny random SiT saved as a plain state dict with torch.save (as the official checkpoint is) and a tiny
    AutoencoderKL folder written by save_pretrained (as a hub id downloads)."""
    folder = tmp_path_factory.mktemp("sit")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        state = SiT(**TINY).state_dict()
        vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                            up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 8), layers_per_block=1,
                            latent_channels=4, norm_num_groups=4, sample_size=16)
    torch.save(state, folder / "sit.pt")
    vae.save_pretrained(folder / "vae")
    return folder


@pytest.fixture(scope="module")
def overrides(tiny_files, tiny_clip_folder):
    """sit_b2 with the tiny architecture, on two ImageNet classes, scored by a tiny CLIP zero-shot classifier."""
    return ["model=sit_b2", f"model.weights={tiny_files / 'sit.pt'}", f"model.vae={tiny_files / 'vae'}",
            "model.depth=2", "model.hidden_size=32", "model.num_heads=2", "model.latent_size=8",
            "model.search_steps=2", "model.final_steps=3", "benchmark=imagenet", "benchmark.classes=[1,2]",
            "verifier=clip_zeroshot", f"verifier.clip={tiny_clip_folder}", "logger=none", "progress=false"]


@pytest.fixture(scope="module")
def adapter(tiny_files, overrides, one_thread):
    return SiTModel(make_config(*overrides).model)


@pytest.fixture
def one_thread_cli(monkeypatch):
    """CLI subprocesses on one intra-op thread: tiny networks on a busy 2-core machine run several times faster."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def reference_sit(state: dict, x, t, y, heads: int, patch: int):
    """SiT's velocity written from the official model's equations directly on a state dict, in float64:
    patchify (conv weights as a matrix), + pos_embed, t-embedding [cos, sin](t·f) unscaled, adaLN-Zero blocks
    (shift, scale, gate of attention then MLP), final adaLN layer, unpatchify, first 4 of 8 channels."""
    s = {k: v.double() for k, v in state.items()}
    x, t = x.double(), t.double()

    def lin(h, name):
        return h @ s[name + ".weight"].T + s[name + ".bias"]

    def norm(h):
        return (h - h.mean(-1, keepdim=True)) / torch.sqrt(h.var(-1, unbiased=False, keepdim=True) + 1e-6)

    b, c, size, _ = x.shape
    g, d = size // patch, s["pos_embed"].shape[-1]
    patches = x.unfold(2, patch, patch).unfold(3, patch, patch).permute(0, 2, 3, 1, 4, 5).reshape(b, g * g, -1)
    h = patches @ s["x_embedder.proj.weight"].reshape(d, -1).T + s["x_embedder.proj.bias"] + s["pos_embed"]
    freqs = torch.exp(-math.log(10_000) * torch.arange(128, dtype=torch.float64) / 128)
    temb = torch.cat([torch.cos(t[:, None] * freqs), torch.sin(t[:, None] * freqs)], 1)
    cond = lin(F.silu(lin(temb, "t_embedder.mlp.0")), "t_embedder.mlp.2") + s["y_embedder.embedding_table.weight"][y]
    for i in range(len({k.split(".")[1] for k in s if k.startswith("blocks.")})):
        modulation = lin(F.silu(cond), f"blocks.{i}.adaLN_modulation.1")[:, None]
        shift1, scale1, gate1, shift2, scale2, gate2 = modulation.chunk(6, -1)
        q, k, v = lin(norm(h) * (1 + scale1) + shift1, f"blocks.{i}.attn.qkv").view(b, g * g, 3, heads, -1).unbind(2)
        weights = torch.einsum("bqhe,bkhe->bhqk", q, k).div(math.sqrt(q.shape[-1])).softmax(-1)
        h = h + gate1 * lin(torch.einsum("bhqk,bkhe->bqhe", weights, v).reshape(b, g * g, d), f"blocks.{i}.attn.proj")
        hidden = F.gelu(lin(norm(h) * (1 + scale2) + shift2, f"blocks.{i}.mlp.fc1"), approximate="tanh")
        h = h + gate2 * lin(hidden, f"blocks.{i}.mlp.fc2")
    shift, scale = lin(F.silu(cond), "final_layer.adaLN_modulation.1")[:, None].chunk(2, -1)
    out = lin(norm(h) * (1 + scale) + shift, "final_layer.linear").view(b, g, g, patch, patch, -1)
    return out.permute(0, 5, 1, 3, 2, 4).reshape(b, -1, size, size)[:, :c]


def states(n=4, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(n, 4, 8, 8, generator=gen), torch.tensor([0.9, 0.6, 0.3, 0.05])[:n],
            torch.tensor([1, 2, 999, 1000])[:n])  # 1000: the null class row


def test_velocity_is_minus_sits_at_time_one_minus_sigma(adapter, tiny_files):
    x, sigma, y = states()
    v = adapter(x, sigma, y)
    reference = reference_sit(torch.load(tiny_files / "sit.pt"), x, 1 - sigma, y, heads=2, patch=2)
    assert v.dtype == torch.float32 and v.shape == x.shape
    assert (v + reference).abs().max() < 1e-5 * reference.abs().max()
    # Wrong conventions are far off: +v_SiT, or SiT evaluated at t = σ.
    assert (v - reference).abs().max() > 0.1 * reference.abs().max()
    wrong_time = reference_sit(torch.load(tiny_files / "sit.pt"), x, sigma, y, heads=2, patch=2)
    assert (v + wrong_time).abs().max() > 1e-3 * reference.abs().max()


class PointMassSiT(torch.nn.Module):
    """SiT's exact velocity for data concentrated at x*: from x_t = t·x* + (1 − t)·ε (SiT's interpolant) and
    v = x* − ε, eliminating ε gives v(x_t, t) = (x* − x_t)/(1 − t)."""

    def __init__(self, x_star):
        super().__init__()
        self.x_star = x_star

    def forward(self, x, t, y):
        return (self.x_star - x) / (1 - t.view(-1, 1, 1, 1))


def test_sign_and_time_against_sits_interpolant(adapter, monkeypatch):
    gen = torch.Generator().manual_seed(2)
    x_star, eps = torch.randn(1, 4, 8, 8, generator=gen).expand(3, -1, -1, -1), torch.randn(3, 4, 8, 8, generator=gen)
    monkeypatch.setattr(adapter, "net", PointMassSiT(x_star))
    sigma = torch.tensor([0.8, 0.5, 0.2])
    x = (1 - sigma.view(-1, 1, 1, 1)) * x_star + sigma.view(-1, 1, 1, 1) * eps  # x_σ = x_t at t = 1 − σ
    v = adapter(x, sigma, torch.zeros(3, dtype=torch.long))
    assert torch.allclose(v, eps - x_star, atol=1e-5)  # our convention: v = ε − x0
    assert torch.allclose(x0_from_velocity(x, sigma, v), x_star, atol=1e-5)


def test_x0_prediction_is_sits_data_prediction(adapter, tiny_files):
    x, sigma, y = states()
    t = (1 - sigma).view(-1, 1, 1, 1)
    v_sit = reference_sit(torch.load(tiny_files / "sit.pt"), x, 1 - sigma, y, heads=2, patch=2)
    sit_data = x + (1 - t) * v_sit  # x* = x_t + (1 − t)·v from x_t = t·x* + (1 − t)·ε, v = x* − ε
    ours = x0_from_velocity(x, sigma, adapter(x, sigma, y))
    assert (ours - sit_data.float()).abs().max() < 1e-5 * sit_data.abs().max()


def test_safetensors_and_train_checkpoints_load_the_same_weights(tiny_files, adapter):
    state = torch.load(tiny_files / "sit.pt")
    save_file(state, str(tiny_files / "sit.safetensors"))
    ema = {k: v + 0.5 for k, v in state.items()}  # train.py saves model, EMA, optimizer and its args
    torch.save({"model": state, "ema": ema, "opt": {"param_groups": [{"lr": 1e-4}]},
                "args": argparse.Namespace(model="SiT-B/2")}, tiny_files / "0400000.pt")
    x, sigma, y = states()
    for name, weights in [("sit.safetensors", state), ("0400000.pt", ema)]:
        net = load_sit(type(adapter.cfg)(**{**adapter.cfg.__dict__, "weights": str(tiny_files / name)}))
        assert all(torch.equal(net.state_dict()[k], weights[k]) for k in state)
    assert torch.equal(load_sit(adapter.cfg)(x, 1 - sigma, y), -adapter(x, sigma, y))


@pytest.mark.parametrize("defect,message", [
    ("missing", "missing key 'blocks.1.attn.qkv.weight' (is this a SiT checkpoint of depth 2 and width 32?)"),
    ("unexpected", "unexpected key 'blocks.2.attn.qkv.weight' (is this a SiT checkpoint of depth 2 and width 32?)"),
    ("shape", "key 'y_embedder.embedding_table.weight' has shape (11, 32), this architecture expects (1001, 32) "
              "(check model.num_classes, model.hidden_size)"),
], ids=["missing", "unexpected", "shape"])
def test_a_checkpoint_that_does_not_fit_is_refused_in_one_line(tiny_files, overrides, tmp_path, one_thread_cli, defect,
                                                                message):
    state = torch.load(tiny_files / "sit.pt")
    if defect == "missing":
        del state["blocks.1.attn.qkv.weight"]
    elif defect == "unexpected":
        state["blocks.2.attn.qkv.weight"] = state["blocks.1.attn.qkv.weight"]
    else:
        state["y_embedder.embedding_table.weight"] = state["y_embedder.embedding_table.weight"][:11]
    bad = tmp_path / f"{defect}.pt"
    torch.save(state, bad)
    proc = cli(*overrides, f"model.weights={bad}", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: model.weights='{bad}': {message}"], proc.stderr
    assert not (tmp_path / "run").exists() and not (tmp_path / "outputs").exists()
    with pytest.raises(WeightsError, match="^" + re.escape(f"model.weights='{bad}': {message}") + "$"):
        load_sit(make_config(*overrides, f"model.weights={bad}").model)  # the same check when the job loads


@pytest.mark.parametrize("override,message", [
    ("model.num_heads=3", "model.hidden_size=32 must be a multiple of model.num_heads=3"),
    ("model.latent_size=9", "model.latent_size=9 must be a multiple of model.patch_size=2"),
    ("model.guidance_channels=5", "model.guidance_channels=5 must lie in 1..model.in_channels=4, or be null"),
    ("model.weights=/nonexistent/sit.pt", "model.weights='/nonexistent/sit.pt' does not exist"),
    ("model.vae=/nonexistent/vae", "model.vae='/nonexistent/vae' is neither an existing folder nor a hub id"),
])
def test_a_bad_setting_is_refused_before_loading(config, overrides, override, message):
    with pytest.raises(ConfigError, match="^" + re.escape(message)):
        validate(config(*overrides, override))


@pytest.mark.parametrize("name", ["sit.pt", "sit.safetensors"])
def test_an_unreadable_checkpoint_is_refused_in_one_line(config, overrides, tmp_path, name):
    (tmp_path / name).write_bytes(b"not a checkpoint" * 8)
    with pytest.raises(ConfigError, match=f"^model.weights='{tmp_path / name}': not a readable checkpoint") as err:
        validate(config(*overrides, f"model.weights={tmp_path / name}"))
    assert "\n" not in str(err.value)


def test_a_class_beyond_the_label_table_is_refused(config, overrides, adapter, monkeypatch):
    conditions = BENCHMARKS["imagenet"](config(*overrides).benchmark).conditions()
    assert torch.equal(adapter.encode(conditions), torch.tensor([1, 2]))
    monkeypatch.setattr(adapter.cfg, "num_classes", 2)
    with pytest.raises(ConfigError, match="^benchmark class 2 is not below model.num_classes=2$"):
        adapter.encode(conditions)


def test_every_search_runs_end_to_end_through_the_cli(overrides, tmp_path, one_thread_cli):
    searches = ["random", "zero_order", "paths", "fk_steering", "evolutionary", "adaptive"]
    budget = 56  # heun2, 2 steps: 4 NFEs per candidate; evolutionary's population of 8 needs the most
    proc = cli("-m", *overrides, f"search={','.join(searches)}", f"budget.nfe={budget}",
               f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    jobs = sorted((tmp_path / "sweep").glob("*_nfe*"), key=lambda p: int(p.name.split("_")[0]))
    assert len(jobs) == len(searches)
    for job, search in zip(jobs, searches):
        assert f"name: {search}" in (job / "config.yaml").read_text()
        metrics = json.loads((job / "metrics.json").read_text())
        assert metrics["n_conditions"] == 2 and 0 < metrics["nfe_search_per_condition"] <= budget, search
        assert metrics["nfe_final_per_condition"] >= 6  # 3 heun2 steps from the chosen noise, or a replayed path
        assert metrics["decoded_images_search"] >= 2 and math.isfinite(metrics["verifier_score"])
        rows = list(csv.DictReader((job / "results.csv").open()))
        assert [r["prompt"] for r in rows] == ["goldfish", "great white shark"]


def test_one_sample_budget_is_plain_sampling_decoded(config, overrides, adapter):
    cfg = config(*overrides, "search=random", "budget=one_sample", "model.final_steps=2")
    assert cfg.budget.nfe == 4  # one candidate: 2 heun2 steps, 2 NFEs each
    result = run(cfg)
    assert result["metrics"]["n_candidates"] == 1 and result["metrics"]["nfe_search_per_condition"] == 4
    conditions = BENCHMARKS["imagenet"](cfg.benchmark).conditions()
    noise = candidate_noise(cfg.seed, conditions.ids, torch.zeros(2, dtype=torch.long), adapter.noise_shape)
    latents = heun2(adapter, noise, SiTModel.sigmas(cfg.model, 2), adapter.encode(conditions))
    images = adapter.decode(latents)
    assert images.shape == (2, 3, 16, 16) and images.abs().max() <= 1
    assert torch.equal(result["images"], images)


def test_guidance_guides_the_first_three_channels_as_sit_does(config, overrides, adapter):
    x, sigma, y = states(3)
    counter = NFECounter(adapter)
    guided = adapter.guided(counter, 4.0)(x, sigma, y)
    assert counter.count == 6  # conditional and null rows of every sample
    v_cond, v_null = adapter(x, sigma, y), adapter(x, sigma, torch.full((3,), 1000))
    combination = v_null + 4.0 * (v_cond - v_null)
    assert torch.allclose(guided[:, :3], combination[:, :3], atol=1e-5)
    assert torch.allclose(guided[:, 3], v_cond[:, 3], atol=1e-6)
    assert (guided[:, 3] - combination[:, 3]).abs().max() > 1e-2
    every = SiTModel(config(*overrides, "model.guidance_channels=null", "model.guidance=4.0").model)
    assert torch.allclose(every.guided(every, 4.0)(x, sigma, y), combination, atol=1e-5)
    assert model_class("sit_b2").evals_per_call(config(*overrides, "model.guidance=4.0").model) == 2


def test_bfloat16_returns_float32_velocity_close_to_float32(config, overrides, adapter):
    x, sigma, y = states()
    v16 = SiTModel(config(*overrides, "model.dtype=bfloat16").model)(x, sigma, y)
    v32 = adapter(x, sigma, y)
    assert v16.dtype == torch.float32 and not torch.equal(v16, v32)
    assert (v16 - v32).abs().max() < 0.05 * v32.abs().max()


def test_position_embedding_is_maes_2d_sincos():
    """MAE's get_2d_sincos_pos_embed, transcribed in numpy: meshgrid(w, h), first half from grid[0]."""
    dim, grid = 32, 4
    gw, gh = np.meshgrid(np.arange(grid, dtype=np.float32), np.arange(grid, dtype=np.float32))

    def one_d(positions):
        omega = 1.0 / 10000 ** (np.arange(dim // 4, dtype=np.float64) / (dim / 4))
        out = np.einsum("m,d->md", positions.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    expected = np.concatenate([one_d(gw), one_d(gh)], axis=1)
    assert np.allclose(sincos_2d(dim, grid).numpy(), expected, atol=1e-12)


def strided_checkpoint(path, shapes):
    """A checkpoint of the right keys and shapes that stores one number per tensor (stride-0 views)."""
    torch.save({k: torch.full((1,), 0.01).expand(shape) for k, shape in shapes.items()}, path)
    return str(path)


@pytest.mark.parametrize("preset,depth,width,heads,millions", [
    ("sit_xl2", 28, 1152, 16, 675.1), ("sit_l2", 24, 1024, 16, 458.1), ("sit_b2", 12, 768, 12, 130.5)])
def test_each_preset_composes_validates_and_builds_at_its_architecture(config, tiny_files, tmp_path, preset, depth,
                                                                       width, heads, millions):
    base = ["benchmark=imagenet", "verifier=clip_zeroshot", "budget=one_sample"]
    cfg = config(f"model={preset}", *base)
    arch = dict(depth=depth, hidden_size=width, num_heads=heads, patch_size=2, latent_size=32, in_channels=4,
                learn_sigma=True, num_classes=1000)
    assert {k: getattr(cfg.model, k) for k in arch} == arch and cfg.model.solver == "heun2"
    assert (cfg.model.search_steps, cfg.model.final_steps, cfg.model.guidance) == (25, 125, 1.0)
    assert cfg.budget.nfe == 50 and cfg.model.vae == "stabilityai/sd-vae-ft-mse"
    with torch.device("meta"):  # counted without allocating: XL/2 is 675 M parameters (DiT/SiT papers)
        assert round(sum(p.numel() for p in SiT(**arch).parameters()) / 1e6, 1) == millions
    if preset == "sit_xl2":
        assert cfg.model.weights.startswith("https://") and validate(cfg) == 1  # fetched when the job loads it
    else:
        with pytest.raises(ConfigError, match=f"^model.weights is empty: {preset} has no public checkpoint"):
            validate(cfg)
    weights = strided_checkpoint(tmp_path / "sit.pt", expected_shapes(**arch))
    cfg = config(f"model={preset}", *base, f"model.weights={weights}", f"model.vae={tiny_files / 'vae'}")
    assert validate(cfg) == 1
    shallow = 12 if depth > 12 else 6
    shallower = strided_checkpoint(tmp_path / "shallow.pt", expected_shapes(**{**arch, "depth": shallow}))
    with pytest.raises(ConfigError, match=f"missing key 'blocks.{shallow}.attn.qkv.weight'"):
        validate(config(f"model={preset}", *base, f"model.weights={shallower}", f"model.vae={tiny_files / 'vae'}"))
    if preset == "sit_b2":  # small enough to build for real and run once at 256 px
        model = SiTModel(cfg.model)
        assert sum(p.numel() for p in model.net.parameters()) == 130_512_416
        with torch.random.fork_rng():
            torch.manual_seed(0)
            net = SiT(**arch)
        with torch.no_grad():
            v = net(torch.randn(1, 4, 32, 32), torch.tensor([0.5]), torch.tensor([3]))
        assert v.shape == (1, 4, 32, 32) and torch.isfinite(v).all() and v.std() > 0


def test_a_url_checkpoint_is_checked_once_it_is_in_the_hub_cache(config, overrides, tiny_files, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    url = "https://example.org/weights/SiT-tiny.pt?dl=1"
    cfg = config(*overrides, f"model.weights='{url}'")  # quoted: Hydra's grammar reads ? and = otherwise
    assert validate(cfg) >= 1  # not downloaded yet: checked when the job loads it
    fetched = []
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda src, dst: fetched.append(src) or
                        (tmp_path / "checkpoints" / "SiT-tiny.pt").write_bytes((tiny_files / "sit.pt").read_bytes()))
    load_sit(cfg.model)
    load_sit(cfg.model)
    assert fetched == [url]  # downloaded once, then read from the cache
    with pytest.raises(ConfigError, match="unexpected key 'blocks.1.adaLN_modulation.1.bias'"):
        validate(config(*overrides, f"model.weights='{url}'", "model.depth=1"))
