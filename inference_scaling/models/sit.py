"""SiT (Ma et al. 2024, "SiT: Exploring Flow and Diffusion-based Generative Models with Scalable Interpolant
Transformers") for class-conditional ImageNet 256×256, on the denoiser contract.

The network is DiT's transformer (Peebles & Xie 2023) trained on the linear interpolant
    x_t = t·x* + (1 − t)·ε,   t = 0 noise, t = 1 data,   target v_SiT = x* − ε,
with the time t ∈ [0, 1] fed to the sinusoidal timestep embedding as it is (no ×1000 as in DiT). Our convention is
σ = 1 − t, x_σ = (1 − σ)·x0 + σ·ε, v = ε − x0, so v_ours(x, σ) = −v_SiT(x, 1 − σ), and the x0-prediction
x − σ·v_ours is SiT's own data prediction x + (1 − t)·v_SiT.

Sampling, as checked in the official code (willisma/SiT, transport/): the ODE sampler integrates
t ∈ linspace(0, 1, num_steps) with torchdiffeq's fixed-grid `heun2` (Heun with the corrector on every step, the
last one included: 2 NFEs per step). For the linear path with a velocity model `create_transport` sets
train_eps = sample_eps = 0 and `check_interval` returns (t0, t1) = (0, 1): the ODE starts exactly at pure noise
and ends exactly at t = 1, with no offset to expose. That is our default σ grid linspace(1, 0, steps + 1) and
`model.solver=heun2`. NFEs: `model.search_steps=S` is S steps and 2S NFEs, so the paper's 50 NFEs per candidate
and 250 for the final image (Ma et al. 2025, Table 5) are 25 and 125 steps. SiT's own `--num-sampling-steps N`
counts grid points, i.e. N − 1 steps and 2(N − 1) NFEs (its default 250 is final_steps=249, 498 NFEs).
`model.solver=heun` is EDM's Heun (last step Euler, 2S − 1 NFEs). Classifier-free guidance in SiT's code guides
only the first 3 of the 4 latent channels ("for exact reproducibility"), batch order [cond, null], null class
`num_classes`; `model.guidance_channels=3` reproduces that, `null` guides all 4. Decoding: the SD VAE
(`stabilityai/sd-vae-ft-mse`, or `-ema`) of latents / 0.18215.

Weights: the only public checkpoint is SiT-XL/2 at 256×256, `SiT-XL-2-256x256.pt` (a plain state dict in DiT's key
layout), whose URL is in the official repo's download.py; `model=sit_xl2` downloads it once into the torch hub
cache (`$TORCH_HOME/hub/checkpoints/SiT-XL-2-256.pt`, the URL's file name). SiT-L/2 and SiT-B/2 have no public
weights: train them with the official repo (`torchrun ... train.py --model SiT-B/2`) and pass the checkpoint it
writes (`results/<run>/checkpoints/0400000.pt`; its EMA weights are used, as the official download.py does) or a
plain state dict (.pt/.pth/.bin or .safetensors) as `model.weights=/path`. Checkpoints load with
torch.load(weights_only=True) or safetensors and must match the configured architecture key by key and shape by
shape (the number of heads is the one setting no shape reveals).
"""

from __future__ import annotations

import argparse
import functools
import math
import pickle
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor, nn

from inference_scaling.config import ConfigError, ModelConfig
from inference_scaling.models.base import ModelAdapter
from inference_scaling.models.latent import check_source, decode_latents, load_vae
from inference_scaling.weights import WeightsError

SIT_XL2_256_URL = ("https://www.dl.dropboxusercontent.com/scl/fi/as9oeomcbub47de5g4be0/SiT-XL-2-256.pt"
                   "?rlkey=uxzxmpicu46coq3msb17b9ofa&dl=0")  # willisma/SiT download.py
MLP_RATIO = 4.0  # every published SiT size
FREQUENCY_DIM = 256  # sinusoidal timestep features before the timestep MLP
ARCHITECTURE = ("depth", "hidden_size", "num_heads", "patch_size", "latent_size", "in_channels", "learn_sigma",
                "num_classes")


@dataclass
class SiTConfig(ModelConfig):
    name: str = "sit_xl2"
    weights: str = SIT_XL2_256_URL  # .pt/.pth/.bin/.safetensors state dict, train.py checkpoint, or an http(s) URL
    solver: str = "heun2"  # SiT's ODE sampler: torchdiffeq heun2, 2 NFEs per step
    search_steps: int = 25  # 50 NFEs per candidate (Ma et al. 2025, Table 5)
    final_steps: int = 125  # 250 NFEs for the chosen noise
    depth: int = 28  # transformer blocks
    hidden_size: int = 1152  # token width
    num_heads: int = 16  # attention heads (hidden_size must be a multiple)
    patch_size: int = 2  # latent pixels per token side
    latent_size: int = 32  # latent side: image side / 8 (32 for 256 px)
    in_channels: int = 4  # latent channels of the VAE
    learn_sigma: bool = True  # 2·in_channels outputs, the first in_channels the velocity (the 256 px checkpoint)
    num_classes: int = 1000  # class-embedding rows − 1; row num_classes is the null class
    guidance_channels: Optional[int] = 3  # guide only the first channels (SiT's own CFG: 3); null: all channels
    vae: str = "stabilityai/sd-vae-ft-mse"  # diffusers AutoencoderKL: hub id or folder (SiT also used sd-vae-ft-ema)
    vae_scale: float = 0.18215  # latents = VAE latents · vae_scale
    decode_batch_size: int = 8  # latents per VAE decode call


# ---------- the network (DiT's key layout, so official checkpoints load as they are) ----------


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """adaLN: per-sample shift and scale of normalised tokens (B, T, D)."""
    return x * (1 + scale[:, None]) + shift[:, None]


def timestep_embedding(t: Tensor, dim: int = FREQUENCY_DIM, max_period: float = 10_000.0) -> Tensor:
    """[cos, sin] features of the time t ∈ [0, 1] at frequencies max_period^(−k/half) (GLIDE/DiT), t unscaled."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def sincos_1d(dim: int, positions: Tensor) -> Tensor:
    """(M, dim) [sin, cos] embedding of positions at frequencies 10000^(−2k/dim) (MAE's fixed embedding)."""
    omega = 1.0 / 10_000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2))
    angles = positions.double()[:, None] * omega[None]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


def sincos_2d(dim: int, grid: int) -> Tensor:
    """(grid², dim) fixed 2D position embedding of row-major tokens: the first half encodes the column, the
    second the row (MAE's `get_2d_sincos_pos_embed`, whose meshgrid puts w first)."""
    assert dim % 4 == 0, f"hidden_size={dim} must be a multiple of 4 for the 2D sin-cos embedding"
    rows, cols = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    return torch.cat([sincos_1d(dim // 2, cols.flatten()), sincos_1d(dim // 2, rows.flatten())], dim=1)


class PatchEmbed(nn.Module):
    """Non-overlapping p×p patches of a (B, C, H, W) latent → (B, H·W/p², D) row-major tokens."""

    def __init__(self, patch_size: int, in_channels: int, hidden_size: int):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, hidden_size, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class TimestepEmbedder(nn.Module):
    def __init__(self, hidden_size: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(FREQUENCY_DIM, hidden_size), nn.SiLU(), nn.Linear(hidden_size, hidden_size))

    def forward(self, t: Tensor) -> Tensor:
        # Cast to the weights' dtype: outside autocast a bf16/fp16 network gets features of its own dtype.
        return self.mlp(timestep_embedding(t).to(self.mlp[0].weight.dtype))


class LabelEmbedder(nn.Module):
    """num_classes + 1 rows: row num_classes is the null class that classifier-free guidance conditions on."""

    def __init__(self, num_classes: int, hidden_size: int):
        super().__init__()
        self.embedding_table = nn.Embedding(num_classes + 1, hidden_size)

    def forward(self, labels: Tensor) -> Tensor:
        return self.embedding_table(labels)


class Attention(nn.Module):
    """Multi-head self-attention with one fused qkv projection (timm's layout: q, k, v then heads)."""

    def __init__(self, hidden_size: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size)
        self.proj = nn.Linear(hidden_size, hidden_size)

    def forward(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    def __init__(self, hidden_size: int, mlp_hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(hidden_size, mlp_hidden)
        self.fc2 = nn.Linear(mlp_hidden, hidden_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class SiTBlock(nn.Module):
    """Transformer block with adaLN-Zero conditioning: shift, scale and gate of attention and MLP from c."""

    def __init__(self, hidden_size: int, num_heads: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(hidden_size, num_heads)
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(hidden_size, int(hidden_size * MLP_RATIO))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 6 * hidden_size))

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.adaLN_modulation(c).chunk(6, dim=1)
        x = x + gate_msa[:, None] * self.attn(modulate(self.norm1(x), shift_msa, scale_msa))
        return x + gate_mlp[:, None] * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))


class FinalLayer(nn.Module):
    def __init__(self, hidden_size: int, patch_size: int, out_channels: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden_size, patch_size * patch_size * out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size))

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


class SiT(nn.Module):
    """SiT's velocity network v_SiT(x, t, y) on (B, in_channels, latent_size, latent_size) latents.

    Parameters keep PyTorch's default initialisation (SiT's adaLN-Zero training init is irrelevant once a
    checkpoint loads); `pos_embed` is the fixed 2D sin-cos embedding, a parameter as in the official state dict.
    """

    def __init__(self, depth: int = 28, hidden_size: int = 1152, num_heads: int = 16, patch_size: int = 2,
                 latent_size: int = 32, in_channels: int = 4, learn_sigma: bool = True, num_classes: int = 1000):
        super().__init__()
        self.in_channels, self.patch_size, self.learn_sigma = in_channels, patch_size, learn_sigma
        self.out_channels = 2 * in_channels if learn_sigma else in_channels
        self.x_embedder = PatchEmbed(patch_size, in_channels, hidden_size)
        self.t_embedder = TimestepEmbedder(hidden_size)
        self.y_embedder = LabelEmbedder(num_classes, hidden_size)
        self.pos_embed = nn.Parameter(sincos_2d(hidden_size, latent_size // patch_size)[None].float(),
                                      requires_grad=False)
        self.blocks = nn.ModuleList(SiTBlock(hidden_size, num_heads) for _ in range(depth))
        self.final_layer = FinalLayer(hidden_size, patch_size, self.out_channels)

    def unpatchify(self, x: Tensor) -> Tensor:
        """(B, h·w, p·p·C) tokens → (B, C, h·p, w·p)."""
        p, c = self.patch_size, self.out_channels
        h = w = math.isqrt(x.shape[1])
        x = x.reshape(x.shape[0], h, w, p, p, c)
        return torch.einsum("nhwpqc->nchpwq", x).reshape(x.shape[0], c, h * p, w * p)

    def forward(self, x: Tensor, t: Tensor, y: Tensor) -> Tensor:
        """SiT's velocity x* − ε at time t (B,) in [0, 1] for class labels y (B,); with learn_sigma the second
        half of the outputs (unused by SiT's samplers) is dropped, as the official forward does."""
        h = self.x_embedder(x) + self.pos_embed
        c = self.t_embedder(t) + self.y_embedder(y)
        for block in self.blocks:
            h = block(h, c)
        out = self.unpatchify(self.final_layer(h, c))
        return out[:, : self.in_channels]


# ---------- checkpoints: where they come from, and a strict key and shape check ----------


def is_url(spec: str) -> bool:
    return spec.startswith(("https://", "http://"))


def weights_file(spec: str) -> Path:
    """A local path, or where an http(s) URL's file lies in the torch hub cache once downloaded."""
    if is_url(spec):
        return Path(torch.hub.get_dir()) / "checkpoints" / Path(urllib.parse.urlparse(spec).path).name
    return Path(spec).expanduser()


def fetch_weights(spec: str) -> Path:
    """The checkpoint file of `spec`, downloading a URL once into the torch hub cache (as SiT's download.py)."""
    file = weights_file(spec)
    if is_url(spec) and not file.is_file():
        file.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(spec, str(file))
    return file


def _torch_load(file: Path) -> dict:
    # train.py checkpoints also hold their argparse.Namespace; allow that one harmless class, no pickled code.
    with torch.serialization.safe_globals([argparse.Namespace]):
        try:
            return torch.load(file, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as err:
            if "mmap" not in str(err):
                raise
            return torch.load(file, map_location="cpu", weights_only=True)  # legacy (non-zip) format


def read_state_dict(spec: str, file: Path) -> dict[str, Tensor]:
    """The tensors of a SiT checkpoint file: safetensors, a plain state dict, or train.py's {"ema": ...}."""
    key = f"model.weights={spec!r}"
    if not file.is_file():
        raise WeightsError(f"{key}: file {str(file)!r} does not exist")
    try:
        if file.suffix == ".safetensors":
            return load_file(str(file))
        state = _torch_load(file)
    except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError, SafetensorError) as err:
        detail = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise WeightsError(f"{key}: not a readable checkpoint (torch.load(weights_only=True) or safetensors): "
                           f"{detail}") from None
    if isinstance(state, dict) and isinstance(state.get("ema"), dict):
        state = state["ema"]  # a train.py checkpoint: its EMA weights, as SiT's sampling scripts take
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise WeightsError(f"{key}: not a state dict of tensors")
    return state


def architecture(cfg) -> dict:
    return {name: getattr(cfg, name) for name in ARCHITECTURE}


@functools.lru_cache(maxsize=8)
def expected_shapes(depth, hidden_size, num_heads, patch_size, latent_size, in_channels, learn_sigma,
                    num_classes) -> dict[str, tuple[int, ...]]:
    """Key → shape of the state dict of this architecture (built on the meta device: nothing is allocated)."""
    with torch.device("meta"):
        net = SiT(depth, hidden_size, num_heads, patch_size, latent_size, in_channels, learn_sigma, num_classes)
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


def _hint(key: str, cfg) -> str:
    """Which setting a mismatching key depends on."""
    if key.startswith("blocks."):
        return f"is this a SiT checkpoint of depth {cfg.depth} and width {cfg.hidden_size}?"
    settings = {"pos_embed": "latent_size, patch_size, hidden_size",
                "x_embedder": "in_channels, patch_size, hidden_size", "y_embedder": "num_classes, hidden_size",
                "final_layer.linear": "learn_sigma, in_channels, patch_size"}
    names = next((v for k, v in settings.items() if key.startswith(k)), "hidden_size")
    return f"check model.{names.replace(', ', ', model.')}"


def check_state(shapes: dict[str, tuple[int, ...]], cfg) -> None:
    """Refuse a checkpoint whose keys or shapes differ from the configured architecture, naming the first key."""
    expected = expected_shapes(**architecture(cfg))
    where = f"model.weights={cfg.weights!r}"
    missing = [k for k in expected if k not in shapes]
    if missing:
        raise WeightsError(f"{where}: missing key {missing[0]!r} ({_hint(missing[0], cfg)})")
    unexpected = sorted(k for k in shapes if k not in expected)
    if unexpected:
        raise WeightsError(f"{where}: unexpected key {unexpected[0]!r} ({_hint(unexpected[0], cfg)})")
    for k, shape in expected.items():
        if tuple(shapes[k]) != shape:
            raise WeightsError(f"{where}: key {k!r} has shape {tuple(shapes[k])}, this architecture expects "
                               f"{shape} ({_hint(k, cfg)})")


@functools.lru_cache(maxsize=8)
def _file_shapes(spec: str, file: str, mtime_ns: int, size: int) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in read_state_dict(spec, Path(file)).items()}


def checkpoint_shapes(spec: str, file: Path) -> dict[str, tuple[int, ...]]:
    """Key → shape of a checkpoint, read once per file version (a sweep's combinations share it)."""
    stat = file.stat()
    return _file_shapes(spec, str(file), stat.st_mtime_ns, stat.st_size)


def load_sit(cfg) -> SiT:
    """The SiT of `cfg`'s architecture with `cfg.weights` loaded strictly, float32, on `cfg.device`."""
    state = read_state_dict(cfg.weights, fetch_weights(cfg.weights))
    check_state({k: tuple(v.shape) for k, v in state.items()}, cfg)
    with torch.device("meta"):  # no random init: every tensor comes from the checkpoint
        net = SiT(**architecture(cfg))
    net.load_state_dict(state, strict=True, assign=True)
    return net.to(device=cfg.device, dtype=torch.float32).eval()


# ---------- the adapter ----------


def _check_architecture(cfg) -> None:
    for name in ("depth", "hidden_size", "num_heads", "patch_size", "latent_size", "in_channels", "num_classes",
                 "decode_batch_size"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"model.{name}={getattr(cfg, name)} must be >= 1")
    if cfg.hidden_size % cfg.num_heads:
        raise ValueError(f"model.hidden_size={cfg.hidden_size} must be a multiple of model.num_heads={cfg.num_heads}")
    if cfg.hidden_size % 4:
        raise ValueError(f"model.hidden_size={cfg.hidden_size} must be a multiple of 4 (2D sin-cos positions)")
    if cfg.latent_size % cfg.patch_size:
        raise ValueError(f"model.latent_size={cfg.latent_size} must be a multiple of model.patch_size={cfg.patch_size}")
    if cfg.guidance_channels is not None and not 1 <= cfg.guidance_channels <= cfg.in_channels:
        raise ValueError(f"model.guidance_channels={cfg.guidance_channels} must lie in 1..model.in_channels="
                         f"{cfg.in_channels}, or be null (guide all channels)")
    if not cfg.vae_scale > 0:
        raise ValueError(f"model.vae_scale={cfg.vae_scale} must be > 0")


def _check_weights(cfg) -> None:
    if not cfg.weights:
        raise ValueError(f"model.weights is empty: {cfg.name} has no public checkpoint; train one with the official "
                         f"repo (willisma/SiT train.py) and pass model.weights=/path/to/checkpoint.pt")
    file = weights_file(cfg.weights)
    if is_url(cfg.weights) and not file.is_file():
        return  # downloaded when the job loads it
    if not file.is_file():
        raise ValueError(f"model.weights={cfg.weights!r} does not exist; give a SiT checkpoint (.pt or "
                         f".safetensors) or an http(s) URL")
    try:
        check_state(checkpoint_shapes(cfg.weights, file), cfg)
    except WeightsError as err:
        raise ValueError(str(err)) from None


class SiTModel(ModelAdapter):
    """SiT on ImageNet latents: class-index conditions, σ = 1 − t, v = −v_SiT, SD-VAE decode.

    The σ grid is the base class's linspace(1, 0, steps + 1), SiT's own linspace(0, 1) in t (no sample_eps offset
    for the linear velocity model, see the module docstring).
    """

    name = "sit"
    condition_kind = "imagenet"

    def __init__(self, cfg: SiTConfig):
        super().__init__(cfg)
        self.net = load_sit(cfg)
        self.vae = load_vae(cfg.vae, None, torch.float32, cfg.device)  # float32: one decode per candidate is cheap
        self.noise_shape = (cfg.in_channels, cfg.latent_size, cfg.latent_size)
        self.null_cond = torch.tensor([cfg.num_classes])
        self.guidance_channels = cfg.guidance_channels

    @classmethod
    def check_config(cls, cfg: SiTConfig) -> None:
        _check_architecture(cfg)
        check_source("model.vae", cfg.vae, needs=("config.json",))
        _check_weights(cfg)

    def encode(self, conditions) -> Tensor:
        labels = conditions.labels.long()
        if len(labels) and int(labels.max()) >= self.cfg.num_classes:
            raise ConfigError(f"benchmark class {int(labels.max())} is not below model.num_classes="
                              f"{self.cfg.num_classes}")
        return labels

    @torch.no_grad()
    def __call__(self, x: Tensor, sigma: Tensor, cond: Tensor) -> Tensor:
        t = 1.0 - sigma.float()  # SiT's time: 0 = noise, 1 = data
        if self.dtype == torch.float32:
            return -self.net(x, t, cond)
        with torch.autocast(torch.device(self.device).type, dtype=self.dtype):  # weights stay float32
            return -self.net(x, t, cond).float()

    def decode(self, x: Tensor) -> Tensor:
        return decode_latents(self.vae, x, self.cfg.vae_scale, batch_size=self.cfg.decode_batch_size)
