"""What every latent backend shares: where its parts come from (hub id or local folder), its VAE, and the decode
from latents to [-1, 1] images."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

import torch
from torch import Tensor

from inference_scaling.weights import WeightsError

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def check_source(key: str, spec: str, needs: tuple[str, ...] = ()) -> None:
    """A hub id (`org/name`, fetched when loaded) or an existing local folder (holding `needs`); else one line."""
    path = Path(spec).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ValueError(f"{key}={spec!r} is a file; give a folder written by save_pretrained or a hub id")
        missing = [n for n in needs if not (path / n).exists()]
        if missing:
            raise ValueError(f"{key}={spec!r} has no {missing[0]!r}; give a folder written by save_pretrained "
                             f"(holding {', '.join(needs)}) or a hub id")
        return
    if not spec or not HUB_ID.match(spec) or spec.startswith((".", "~")):
        raise ValueError(f"{key}={spec!r} is neither an existing folder nor a hub id like 'org/name'")


def load_vae(spec: str, subfolder: Optional[str], dtype: torch.dtype, device: str):
    """diffusers' AutoencoderKL from a hub id or folder (optionally a pipeline's `vae` subfolder)."""
    from diffusers import AutoencoderKL

    kwargs = {"subfolder": subfolder} if subfolder else {}
    return AutoencoderKL.from_pretrained(spec, torch_dtype=dtype, **kwargs).to(device).eval()


@torch.no_grad()
def decode_latents(vae, latents: Tensor, scaling: float, shift: float = 0.0, batch_size: int = 8) -> Tensor:
    """Images (B, 3, H, W) float32 in [-1, 1] from latents: VAE(latents / scaling + shift), `batch_size` at a time."""
    out = []
    dtype = vae.dtype  # once: diffusers walks every submodule to answer it
    for lo in range(0, len(latents), batch_size):
        z = latents[lo:lo + batch_size] / scaling + shift
        out.append(vae.decode(z.to(dtype)).sample.float().clamp(-1, 1))
    return torch.cat(out)


def first_line(err: Exception) -> str:
    """An exception's first line (its type's name when it has no message), for one-line refusals."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def load_part(cls, spec: str, subfolder: str, device: Optional[str] = None, strict: bool = True, **options):
    """`cls.from_pretrained(spec, subfolder=..., **options)` (a diffusers / transformers part of a pipeline folder or
    hub id) moved to `device`, in eval mode. A failure is a one-line WeightsError, and so (`strict`, for networks)
    are missing, unexpected or mismatched checkpoint keys, which from_pretrained only warns about."""
    try:
        loaded = cls.from_pretrained(spec, subfolder=subfolder, **options, **({"output_loading_info": True} if strict
                                                                              else {}))
    except (OSError, ValueError, RuntimeError, KeyError, TypeError) as err:
        raise WeightsError(f"model.weights={spec!r}: {subfolder}/ does not load as {cls.__name__} "
                           f"({first_line(err)})") from None
    part, info = loaded if strict else (loaded, {})
    for kind in ("missing_keys", "unexpected_keys", "mismatched_keys"):
        keys = list(info.get(kind) or [])
        if keys:
            first = keys[0][0] if isinstance(keys[0], (tuple, list)) else keys[0]
            raise WeightsError(f"model.weights={spec!r}: {subfolder}/ checkpoint has {len(keys)} "
                               f"{kind.replace('_', ' ')} for {cls.__name__}, e.g. {first!r}")
    return part if device is None else part.to(device).eval()
