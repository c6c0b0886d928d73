"""Search wall time with a verifier that waits on the network, scored inline or beside the denoiser.

    python experiments/bench_overlap.py [--latency 0.02,0.05] [--searches random,zero_order] [--repeats 3]

The verifier is the digits classifier behind a fixed wait per call (`--latency` seconds: an API round trip; the
wait releases the GIL as a socket read does). `remote=True` makes the searches score each batch in a worker thread
while the next batch is solved (search/base.py ScoringQueue); `remote=False` scores inline. Both runs select the same
candidates (checked). Prints one JSON line per (search, latency): median seconds of each mode over `--repeats` runs in
alternating order, the speed-up, and the denoiser's seconds and the total wait, whose maximum bounds what overlap can
reach (wall ≥ max(denoiser + the rest, wait)).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from bench_throughput import Stopwatch

from inference_scaling.denoiser import GuidedDenoiser
from inference_scaling.models.digits import NULL_CLASS, DigitsDenoiser, load_flow
from inference_scaling.nfe import NFECounter
from inference_scaling.sampling import heun, linear_sigmas, solver_nfe
from inference_scaling.search import SearchTask, build_search
from inference_scaling.verifiers import build_verifier


class Remote:
    """A verifier that waits `latency` seconds per call before scoring, like an API call."""

    name = "remote_classifier"

    def __init__(self, verifier, latency: float, remote: bool):
        self.verifier, self.latency, self.remote = verifier, latency, remote
        self.cost = verifier.cost
        self.calls = 0

    def __call__(self, images, cond):
        self.calls += 1
        time.sleep(self.latency)
        return self.verifier(images, cond)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--budget", type=int, default=48)
    parser.add_argument("--max-batch-size", type=int, default=250)
    parser.add_argument("--latency", default="0.02,0.05")
    parser.add_argument("--searches", default="random,zero_order")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    in_denoiser = Stopwatch("cpu")
    denoiser = GuidedDenoiser(NFECounter(in_denoiser.wrap(DigitsDenoiser(load_flow()))), 1.0, torch.tensor([NULL_CLASS]))
    sigmas = linear_sigmas(2)
    labels = torch.arange(10).repeat(args.per_class)
    classifier = build_verifier("classifier_prob")
    for name in args.searches.split(","):
        search = build_search(name)
        for latency in (float(v) for v in args.latency.split(",")):
            seconds = {False: [], True: []}
            chosen, denoised, calls = {}, [], 0
            for repeat in range(args.repeats + 1):  # the first pair warms up
                for remote in (False, True) if repeat % 2 == 0 else (True, False):
                    verifier = Remote(classifier, latency, remote)
                    task = SearchTask(denoiser=denoiser, solver=heun, sigmas=sigmas,
                                      cost_per_sample=solver_nfe("heun", sigmas), conds=labels,
                                      condition_ids=torch.arange(len(labels)), noise_shape=(1, 8, 8), seed=0,
                                      verifier=verifier, max_batch_size=args.max_batch_size)
                    in_denoiser.seconds = 0.0
                    start = time.perf_counter()
                    result = search(task, args.budget)
                    wall = time.perf_counter() - start
                    chosen[remote] = result.chosen
                    if repeat:
                        seconds[remote].append(wall)
                        if not remote:
                            denoised.append(in_denoiser.seconds)
                            calls = verifier.calls
            assert torch.equal(chosen[False], chosen[True]), "overlap changed the selection"
            inline, overlapped = (statistics.median(seconds[mode]) for mode in (False, True))
            print(json.dumps({"search": name, "latency_s": latency, "verifier_calls": calls,
                              "conditions": len(labels), "budget": args.budget,
                              "inline_s": round(inline, 3), "overlapped_s": round(overlapped, 3),
                              "speedup": round(inline / overlapped, 3),
                              "denoiser_s": round(statistics.median(denoised), 3),
                              "total_wait_s": round(calls * latency, 3),
                              "inline_range_s": [round(min(seconds[False]), 3), round(max(seconds[False]), 3)],
                              "overlapped_range_s": [round(min(seconds[True]), 3), round(max(seconds[True]), 3)]}),
                  flush=True)


if __name__ == "__main__":
    main()
