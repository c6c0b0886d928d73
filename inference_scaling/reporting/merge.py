"""Evaluate the shards of a job as one job: `inference-scaling-merge SHARD_JOB... --out FOLDER`.

Shard i/n of a job ran the chunks k with k mod n = i, each exactly as the whole job runs it (`inference_scaling.store`),
so the union of the shards' chunk files is the whole job's. The merge checks that the shards belong together (the
same config fingerprint, every shard 0..n−1 once, every chunk written), links their chunk files into FOLDER and
evaluates them as one job there (FID over the union, every metric and total as the unsharded job writes them).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

from omegaconf import OmegaConf

from inference_scaling.store import PLAN, ChunkStore, StoreError, fingerprint, make_plan, read_plan


def _link(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:  # another file system
        shutil.copy2(source, target)


def _job_config(job: Path):
    """The typed config a job ran with, composed again from its Hydra overrides (less the shard)."""
    from hydra import compose, initialize_config_dir

    from inference_scaling.__main__ import CONF_DIR, typed_config

    overrides = [o for o in OmegaConf.load(job / ".hydra" / "overrides.yaml")
                 if o.lstrip("+~").split("=", 1)[0] != "benchmark.shard"]
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    return cfg, typed_config(cfg), overrides


def merge(shards: list[Path], out: Path) -> dict:
    """Merge finished shard jobs into the job folder `out` (new or empty); returns the merged results."""
    from inference_scaling.benchmarks import BENCHMARKS
    from inference_scaling.reporting.records import write_job
    from inference_scaling.runner import finish

    plans = {}
    for job in shards:
        if not (job / PLAN).is_file():
            raise StoreError(f"{job} is not a job folder (no {PLAN})")
        plans[job] = read_plan(job)
    first = plans[shards[0]]
    counts = sorted({p.shard[1] for p in plans.values()})
    if len(counts) != 1:
        raise StoreError(f"the shards split the job in different ways ({', '.join(map(str, counts))} shards)")
    n = counts[0]
    taken = sorted(p.shard[0] for p in plans.values())
    if taken != list(range(n)):
        missing = sorted(set(range(n)) - set(taken))
        twice = sorted({i for i in taken if taken.count(i) > 1})
        raise StoreError(f"need shards 0/{n} .. {n - 1}/{n} once each; missing: {missing or 'none'}, "
                         f"given twice: {twice or 'none'}")
    for job, plan in plans.items():
        if (plan.fingerprint, plan.n_total, plan.chunk_size) != (first.fingerprint, first.n_total, first.chunk_size):
            raise StoreError(f"{job} ran another config than {shards[0]} (fingerprint {plan.fingerprint} vs "
                             f"{first.fingerprint}); merge shards of one job")
        absent = [k for k in plan.chunks if not ChunkStore(job).path(k).exists()]
        if absent:
            raise StoreError(f"{job} is unfinished: chunks {absent[:5]} are not written; rerun its command to finish it")
    if out.exists() and any(out.iterdir()):
        raise StoreError(f"--out {out} is not empty; give a new folder")
    config, typed, overrides = _job_config(shards[0])
    if fingerprint(typed) != first.fingerprint:
        raise StoreError(f"{shards[0]}'s overrides no longer compose to the config it ran (fingerprint "
                         f"{fingerprint(typed)} vs {first.fingerprint}): were the configs in conf/ changed?")
    merged = make_plan(first.n_total, first.chunk_size, "", first.fingerprint)
    store = ChunkStore(out)
    store.open(merged)
    for job, plan in plans.items():
        for k in plan.chunks:
            _link(ChunkStore(job).path(k), store.path(k))
    conditions = BENCHMARKS[typed.benchmark.name](typed.benchmark).conditions()
    result = finish(typed, conditions, merged, store)
    result["metrics"]["merged_shards"] = n
    (out / ".hydra").mkdir(exist_ok=True)
    OmegaConf.save(OmegaConf.create(overrides), out / ".hydra" / "overrides.yaml")
    write_job(out, OmegaConf.to_yaml(config, resolve=True), result, typed.save_images)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Evaluate the shard jobs of one job (benchmark.shard=i/n) as one job.")
    parser.add_argument("shards", nargs="+", type=Path, help="the shard job folders, every shard 0/n .. n-1/n once")
    parser.add_argument("--out", type=Path, required=True, help="the merged job's folder (new or empty)")
    args = parser.parse_args(argv)
    try:
        result = merge(args.shards, args.out)
    except StoreError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    metrics = result["metrics"]
    print(json.dumps({k: metrics[k] for k in ("n_conditions", "merged_shards", "nfe") if k in metrics}),
          f"-> {args.out}")


if __name__ == "__main__":
    main()
