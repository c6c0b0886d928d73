"""Loading committed or user-supplied safetensors checkpoints, with one-line errors."""

from __future__ import annotations

import functools
import json
from importlib import resources
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

PACKAGE_PREFIX = "package:"


class WeightsError(RuntimeError):
    """A checkpoint that is missing, unreadable or does not fit its network."""


def resolve(path: str) -> Path:
    """`package:NAME` names a file committed in inference_scaling/assets; anything else is a path."""
    if path.startswith(PACKAGE_PREFIX):
        return Path(str(resources.files("inference_scaling") / "assets" / path[len(PACKAGE_PREFIX):]))
    return Path(path).expanduser()


def check_exists(path: str) -> Path:
    file = resolve(path)
    if not file.is_file():
        raise WeightsError(f"weights file {str(file)!r} (from {path!r}) does not exist; give an existing "
                           f".safetensors path or package:NAME for a file in inference_scaling/assets")
    return file


def load(path: str) -> tuple[dict[str, torch.Tensor], dict]:
    """Tensors and the architecture (stored as JSON in the metadata key 'config') of a checkpoint."""
    file = check_exists(path)
    try:
        from safetensors import safe_open

        with safe_open(str(file), framework="pt") as f:
            meta = f.metadata() or {}
        tensors = load_file(str(file))
        config = json.loads(meta.get("config", "{}"))
    except (SafetensorError, OSError, ValueError) as err:
        raise WeightsError(f"weights file {str(file)!r} is not a readable safetensors checkpoint ({err})") from None
    bad = next((name for name, t in tensors.items() if t.is_floating_point() and not torch.isfinite(t).all()), None)
    if bad is not None:  # a diverged or corrupted checkpoint would turn every sample into NaN
        raise WeightsError(f"weights file {str(file)!r} holds NaN or inf in tensor {bad!r}; use a checkpoint with "
                           f"finite values")
    return tensors, config


@functools.lru_cache(maxsize=16)
def _readable(file: str, mtime_ns: int, size: int) -> None:
    load(file)


def check_readable(path: str) -> None:
    """`load` would succeed (readable, finite tensors); read once per file version, so a sweep's up-front check of
    many combinations reads each checkpoint once."""
    file = check_exists(path)
    stat = file.stat()
    _readable(str(file), stat.st_mtime_ns, stat.st_size)


def save(path: Path, module: torch.nn.Module, config: dict, dtype: torch.dtype | None = None) -> None:
    """The module's tensors (floating ones as `dtype` if given: float16 halves a file; loading casts them back to
    the module's dtype) with its architecture as JSON metadata."""
    state = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).detach().contiguous().cpu()
             for k, v in module.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata={"config": json.dumps(config)})


def load_into(module_cls, path: str) -> torch.nn.Module:
    """Build `module_cls(**config)` from a checkpoint's metadata and load its tensors strictly."""
    tensors, config = load(path)
    try:
        module = module_cls(**config)
        module.load_state_dict(tensors, strict=True)
    except (TypeError, RuntimeError) as err:
        first = str(err).strip().splitlines()[0]
        raise WeightsError(f"weights file {path!r} does not fit {module_cls.__name__}: {first}") from None
    return module.eval()
