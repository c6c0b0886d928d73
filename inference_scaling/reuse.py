"""Never pay twice: candidate streams shared by the jobs of a sweep.

Budget n of random search selects the best of each condition's first n candidates, and those candidates are
computed the same way at every budget (`RandomSearch.extend`); zero-order search's first K iterations and
evolutionary search's first G generations are the same at every budget (`ZeroOrderSearch.extend`,
`EvolutionarySearch.extend`). So a budget sweep needs only its largest budget's work. Each job of a sweep reads the stream its chunk has so far (from any earlier job of the same config
apart from the budget), computes only the candidates it lacks, and writes the longer stream back. Jobs therefore
reuse one another's work in whatever order they run; under a parallel launcher two jobs may compute the same
candidates (the longer stream is kept), never different ones.

Files: `<sweep dir>/.reuse/<fingerprint without the budget>/KKKKK.safetensors`, one per chunk.
"""

from __future__ import annotations

import os
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import load_file, save_file


FOLDER = ".reuse"


class StreamCache:
    """The candidate streams of one config's chunks."""

    def __init__(self, root: Path, key: str):
        self.folder = Path(root) / FOLDER / key

    def path(self, k: int) -> Path:
        return self.folder / f"{k:05d}.safetensors"

    def _length(self, k: int) -> int:
        try:
            with safe_open(str(self.path(k)), framework="pt") as f:
                return int(f.metadata()["n"])
        except (OSError, KeyError, ValueError):
            return 0

    def load(self, k: int, stream_type: type):
        """Chunk k's stream (a `stream_type`: a search's CandidateStream, PivotWalk, ...), or None if no job has
        written one."""
        n = self._length(k)
        if not n:
            return None
        return stream_type(n=n, **load_file(str(self.path(k))))

    def save(self, k: int, stream) -> None:
        """Keep the stream if it is longer than the one on disk (renamed into place whole)."""
        if stream.n <= self._length(k):
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / f".{k:05d}.tmp-{os.getpid()}"
        save_file({name: t.contiguous() for name, t in stream.tensors().items()}, str(tmp), metadata={"n": str(stream.n)})
        os.replace(tmp, self.path(k))
