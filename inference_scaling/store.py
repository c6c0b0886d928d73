"""A job's conditions in chunks on disk: what a job has finished, what it resumes from, what evaluation reads.

A job splits its benchmark's conditions (global positions 0..C-1) into chunks of `benchmark.chunk_size`; chunk k
holds positions [k·S, (k+1)·S). A shard `i/n` runs the chunks k with k mod n = i, so a chunk's work (its calls,
noises and choices) is the same whether it runs in the whole job or in a shard. Each finished chunk is one file,
`chunks/KKKKK.safetensors`, renamed into place whole: the selected images, the global positions, and (as JSON in
its metadata) the per-condition records, lineage and spending. A job killed at any moment restarts after its last
complete chunk; evaluation streams images from the chunk files, one chunk in memory at a time.

`plan.json`, written when a job starts, names the chunks and the config's fingerprint: the hash of every setting
that changes a chunk's content (not the shard, logging, progress bars or output options), so chunks of another
config are never mixed into a job, and a merge can check that its shards belong together.
"""

from __future__ import annotations

import bisect
import dataclasses
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from inference_scaling.sampling import STOCHASTIC

PLAN = "plan.json"
CHUNKS = "chunks"
# Settings that never change what a chunk holds: where and how a job reports, and which chunks it runs.
NOT_FINGERPRINTED = ("progress", "save_images", "label", "logger", "overwrite", "reuse", "benchmark.shard",
                     "model.text_cache")


class StoreError(ValueError):
    """A job folder that holds another job's chunks, or a shard specification that does not fit."""


def _drop(tree: dict, dotted: str) -> None:
    *parents, leaf = dotted.split(".")
    for key in parents:
        tree = tree.get(key, {})
    tree.pop(leaf, None)


def fingerprint(cfg, ignore: tuple[str, ...] = ()) -> str:
    """16 hex digits of the SHA-256 of the config's chunk-relevant settings (and not `ignore`)."""
    tree = dataclasses.asdict(cfg)
    for key in (*NOT_FINGERPRINTED, *ignore):
        _drop(tree, key)
    if tree["model"].get("solver") not in STOCHASTIC:
        tree["model"].pop("sde_scale", None)  # no effect on an ODE's bits: folders from before it existed still resume
    device = str(tree["model"]["device"])
    tree["model"]["device"] = device.split(":")[0]  # cuda:0 and cuda:3 compute the same bits
    return hashlib.sha256(json.dumps(tree, sort_keys=True, default=str).encode()).hexdigest()[:16]


def parse_shard(shard: str) -> tuple[int, int]:
    """`"i/n"` as (i, n) with 0 <= i < n; `""` is the whole job, (0, 1)."""
    if not shard:
        return 0, 1
    try:
        i, n = (int(part) for part in shard.split("/"))
    except ValueError:
        raise StoreError(f"benchmark.shard={shard!r} is not i/n; use e.g. benchmark.shard=0/4 (shards 0/4 .. 3/4)") from None
    if not (n >= 1 and 0 <= i < n):
        raise StoreError(f"benchmark.shard={shard!r}: need 0 <= i < n, e.g. benchmark.shard=0/{max(n, 1)}")
    return i, n


@dataclass(frozen=True)
class Plan:
    """The chunks a job (or one shard of it) runs."""

    n_total: int  # conditions of the whole benchmark
    chunk_size: int
    shard: tuple[int, int]
    fingerprint: str

    @property
    def n_chunks_total(self) -> int:
        return -(-self.n_total // self.chunk_size)

    @property
    def chunks(self) -> range:
        i, n = self.shard
        return range(i, self.n_chunks_total, n)

    @property
    def n_conditions(self) -> int:
        """Conditions of this job (or shard): its chunks are full but for the benchmark's last chunk."""
        last = self.n_chunks_total - 1
        short = last * self.chunk_size + self.chunk_size - self.n_total
        return len(self.chunks) * self.chunk_size - (short if last in self.chunks else 0)

    def positions(self, k: int) -> Tensor:
        return torch.arange(k * self.chunk_size, min((k + 1) * self.chunk_size, self.n_total))

    @property
    def all_positions(self) -> Tensor:
        return torch.cat([self.positions(k) for k in self.chunks])

    def as_json(self) -> dict:
        return {"n_conditions": self.n_conditions, "n_chunks": len(self.chunks),
                "n_conditions_total": self.n_total, "chunk_size": self.chunk_size,
                "shard": f"{self.shard[0]}/{self.shard[1]}", "fingerprint": self.fingerprint}


def make_plan(n_total: int, chunk_size: int, shard: str, print_: str) -> Plan:
    """The plan of a job; refuses a shard that would get no chunk."""
    i, n = parse_shard(shard)
    plan = Plan(n_total, chunk_size, (i, n), print_)
    if n > plan.n_chunks_total:
        raise StoreError(f"benchmark.shard={shard} asks for {n} shards but the {n_total:,} conditions make "
                         f"{plan.n_chunks_total} chunk(s) of benchmark.chunk_size={chunk_size}; use at most "
                         f"{plan.n_chunks_total} shards or a smaller benchmark.chunk_size")
    return plan


def _atomic_save(tensors: dict[str, Tensor], metadata: dict[str, str], path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    os.replace(tmp, path)


class ChunkStore:
    """The chunk files of one job folder."""

    def __init__(self, out: Path):
        self.out = Path(out)
        self.folder = self.out / CHUNKS

    def path(self, k: int) -> Path:
        return self.folder / f"{k:05d}.safetensors"

    def open(self, plan: Plan) -> list[int]:
        """Start or resume the job: write plan.json, refuse chunks of another config; returns the chunks to run."""
        plan_file = self.out / PLAN
        if plan_file.exists():
            old = json.loads(plan_file.read_text())
            if old != plan.as_json():
                raise StoreError(f"{self.out} holds chunks of another config (fingerprint {old.get('fingerprint')}, "
                                 f"this job's is {plan.fingerprint}); rerun with overwrite=true to replace them, or "
                                 f"give another hydra.run.dir / hydra.sweep.dir")
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = plan_file.with_name(f".{PLAN}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(plan.as_json(), indent=1))
        os.replace(tmp, plan_file)
        return [k for k in plan.chunks if not self.path(k).exists()]

    def clear(self) -> None:
        """Forget every result of the folder (overwrite=true); Hydra's own .hydra/ stays."""
        shutil.rmtree(self.folder, ignore_errors=True)
        for name in (PLAN, "metrics.json", "results.csv", "lineage.jsonl", "samples.png", "config.yaml"):
            (self.out / name).unlink(missing_ok=True)

    def write(self, k: int, images: Tensor, positions: Tensor, records: list[dict], lineage: list[dict] | None,
              spending: dict, fingerprint_: str) -> None:
        meta = {"fingerprint": fingerprint_, "records": json.dumps(records), "spending": json.dumps(spending),
                "lineage": json.dumps(lineage)}
        _atomic_save({"images": images.cpu(), "positions": positions.cpu()}, meta, self.path(k))

    def metadata(self, k: int) -> dict:
        with safe_open(str(self.path(k)), framework="pt") as f:
            meta = f.metadata()
        return {"fingerprint": meta["fingerprint"], "records": json.loads(meta["records"]),
                "spending": json.loads(meta["spending"]), "lineage": json.loads(meta["lineage"])}

    def images(self, k: int) -> Tensor:
        with safe_open(str(self.path(k)), framework="pt") as f:
            return f.get_tensor("images")


class ImageSet:
    """The selected images of a job, read chunk by chunk from its chunk files (or held, for a tensor): what
    evaluation reads. Indexing walks forward through the chunks, keeping one in memory."""

    def __init__(self, store: ChunkStore | None, chunks: list[int], sizes: list[int], images: Tensor | None = None):
        self.store, self.chunks, self.sizes, self.held = store, chunks, sizes, images
        self.starts = [sum(sizes[:j]) for j in range(len(sizes))]
        self._cached: tuple[int, Tensor] | None = None

    @classmethod
    def of(cls, images: Tensor) -> "ImageSet":
        return cls(None, [0], [len(images)], images)

    def __len__(self) -> int:
        return sum(self.sizes)

    def chunk(self, j: int) -> Tensor:
        if self.held is not None:
            return self.held
        if self._cached is None or self._cached[0] != j:
            self._cached = (j, self.store.images(self.chunks[j]))
        return self._cached[1]

    def batches(self) -> Iterator[Tensor]:
        for j in range(len(self.chunks)):
            yield self.chunk(j)

    def locate(self, i: int) -> tuple[int, int]:
        """(chunk, offset in it) of image `i`."""
        j = bisect.bisect_right(self.starts, i) - 1
        return j, i - self.starts[j]

    def __getitem__(self, i: int) -> Tensor:
        j, offset = self.locate(i)
        return self.chunk(j)[offset]

    def first(self, n: int) -> Tensor:
        """The first `n` images (for the samples grid)."""
        out, have = [], 0
        for images in self.batches():
            out.append(images[: n - have])
            have += len(out[-1])
            if have >= n:
                break
        return torch.cat(out)


def as_image_set(images) -> ImageSet:
    return images if isinstance(images, ImageSet) else ImageSet.of(images)


def load_selected(out: Path) -> Tensor:
    """All selected images of a finished job folder, in condition order (the chunk files concatenated)."""
    store = ChunkStore(out)
    return torch.cat([store.images(k) for k in read_plan(out).chunks])


def read_plan(out: Path) -> Plan:
    """The plan a job folder's plan.json records."""
    saved = json.loads((Path(out) / PLAN).read_text())
    return Plan(saved["n_conditions_total"], saved["chunk_size"], parse_shard(saved["shard"]), saved["fingerprint"])
