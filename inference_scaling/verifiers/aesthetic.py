"""LAION aesthetic score verifier (Schuhmann et al., improved-aesthetic-predictor "v2"; LAION-5B, 2022).

An MLP regresses a 1–10 human aesthetic rating from the L2-normalised CLIP ViT-L/14 image embedding; Ma et al.
(2025, §5) search with it as the "Aesthetic Score" verifier. The prompt plays no part.

Head weights: the published state dict `sac+logos+ava1-l14-linearMSE.pth` (keys `layers.0`, `layers.2`,
`layers.4`, `layers.6`, `layers.7`; github.com/christophschuhmann/improved-aesthetic-predictor, mirrored on the
hub as camenduru/improved-aesthetic-predictor), read with `torch.load(weights_only=True)`, or the same tensors
as .safetensors. Its Linear layers have no activations between them (they are commented out upstream), so the
head is affine; the Dropout layers only matter in training. ImageReward's head is the same MLP on BLIP features.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from inference_scaling.config import VerifierConfig
from inference_scaling.verifiers._images import score_in_batches
from inference_scaling.verifiers.base import VerifierCost
from inference_scaling.verifiers.clip_score import DEFAULT_CLIP, ClipEncoder
from inference_scaling.weights import WeightsError

HUB_PREFIX = "hf:"
DEFAULT_HEAD = "hf:camenduru/improved-aesthetic-predictor/sac+logos+ava1-l14-linearMSE.pth"


@dataclass
class AestheticConfig(VerifierConfig):
    name: str = "aesthetic"
    weights: str = ""  # the head's state dict, a local .pth/.safetensors; "": the published head from the hub
    clip: str = DEFAULT_CLIP  # transformers CLIP ViT-L/14: hub id or local folder
    input_size: int = 768  # the head's input: CLIP's projection dim (768 for ViT-L/14)
    device: Optional[str] = None  # None: the generator's device
    dtype: str = "float32"  # CLIP's dtype; the head runs in float32
    batch_size: int = 32


class ScoreMLP(nn.Module):
    """The improved-aesthetic-predictor MLP: Linear(d,1024)→Dropout→Linear(1024,128)→Dropout→Linear(128,64)
    →Dropout→Linear(64,16)→Linear(16,1), indices as in the published state dict."""

    def __init__(self, input_size: int = 768):
        super().__init__()
        self.input_size = input_size
        self.layers = nn.Sequential(
            nn.Linear(input_size, 1024), nn.Dropout(0.2),
            nn.Linear(1024, 128), nn.Dropout(0.2),
            nn.Linear(128, 64), nn.Dropout(0.1),
            nn.Linear(64, 16),
            nn.Linear(16, 1),
        )

    def forward(self, features: Tensor) -> Tensor:
        return self.layers(features).squeeze(-1)


def resolve_file(spec: str) -> Path:
    """A local file, or `hf:OWNER/REPO/PATH` downloaded (and cached) with huggingface_hub."""
    if spec.startswith(HUB_PREFIX):
        parts = spec[len(HUB_PREFIX):].split("/", 2)
        if len(parts) != 3:
            raise WeightsError(f"weights {spec!r}: a hub file is written hf:OWNER/REPO/PATH")
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(repo_id=f"{parts[0]}/{parts[1]}", filename=parts[2]))
    file = Path(spec).expanduser()
    if not file.is_file():
        raise WeightsError(f"weights file {str(file)!r} does not exist; give a local file or hf:OWNER/REPO/PATH")
    return file


def load_state_file(spec: str) -> dict[str, Tensor]:
    """Tensors of a .safetensors file, or of a PyTorch state dict read with torch.load(weights_only=True)."""
    file = resolve_file(spec)
    if file.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(file))
    state = torch.load(str(file), map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise WeightsError(f"weights file {str(file)!r} holds a {type(state).__name__}, not a state dict")
    return state


def load_strict(module: nn.Module, state: dict[str, Tensor], spec: str, what: str) -> nn.Module:
    """`module.load_state_dict(state, strict=True)` in eval mode; a mismatch raises WeightsError naming the first
    missing, unexpected or misshapen key."""
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as err:
        lines = str(err).strip().splitlines()
        raise WeightsError(f"weights {spec!r} do not fit {what}: {lines[-1].strip()[:300]}") from None
    return module.eval()


def load_head(spec: str, input_size: int = 768) -> ScoreMLP:
    """The aesthetic MLP with the published weights."""
    return load_strict(ScoreMLP(input_size), load_state_file(spec), spec, f"the aesthetic MLP ({input_size} inputs)")


class Aesthetic:
    """Predicted LAION aesthetic rating (about 1–10) of each image; higher is better; prompts are ignored."""

    name = "aesthetic"
    set_level = False  # each image is scored on its own
    takes_prompts = True  # scores images against the benchmark's prompts (any benchmark)

    def __init__(self, encoder: ClipEncoder, head: ScoreMLP, batch_size: int = 32):
        if head.input_size != encoder.embed_dim:
            raise ValueError(f"aesthetic head takes {head.input_size} features but the CLIP embeds to "
                             f"{encoder.embed_dim}; the published head needs CLIP ViT-L/14 (768)")
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be >= 1")
        self.encoder = encoder
        self.head = head.to(encoder.device).eval()
        self.batch_size = batch_size
        self.cost = VerifierCost()

    @classmethod
    def from_pretrained(cls, weights: str = DEFAULT_HEAD, clip: str = DEFAULT_CLIP, device: str = "cpu",
                        dtype: str = "float32", batch_size: int = 32, input_size: int = 768) -> "Aesthetic":
        return cls(ClipEncoder.from_pretrained(clip, device, dtype), load_head(weights, input_size), batch_size)

    @classmethod
    def from_config(cls, cfg: AestheticConfig, device: str = "cpu") -> "Aesthetic":
        return cls.from_pretrained(cfg.weights or DEFAULT_HEAD, cfg.clip, cfg.device or device, cfg.dtype,
                                   cfg.batch_size, cfg.input_size)

    def _score(self, images: Tensor, prompts: list[str]) -> Tensor:
        return self.head(F.normalize(self.encoder.embed_images(images), dim=-1))

    def __call__(self, images: Tensor, prompts: Sequence[str]) -> Tensor:
        return score_in_batches(self._score, images, prompts, self.batch_size, self.cost)
