"""ε-prediction networks on a discrete variance-preserving (VP) schedule, as the project's flow ODE.

A VP model (DDPM, Ho et al. 2020; DiT; PixArt) is trained on x_VP = √ᾱ_t·x0 + √(1−ᾱ_t)·ε at integer timesteps
t = 0…T−1 and predicts ε. The change of variables
    s = √ᾱ + √(1−ᾱ),   σ = √(1−ᾱ) / s,   x = x_VP / s
gives x = (1−σ)·x0 + σ·ε, the project's linear interpolant, exactly; conversely ᾱ(σ) = 1 / (1 + (σ/(1−σ))²).
With ε̂ the network's prediction and x̂0 = (x_VP − √(1−ᾱ)·ε̂)/√ᾱ, the velocity is v = ε̂ − x̂0 = (ε̂ − x)/(1−σ).
An Euler step from σ to σ' then lands on (1−σ')·x̂0 + σ'·ε̂, which is deterministic DDIM (Song et al. 2021, eq. 12
with η = 0) divided by s': DDIM is Euler on this ODE (tests/test_vp_models.py checks it against diffusers).

The search grid is the σ of diffusers' DDIMScheduler timesteps for the step count, followed by exactly 0 (DDIM with
`set_alpha_to_one=True`). Its top level is below 1 (ᾱ_{T−1} > 0): `SearchTask.enter` scales the initial noise ε to
σ_top·ε, i.e. x_VP = s_top·σ_top·ε = √(1−ᾱ_top)·ε, where diffusers' pipelines start from x_VP = ε (a difference of
√(1−ᾱ_top) ≈ 1 − 2·10⁻⁵ for the linear-β schedule).

Levels between the training timesteps (search over paths renoises to arbitrary σ) are given to the network as
fractional timesteps, interpolated linearly in log ᾱ; a continuous extension of networks trained on integers, whose
sinusoidal time embedding accepts any real t. At the grid's own levels the timesteps are the scheduler's integers.

diffusers 0.42.1's DDIMScheduler.step steps from t to t − T // N whatever `timestep_spacing` is; for "leading" (DiT)
that is the next timestep, for "linspace" (PixArt-Σ's published config) it is not (diffusers issues #11347, #12633).
Our grid steps from each scheduler timestep to the next one, the DDIM of the paper on that timestep sequence.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor

from inference_scaling import weights
from inference_scaling.config import ModelConfig
from inference_scaling.models.base import ModelAdapter
from inference_scaling.models.latent import check_source, first_line

SPACINGS = ("leading", "linspace", "trailing")
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
TRAINING_KEYS = ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule")  # properties of the weights


@dataclass
class VPModelConfig(ModelConfig):
    solver: str = "euler"  # Euler on the converted ODE is deterministic DDIM (η = 0)
    # The training noise schedule (the folder's scheduler/scheduler_config.json must agree; refused otherwise):
    num_train_timesteps: int = 1000  # T
    beta_start: float = 0.0001
    beta_end: float = 0.02
    beta_schedule: str = "linear"  # linear | scaled_linear | squaredcos_cap_v2
    # How DDIMScheduler picks the timesteps of an N-step grid (a sampling choice, not a property of the weights):
    timestep_spacing: str = "leading"  # leading | linspace | trailing
    steps_offset: int = 0  # added to "leading" timesteps


def schedule_kwargs(cfg) -> dict:
    """The DDIMScheduler arguments of a config: its schedule, deterministic DDIM to exactly σ = 0."""
    return dict(num_train_timesteps=cfg.num_train_timesteps, beta_start=cfg.beta_start, beta_end=cfg.beta_end,
                beta_schedule=cfg.beta_schedule, timestep_spacing=cfg.timestep_spacing, steps_offset=cfg.steps_offset,
                clip_sample=False, set_alpha_to_one=True, prediction_type="epsilon")


def ddim_scheduler(cfg):
    """diffusers' DDIMScheduler (clip_sample False, set_alpha_to_one True) of the config's schedule."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(**schedule_kwargs(cfg))


def sigma_of_abar(abar: Tensor) -> Tensor:
    """σ = √(1−ᾱ) / (√ᾱ + √(1−ᾱ))."""
    return (1 - abar).sqrt() / (abar.sqrt() + (1 - abar).sqrt())


def abar_of_sigma(sigma: Tensor) -> Tensor:
    """ᾱ = 1 / (1 + (σ/(1−σ))²), the inverse of `sigma_of_abar`."""
    return 1 / (1 + (sigma / (1 - sigma)) ** 2)


def vp_sigmas(cfg, steps: int) -> Tensor:
    """The σ (float64) of DDIMScheduler's timesteps for `steps` steps, then exactly 0."""
    scheduler = ddim_scheduler(cfg)
    scheduler.set_timesteps(steps)
    levels = sigma_of_abar(scheduler.alphas_cumprod.double()[scheduler.timesteps])
    return torch.cat([levels, torch.zeros(1, dtype=torch.float64)])


class VPConversion:
    """The map between the project's (x, σ) and a VP network's (x_VP, t), for ᾱ_0…ᾱ_{T−1} (`alphas_cumprod`)."""

    def __init__(self, alphas_cumprod: Tensor):
        self.abar = alphas_cumprod.double().cpu()
        self.sigmas = sigma_of_abar(self.abar)  # increasing in t
        self.log1p_r2 = -self.abar.log()  # −log ᾱ_t = log(1 + r²) with r = σ/(1−σ); increasing in t

    def levels(self, sigma: Tensor) -> tuple[Tensor, Tensor]:
        """(t, ᾱ) in float64 for levels σ (B,). t is interpolated linearly in log ᾱ between training timesteps and
        clamped to [0, T−1] (the network never saw others; the conversion keeps the exact ᾱ(σ)). A σ equal, in its
        own dtype, to a training level gets that integer timestep and the scheduler's ᾱ exactly."""
        s = sigma.detach().double().cpu()
        u = torch.log1p((s / (1 - s)) ** 2)
        table = self.log1p_r2
        hi = torch.searchsorted(table, u).clamp(1, len(table) - 1)
        lo = hi - 1
        t = lo + ((u - table[lo]) / (table[hi] - table[lo])).clamp(0, 1)
        n = t.round().long()
        exact = self.sigmas[n].to(sigma.dtype) == sigma.detach().cpu()
        return torch.where(exact, n.double(), t), torch.where(exact, self.abar[n], abar_of_sigma(s))

    def velocity(self, eps_fn: Callable[[Tensor, Tensor], Tensor], x: Tensor, sigma: Tensor) -> Tensor:
        """v = (ε̂ − x)/(1−σ) with ε̂ = eps_fn(x_VP, t), x_VP = s·x: the network as a velocity in our convention."""
        t, abar = self.levels(sigma)
        scale = abar.sqrt() + (1 - abar).sqrt()
        one_minus_sigma = abar.sqrt() / scale
        shape = (-1,) + (1,) * (x.ndim - 1)
        eps = eps_fn(x * scale.to(x).view(shape), t.to(x.device))
        return (eps.to(x.dtype) - x) / one_minus_sigma.to(x).view(shape)


def learned_sigma_split(out: Tensor, in_channels: int) -> Tensor:
    """ε from a network output: with learned variance (2·C channels, DiT/PixArt) the first C channels."""
    return out[:, :in_channels] if out.shape[1] == 2 * in_channels else out


class VPModel(ModelAdapter):
    """Shared part of the ε-prediction adapters: the grid, the conversion and the folder checks; subclasses define
    `epsilon(x_vp, t, cond)` (the network's ε̂, float32) and `FOLDER_PARTS`."""

    FOLDER_PARTS: tuple[str, ...] = ("transformer", "vae", "scheduler")

    def __init__(self, cfg):
        super().__init__(cfg)
        self.conversion = VPConversion(ddim_scheduler(cfg).alphas_cumprod)

    @classmethod
    def sigmas(cls, cfg, steps: int) -> Tensor:
        return vp_sigmas(cfg, steps)

    @classmethod
    def check_config(cls, cfg) -> None:
        if cfg.timestep_spacing not in SPACINGS:
            raise ValueError(f"model.timestep_spacing={cfg.timestep_spacing!r}; choose one of: {', '.join(SPACINGS)}")
        if cfg.beta_schedule not in BETA_SCHEDULES:
            raise ValueError(f"model.beta_schedule={cfg.beta_schedule!r}; choose one of: {', '.join(BETA_SCHEDULES)}")
        for key in ("search_steps", "final_steps"):
            if getattr(cfg, key) > cfg.num_train_timesteps:
                raise ValueError(f"model.{key}={getattr(cfg, key)} exceeds model.num_train_timesteps="
                                 f"{cfg.num_train_timesteps}, the timesteps DDIM can choose from")
        check_source("model.weights", cfg.weights, cls.FOLDER_PARTS)
        if Path(cfg.weights).expanduser().is_dir():  # a hub id is checked when loaded (no network before that)
            cls.check_folder(cfg, lambda sub, name: read_json(cfg.weights, sub, name))

    @classmethod
    def check_folder(cls, cfg, read: Callable[[str, str], dict]) -> None:
        """Refuse parts that do not fit this adapter (one line naming the file); `read(subfolder, file)` gives JSON."""
        check_schedule(cfg, read("scheduler", "scheduler_config.json"))

    def __call__(self, x: Tensor, sigma: Tensor, cond) -> Tensor:
        return self.conversion.velocity(lambda x_vp, t: self.epsilon(x_vp, t, cond), x, sigma)

    def epsilon(self, x_vp: Tensor, t: Tensor, cond) -> Tensor:
        raise NotImplementedError

    def check_loaded_folder(self) -> None:
        """`check_folder` at load time, for hub ids too; a refusal is a WeightsError (CLI: one line, exit 2)."""
        try:
            self.check_folder(self.cfg, lambda sub, name: read_json(self.cfg.weights, sub, name))
        except ValueError as err:
            raise weights.WeightsError(str(err)) from None


def read_json(spec: str, subfolder: str, name: str) -> dict:
    """A JSON config of a pipeline part from a local folder or (fetched when needed) a hub id."""
    folder = Path(spec).expanduser()
    if folder.is_dir():
        file = folder / subfolder / name
        if not file.is_file():
            raise ValueError(f"model.weights={spec!r} has no {subfolder}/{name}; give a pipeline folder written by "
                             f"save_pretrained or a hub id")
    else:
        from huggingface_hub import hf_hub_download

        try:
            file = Path(hf_hub_download(spec, name, subfolder=subfolder))
        except (OSError, ValueError) as err:  # offline, unknown repo, no such file
            raise ValueError(f"model.weights={spec!r}: cannot fetch {subfolder}/{name} ({first_line(err)})") from None
    try:
        return json.loads(file.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"model.weights={spec!r}: {subfolder}/{name} is not readable JSON ({first_line(err)})") from None


def scheduler_settings(config: dict) -> dict:
    """A scheduler config with the defaults of the class it names filled in (keys absent from older files take the
    values that class used, as diffusers does when it loads the file)."""
    import diffusers

    cls = getattr(diffusers, str(config.get("_class_name")), None)
    if cls is None or not hasattr(cls, "from_config"):
        cls = diffusers.DDIMScheduler
    return dict(cls.from_config(config).config)


def check_schedule(cfg, config: dict) -> None:
    """The folder's training schedule must be the config's (the grid is computed from the config before loading)."""
    found = scheduler_settings(config)
    where = f"model.weights={cfg.weights!r}: scheduler/scheduler_config.json"
    if found.get("prediction_type", "epsilon") != "epsilon":
        raise ValueError(f"{where} has prediction_type={found['prediction_type']!r}; this adapter takes epsilon")
    if found.get("trained_betas") is not None or found.get("rescale_betas_zero_snr"):
        raise ValueError(f"{where} has trained_betas or rescale_betas_zero_snr, which model.beta_* cannot express")
    for key in TRAINING_KEYS:
        want, have = getattr(cfg, key), found.get(key)
        same = math.isclose(want, have, rel_tol=1e-9) if isinstance(want, float) and isinstance(have, (int, float)) \
            else want == have
        if not same:
            raise ValueError(f"{where} has {key}={have!r} but model.{key}={want!r}; set model.{key}={have}")


def check_transformer(cfg, config: dict, own_class: str, norm_type: str, what: str) -> None:
    """The transformer config names this adapter's architecture (diffusers' own class, or the generic
    Transformer2DModel that older hub folders name, told apart by its norm_type) with ε (and learned variance)."""
    where = f"model.weights={cfg.weights!r}: transformer/config.json"
    name = config.get("_class_name")
    found = config.get("norm_type", norm_type if name == own_class else "layer_norm")
    if name not in (own_class, "Transformer2DModel") or found != norm_type:
        raise ValueError(f"{where} describes a {name} with norm_type={found!r}, not {what} ({own_class}, "
                         f"norm_type={norm_type!r})")
    c_in = config.get("in_channels", 4)
    c_out = config.get("out_channels") or c_in
    if c_out not in (c_in, 2 * c_in):
        raise ValueError(f"{where} has out_channels={c_out} for in_channels={c_in}; an ε-prediction network has "
                         f"{c_in} (or {2 * c_in} with learned variance)")
