"""NFE throughput of random search against plain batched sampling of the same number of samples.

    python experiments/bench_throughput.py [--per-class 100] [--budget 48] [--repeats 5] [--device cpu]

Both sides run the same model, solver, grid and batch size; plain sampling draws all noise in one
`torch.randn` call and does nothing between batches, the search also draws per-candidate noise from
(seed, condition, index), scores every candidate with the verifier and keeps the best. Prints the median of
`--repeats` alternating runs of each and their ratio (search / plain; 1.0 means the search loop costs nothing).
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
from inference_scaling.search import RandomSearch, SearchTask
from inference_scaling.search.base import batches
from inference_scaling.verifiers import build_verifier


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--budget", type=int, default=48)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--max-batch-size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    counter = NFECounter(DigitsDenoiser(load_flow(device=args.device)))
    denoiser = GuidedDenoiser(counter, 1.0, torch.tensor([NULL_CLASS]))
    sigmas = linear_sigmas(args.steps)
    labels = torch.arange(10).repeat(args.per_class)
    task = SearchTask(denoiser=denoiser, solver=heun, sigmas=sigmas, cost_per_sample=solver_nfe("heun", sigmas),
                      conds=labels, condition_ids=torch.arange(len(labels)), noise_shape=(1, 8, 8), seed=0,
                      verifier=build_verifier("classifier_prob", device=args.device),
                      max_batch_size=args.max_batch_size, device=args.device)
    n = args.budget // task.cost_per_sample
    flat_labels = labels.repeat_interleave(n).to(args.device)

    def search() -> None:
        RandomSearch()(task, args.budget)

    def plain() -> None:
        x = torch.randn(len(flat_labels), 1, 8, 8, device=args.device)
        for part in batches(len(flat_labels), args.max_batch_size):
            heun(denoiser, x[part], sigmas, flat_labels[part])

    def timed(fn) -> tuple[float, int]:
        counter.count = 0
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - start, counter.count

    timed(plain), timed(search)  # warm-up
    runs = {"search": [], "plain": []}
    for _ in range(args.repeats):
        for name, fn in (("plain", plain), ("search", search)):
            seconds, nfes = timed(fn)
            runs[name].append(nfes / seconds)
    medians = {name: statistics.median(v) for name, v in runs.items()}
    print(json.dumps({
        "device": args.device, "threads": torch.get_num_threads(), "conditions": len(labels), "candidates": n,
        "nfes_per_run": len(flat_labels) * task.cost_per_sample,
        "plain_nfe_per_s": round(medians["plain"]), "search_nfe_per_s": round(medians["search"]),
        "ratio_search_over_plain": round(medians["search"] / medians["plain"], 3),
    }))


if __name__ == "__main__":
    main()
