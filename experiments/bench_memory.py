"""Peak resident memory of one job against its number of conditions (the embedded digits model, on CPU).

    python experiments/bench_memory.py [--conditions 1000 10000 50000] [--chunk-size 1024] [--python PY]

Each job runs in a fresh process (`python -m inference_scaling`, random search at budget.nfe, logger off, no image
grid) and its peak RSS is read from the kernel (`getrusage(RUSAGE_CHILDREN)` of a wrapper process that runs only
that job). `--python` runs another checkout's interpreter (for example an older commit on PYTHONPATH) to compare.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WRAPPER = ("import resource, subprocess, sys; rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode; "
           "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(rc)")


def peak_rss_mb(python: str, overrides: list[str], cwd: Path) -> tuple[float, float]:
    """(peak RSS in MiB, wall seconds) of one job."""
    start = time.perf_counter()
    proc = subprocess.run([python, "-c", WRAPPER, python, "-m", "inference_scaling", *overrides], cwd=cwd,
                          capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if proc.returncode:
        raise RuntimeError(f"job failed: {proc.stderr.strip().splitlines()[-1:]}")
    return int(proc.stdout.split()[-1]) / 1024, time.perf_counter() - start  # Linux reports KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conditions", type=int, nargs="+", default=[1000, 10000, 50000])
    parser.add_argument("--chunk-size", type=int, default=1024)
    parser.add_argument("--nfe", type=int, default=6)
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--extra", nargs="*", default=[], help="more overrides for every job")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.conditions:
            overrides = ["logger=none", "progress=false", "save_images=false", f"benchmark.per_class={n // 10}",
                         f"budget.nfe={args.nfe}", f"hydra.run.dir={tmp}/job-{n}", *args.extra]
            if args.chunk_size:
                overrides.append(f"benchmark.chunk_size={args.chunk_size}")
            rss, seconds = peak_rss_mb(args.python, overrides, Path(tmp))
            rows.append({"conditions": n, "peak_rss_mib": round(rss, 1), "seconds": round(seconds, 1)})
            print(json.dumps(rows[-1]), flush=True)
    print("| conditions | peak RSS (MiB) | wall (s) |\n|---|---|---|")
    for r in rows:
        print(f"| {r['conditions']:,} | {r['peak_rss_mib']} | {r['seconds']} |")


if __name__ == "__main__":
    main()
