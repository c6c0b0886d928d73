"""The throughput benchmarks (`make bench`, `make bench-backends`) run, and the numbers they print are consistent: the
search/plain ratio is the loop's efficiency times the denoiser's own speed ratio, and the search's time splits into
its parts. Tiny sizes and one pair: these check the arithmetic, not the speed."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def bench(script: str, *args: str) -> list[dict]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(ROOT / "experiments" / script), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def check_search_row(row: dict, ratio: float) -> None:
    # With one pair every median is that pair's value, so the factorisation is exact up to the printed rounding.
    assert row["loop_efficiency"] * row["in_denoiser_ratio"] == pytest.approx(ratio, abs=0.006)
    assert 0.0 < row["loop_efficiency"] <= 1.2
    assert sum(row["search_seconds_share"].values()) == pytest.approx(1.0, abs=0.006)
    assert row["search_seconds_share"]["denoiser"] > 0.0 and row["search_seconds_share"]["noise"] > 0.0


def test_bench_throughput_prints_consistent_ratios_and_shares():
    rows = bench("bench_throughput.py", "--per-class", "2", "--repeats", "1", "--max-batch-size", "16",
                 "--searches", "random,paths")
    assert [row["search"] for row in rows] == ["random", "paths"]
    for row in rows:
        assert row["ratio_search_over_plain"] == pytest.approx(row["search_nfe_per_s"] / row["plain_nfe_per_s"],
                                                               abs=0.002)
        check_search_row(row, row["ratio_search_over_plain"])
        assert row["search_seconds_share"]["decode"] == 0.0  # the embedded model has no decoder


def test_bench_backends_reports_decode_and_verifier_apart():
    rows = bench("bench_backends.py", "--backends", "sit", "--repeats", "1", "--searches", "random,paths",
                 "--batch-sizes", "2", "--per-class", "2", "--candidates", "4")
    searches = [row for row in rows if "search" in row]
    assert [row["search"] for row in searches] == ["random", "paths"]
    assert any("decode_s_per_image" in row for row in rows) and any(row.get("batch") == 2 for row in rows)
    for row in searches:
        check_search_row(row, row["without_decode_verifier"]["ratio"])
        share = row["search_seconds_share"]
        assert share["decode"] > 0.0 and share["verifier"] > 0.0
        # Taking decode and verifier out leaves the search's NFE/s over the rest of its time.
        assert row["without_decode_verifier"]["ratio"] == pytest.approx(
            row["ratio_search_over_plain"] / (1.0 - share["decode"] - share["verifier"]), rel=0.03)
        assert row["rows_per_call"]["search"] <= 32 and row["rows_per_call"]["plain"] <= 32
