"""Never pay twice, measured: a 5-budget sweep of random (or zero-order) search with and without reuse.

    python experiments/bench_reuse.py [--search random] [--budgets 6,12,24,48,96] [--repeats 1]

Runs `inference-scaling -m budget.nfe=...` twice per repeat (reuse on, reuse=false; the order alternates), on the
embedded digits benchmark on CPU, and reports per sweep the search NFEs per condition computed, the search seconds
summed over jobs and the sweep's wall time, with the ratios; then checks the two sweeps chose the same candidates.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def sweep(folder: Path, budgets: str, search: str, reuse: bool) -> dict:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "inference_scaling", "-m", f"budget.nfe={budgets}", f"search={search}",
                    "logger=none", "progress=false", f"reuse={str(reuse).lower()}", f"hydra.sweep.dir={folder}"],
                   check=True, stdout=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"})
    wall = time.perf_counter() - start
    jobs = sorted(p.parent for p in folder.glob("*/metrics.json"))
    metrics = [json.loads((j / "metrics.json").read_text()) for j in jobs]
    return {"nfe_computed": sum(m["nfe_search_computed_per_condition"] for m in metrics),
            "nfe_selected": sum(m["nfe_search_per_condition"] for m in metrics),
            "largest": max(m["nfe_search_per_condition"] for m in metrics),
            "search_seconds": sum(m["search_seconds"] for m in metrics), "wall_seconds": wall,
            "choices": [(j / "results.csv").read_text() for j in jobs]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--search", default="random")
    parser.add_argument("--budgets", default="6,12,24,48,96")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    runs = {True: [], False: []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for reuse in ((True, False) if r % 2 == 0 else (False, True)):
                runs[reuse].append(sweep(Path(tmp) / f"{r}-{reuse}", args.budgets, args.search, reuse))
    same = all(a["choices"] == b["choices"] for a, b in zip(runs[True], runs[False]))
    med = {reuse: {k: statistics.median(run[k] for run in rs) for k in ("nfe_computed", "nfe_selected", "largest",
                                                                     "search_seconds", "wall_seconds")}
           for reuse, rs in runs.items()}
    print(f"search={args.search} budgets={args.budgets} repeats={args.repeats} (medians)")
    print("| sweep | search NFEs/condition computed | × largest budget | search s (sum) | wall s |\n|---|---|---|---|---|")
    for reuse, label in ((False, "separate jobs (reuse=false)"), (True, "reuse (default)")):
        m = med[reuse]
        print(f"| {label} | {m['nfe_computed']:g} | {m['nfe_computed'] / m['largest']:.2f} | "
              f"{m['search_seconds']:.2f} | {m['wall_seconds']:.1f} |")
    print(f"ratios reuse/separate: NFEs {med[True]['nfe_computed'] / med[False]['nfe_computed']:.3f}, search seconds "
          f"{med[True]['search_seconds'] / med[False]['search_seconds']:.3f}, wall {med[True]['wall_seconds'] / med[False]['wall_seconds']:.3f}")
    print("same choices in every job:", same)


if __name__ == "__main__":
    main()
