"""NFE throughput of each search algorithm against plain batched sampling of the same model, with a profile.

    python experiments/bench_throughput.py [--per-class 100] [--budget 96] [--repeats 5] [--device cpu]

Every side runs the same model, solver, grid and batch size. Plain sampling draws all noise in one
`torch.randn` call and solves it in batches, nothing else; a search also draws its noises from
(seed, condition, index), scores candidates with the verifier, keeps the best and (paths, FK steering)
stops and renoises the sampler. Per algorithm: one warm-up run of each side, then `--repeats` pairs in alternating
order (plain first in even pairs, search first in odd ones); prints the median NFE/s of each side with its range
(min–max), the ratio of the medians (1.0 = the search loop costs nothing beyond its NFEs), the median and range of
the ratios of each back-to-back pair (less exposed to a shared machine's slow drifts), and where a search run's
wall time goes: the denoiser, noise generation, the verifier, decoding (none for the embedded model) and the rest
(the algorithm's own bookkeeping: selection, indexing, copies), as medians over the timed runs.

The ratio factors, up to the medians, into two numbers printed beside it. `loop_efficiency` is the share of a search
run's wall time spent in the denoiser over the same share of a plain run: what the loop around the denoiser costs,
1.0 when it costs nothing. Each share is measured within one run, so a shared machine's drifts, which speed up or
slow down the denoiser of both sides alike (±20 % from one run to the next on the shared 2-core machine of the
README's numbers), cancel out of it. `in_denoiser_ratio` is the denoiser's own NFE/s in the search over that in plain
sampling: 1.0 up to those drifts when the search's calls have plain sampling's shapes, lower when its calls are
smaller (or, on models small enough to live in the CPU's cache, when the verifier evicts them between calls).
"""

from __future__ import annotations

import argparse
import dataclasses
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


class Stopwatch:
    """Seconds spent in wrapped calls (synchronising a CUDA device around each, so the time is the work's)."""

    def __init__(self, device: str):
        self.seconds = 0.0
        self.cuda = device.startswith("cuda")

    def wrap(self, fn):
        def timed(*args, **kwargs):
            if self.cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            out = fn(*args, **kwargs)
            if self.cuda:
                torch.cuda.synchronize()
            self.seconds += time.perf_counter() - start
            return out
        return timed


def timed_task(task: SearchTask, noise: Stopwatch) -> SearchTask:
    """`task` with its noise draws timed by `noise`."""

    class TimedTask(SearchTask):
        def noise(self, rows, indices):
            return noise.wrap(super().noise)(rows, indices)

    return TimedTask(**{f.name: getattr(task, f.name) for f in dataclasses.fields(SearchTask)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--budget", type=int, default=96)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--max-batch-size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    # Gradient search also runs backward passes, which plain sampling has no counterpart of: its priced throughput
    # against random search is `experiments/backward_ratio.py --searches`.
    parser.add_argument("--searches", default=",".join(name for name in SEARCHES if name != "gradient"))
    parser.add_argument("--noise", default="counter", choices=("counter", "torch"), help="the candidate noise generator")
    parser.add_argument("--noise-ahead", choices=("auto", "on", "off"), default="auto",
                        help="draw the next batch's noises in a background thread (auto: off on the CPU, on elsewhere)")
    args = parser.parse_args()

    network = DigitsDenoiser(load_flow(device=args.device))
    in_denoiser = Stopwatch(args.device)
    counter = NFECounter(in_denoiser.wrap(network))
    denoiser = GuidedDenoiser(counter, 1.0, torch.tensor([NULL_CLASS]))
    sigmas = linear_sigmas(args.steps)
    labels = torch.arange(10).repeat(args.per_class)
    verifier = build_verifier("classifier_prob", device=args.device)
    base = SearchTask(denoiser=denoiser, solver=heun, sigmas=sigmas, cost_per_sample=solver_nfe("heun", sigmas),
                      conds=labels, condition_ids=torch.arange(len(labels)), noise_shape=(1, 8, 8), seed=0,
                      verifier=verifier, max_batch_size=args.max_batch_size, device=args.device,
                      noise_generator=args.noise, noise_ahead={"auto": None, "on": True, "off": False}[args.noise_ahead])
    in_noise, in_decode = Stopwatch(args.device), Stopwatch(args.device)
    task = timed_task(base, in_noise)
    task.decode = in_decode.wrap(task.decode)

    def plain(samples: int) -> None:
        flat = labels.repeat(-(-samples // len(labels)))[:samples].to(args.device)
        x = torch.randn(samples, 1, 8, 8, device=args.device)
        for part in batches(samples, args.max_batch_size):
            heun(denoiser, x[part], sigmas, flat[part])

    def timed(fn) -> dict:
        counter.count = 0
        for watch in (in_denoiser, in_noise, in_decode):
            watch.seconds = 0.0
        verifier_before = verifier.cost.seconds
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        wall = time.perf_counter() - start
        parts = {"denoiser": in_denoiser.seconds, "noise": in_noise.seconds,
                 "verifier": verifier.cost.seconds - verifier_before, "decode": in_decode.seconds}
        parts["rest"] = wall - sum(parts.values())
        return {"seconds": wall, "nfes": counter.count, "parts": parts}

    for name in args.searches.split(","):
        search = build_search(name)
        run_search = lambda: search(task, args.budget)  # noqa: E731
        nfes = timed(run_search)["nfes"]  # warm-up, and the NFEs a run spends
        samples = nfes // task.cost_per_sample
        run_plain = lambda: plain(samples)  # noqa: E731
        timed(run_plain)  # warm-up
        runs = {"search": [], "plain": []}
        for repeat in range(args.repeats):
            order = [("plain", run_plain), ("search", run_search)]
            for side, fn in order if repeat % 2 == 0 else order[::-1]:
                runs[side].append(timed(fn))
        rates = {side: [r["nfes"] / r["seconds"] for r in v] for side, v in runs.items()}
        median = {side: statistics.median(v) for side, v in rates.items()}
        pairs = [search / plain for search, plain in zip(rates["search"], rates["plain"])]  # back-to-back runs
        share = {part: statistics.median(r["parts"][part] / r["seconds"] for r in runs["search"])
                 for part in runs["search"][0]["parts"]}
        plain_share = statistics.median(r["parts"]["denoiser"] / r["seconds"] for r in runs["plain"])
        denoiser_rate = {side: statistics.median(r["nfes"] / r["parts"]["denoiser"] for r in v) for side, v in runs.items()}
        print(json.dumps({
            "device": args.device, "threads": torch.get_num_threads(), "conditions": len(labels),
            "budget": args.budget, "noise": args.noise, "noise_ahead": args.noise_ahead, "search": name, "nfes_per_run": nfes, "repeats": args.repeats,
            "plain_nfe_per_s": round(median["plain"]), "plain_range": [round(min(rates["plain"])), round(max(rates["plain"]))],
            "search_nfe_per_s": round(median["search"]),
            "search_range": [round(min(rates["search"])), round(max(rates["search"]))],
            "ratio_search_over_plain": round(median["search"] / median["plain"], 3),
            "pair_ratio_median": round(statistics.median(pairs), 3), "pair_ratio_range": [round(min(pairs), 3),
                                                                                         round(max(pairs), 3)],
            "search_seconds_share": {part: round(v, 3) for part, v in share.items()},
            # ratio ≈ loop_efficiency × in_denoiser_ratio (see the module docstring)
            "loop_efficiency": round(share["denoiser"] / plain_share, 3), "plain_denoiser_share": round(plain_share, 3),
            "in_denoiser_ratio": round(denoiser_rate["search"] / denoiser_rate["plain"], 3)}), flush=True)


if __name__ == "__main__":
    main()
