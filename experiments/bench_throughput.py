"""NFE throughput of each search algorithm against plain batched sampling of the same model.

    python experiments/bench_throughput.py [--per-class 100] [--budget 96] [--repeats 5] [--device cpu]

Every side runs the same model, solver, grid and batch size. Plain sampling draws all noise in one
`torch.randn` call and solves it in batches, nothing else; a search also draws its noises from
(seed, condition, index), scores candidates with the verifier, keeps the best and (paths, FK steering)
stops and renoises the sampler. Prints, per algorithm, the median NFE/s over `--repeats` runs alternating with
plain sampling of as many NFEs, and the ratio (1.0 = the search loop costs nothing beyond its NFEs).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from inference_scaling.denoiser import GuidedDenoiser
from inference_scaling.models.digits import NULL_CLASS, DigitsDenoiser, load_flow
from inference_scaling.nfe import NFECounter
from inference_scaling.sampling import heun, linear_sigmas, solver_nfe
from inference_scaling.search import SEARCHES, SearchTask, build_search
from inference_scaling.search.base import batches
from inference_scaling.verifiers import build_verifier


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--budget", type=int, default=96)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--max-batch-size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--searches", default=",".join(SEARCHES))
    args = parser.parse_args()

    counter = NFECounter(DigitsDenoiser(load_flow(device=args.device)))
    denoiser = GuidedDenoiser(counter, 1.0, torch.tensor([NULL_CLASS]))
    sigmas = linear_sigmas(args.steps)
    labels = torch.arange(10).repeat(args.per_class)
    task = SearchTask(denoiser=denoiser, solver=heun, sigmas=sigmas, cost_per_sample=solver_nfe("heun", sigmas),
                      conds=labels, condition_ids=torch.arange(len(labels)), noise_shape=(1, 8, 8), seed=0,
                      verifier=build_verifier("classifier_prob", device=args.device),
                      max_batch_size=args.max_batch_size, device=args.device)

    def plain(samples: int) -> None:
        flat = labels.repeat(-(-samples // len(labels)))[:samples].to(args.device)
        x = torch.randn(samples, 1, 8, 8, device=args.device)
        for part in batches(samples, args.max_batch_size):
            heun(denoiser, x[part], sigmas, flat[part])

    def timed(fn) -> tuple[float, int]:
        counter.count = 0
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - start, counter.count

    rows = []
    for name in args.searches.split(","):
        search = build_search(name)
        _, nfes = timed(lambda: search(task, args.budget))  # warm-up, and the NFEs a run spends
        samples = nfes // task.cost_per_sample
        timed(lambda: plain(samples))
        rates = {"search": [], "plain": []}
        for _ in range(args.repeats):
            for side, fn in (("plain", lambda: plain(samples)), ("search", lambda: search(task, args.budget))):
                seconds, counted = timed(fn)
                rates[side].append(counted / seconds)
        median = {side: statistics.median(v) for side, v in rates.items()}
        rows.append({"search": name, "nfes_per_run": nfes, "plain_nfe_per_s": round(median["plain"]),
                     "search_nfe_per_s": round(median["search"]),
                     "ratio_search_over_plain": round(median["search"] / median["plain"], 3)})
        print(json.dumps({"device": args.device, "threads": torch.get_num_threads(), "conditions": len(labels),
                          "budget": args.budget, **rows[-1]}), flush=True)


if __name__ == "__main__":
    main()
