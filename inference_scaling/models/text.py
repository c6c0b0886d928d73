"""Prompt embeddings computed once per distinct prompt, cached in memory and optionally on disk."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable, Optional

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from inference_scaling.denoiser import EmbeddedConditions


class PromptEmbeddings:
    """`encode(prompts)` returns the condition rows of each prompt, calling `encoder` (a batch of prompts → dict of
    tensors with one row per prompt) once per distinct prompt. With `cache_dir`, each prompt's embeddings are
    stored as one safetensors file keyed by `key` (the model id and text settings) and the prompt, so a sweep
    encodes each prompt once across jobs."""

    def __init__(self, encoder: Callable[[list[str]], dict[str, Tensor]], key: str, cache_dir: Optional[str] = None,
                 batch_size: int = 16):
        self.encoder = encoder
        self.key = key
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else None
        self.batch_size = batch_size
        self.memory: dict[str, dict[str, Tensor]] = {}
        self.encoded = 0  # prompts run through the encoder (not found in a cache)

    def _file(self, prompt: str) -> Optional[Path]:
        if self.cache_dir is None:
            return None
        digest = hashlib.sha256(f"{self.key}\0{prompt}".encode()).hexdigest()
        return self.cache_dir / f"{digest}.safetensors"

    def _lookup(self, prompt: str) -> Optional[dict[str, Tensor]]:
        if prompt in self.memory:
            return self.memory[prompt]
        file = self._file(prompt)
        if file is not None and file.is_file():
            self.memory[prompt] = load_file(str(file))
            return self.memory[prompt]
        return None

    def encode(self, prompts: list[str]) -> EmbeddedConditions:
        todo = list(dict.fromkeys(p for p in prompts if self._lookup(p) is None))
        for lo in range(0, len(todo), self.batch_size):
            batch = todo[lo:lo + self.batch_size]
            with torch.no_grad():
                tensors = self.encoder(batch)
            self.encoded += len(batch)
            for row, prompt in enumerate(batch):
                entry = {k: v[row].detach().float().cpu().contiguous() for k, v in tensors.items()}
                self.memory[prompt] = entry
                file = self._file(prompt)
                if file is not None:
                    file.parent.mkdir(parents=True, exist_ok=True)
                    tmp = file.with_name(f".{file.name}.tmp")
                    save_file(entry, str(tmp))
                    tmp.replace(file)
        keys = self.memory[prompts[0]].keys()
        return EmbeddedConditions({k: torch.stack([self.memory[p][k] for p in prompts]) for k in keys})
