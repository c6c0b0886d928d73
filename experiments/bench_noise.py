"""Seconds to draw candidate noises with each generator, per shape (`noise=torch` against `noise=counter`).

    python experiments/bench_noise.py [--device cpu] [--repeats 5]

Per (shape, candidates): one warm-up call of each generator, then `--repeats` calls of each in alternating order;
prints the median seconds of each (with the range), microseconds per candidate and their ratio, one JSON line per
shape. Shapes: the digits (1×8×8) and scenes (1×16×16) models, a SiT/DiT latent at 256 px (4×32×32) and a FLUX
latent at 1024 px (16×128×128). Run it with OMP_NUM_THREADS=1 to compare generators at equal cores (the torch
generator is one host thread by construction).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from inference_scaling.noise import candidate_noise

SHAPES = [((1, 8, 8), 32_000), ((1, 16, 16), 8_000), ((4, 32, 32), 2_000), ((16, 128, 128), 64)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    def timed(generator: str, shape: tuple[int, ...], n: int) -> float:
        conditions, indices = torch.arange(n) % 1000, torch.arange(n) // 1000
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        candidate_noise(0, conditions, indices, shape, generator, args.device)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - start

    for shape, n in SHAPES:
        seconds = {"torch": [], "counter": []}
        for repeat in range(args.repeats + 1):  # the first round warms up
            for generator in ("torch", "counter") if repeat % 2 == 0 else ("counter", "torch"):
                elapsed = timed(generator, shape, n)
                if repeat:
                    seconds[generator].append(elapsed)
        median = {g: statistics.median(v) for g, v in seconds.items()}
        print(json.dumps({"device": args.device, "threads": torch.get_num_threads(), "shape": list(shape),
                          "candidates": n, **{f"{g}_s": round(median[g], 4) for g in median},
                          **{f"{g}_range_s": [round(min(v), 4), round(max(v), 4)] for g, v in seconds.items()},
                          **{f"{g}_us_per_candidate": round(median[g] / n * 1e6, 2) for g in median},
                          "counter_over_torch": round(median["counter"] / median["torch"], 3)}), flush=True)


if __name__ == "__main__":
    main()
