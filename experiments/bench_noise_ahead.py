"""Search wall time with the `torch` generator's noises drawn inline or ahead, behind a denoiser that runs off the host.

    python experiments/bench_noise_ahead.py [--device-wait 0.005] [--searches random,zero_order,...] [--repeats 5]

No GPU here, so the accelerator is a stand-in: each denoiser call waits `--device-wait` seconds with the GIL
released, as a host thread does while a GPU kernel runs, and returns a velocity that costs the host almost nothing
(the host is idle for that time, as beside a GPU); the verifier is the digits classifier on the host. `SearchTask.noise_ahead=True` draws the next batch's noises in a background thread meanwhile (what the
default does on a CUDA device); `False` draws each when it is asked for (the default on the CPU). Both runs select
the same candidates (checked). Prints one JSON line per search: median seconds of each mode over `--repeats` runs in
alternating order after a warm-up pair, their ranges, the speed-up and the seconds the search spent waiting for noise.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from bench_throughput import Stopwatch, timed_task

from inference_scaling.denoiser import GuidedDenoiser
from inference_scaling.models.digits import NULL_CLASS
from inference_scaling.nfe import NFECounter
from inference_scaling.sampling import heun, linear_sigmas, solver_nfe
from inference_scaling.search import SearchTask, build_search
from inference_scaling.verifiers import build_verifier


class OffHost:
    """A denoiser whose work is off the host: a wait per call (GIL released) stands in for the device's compute
    time, and the velocity is the closed form of a flow to the origin, v = x, which costs the host almost nothing."""

    def __init__(self, wait: float):
        self.wait = wait

    def __call__(self, x, sigma, cond):
        time.sleep(self.wait)
        return x.clone()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--budget", type=int, default=48)
    parser.add_argument("--max-batch-size", type=int, default=1024)
    parser.add_argument("--device-wait", type=float, default=0.005, help="seconds per denoiser call off the host")
    parser.add_argument("--searches", default="random,zero_order,paths,fk_steering,evolutionary,adaptive")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    denoiser = GuidedDenoiser(NFECounter(OffHost(args.device_wait)), 1.0, torch.tensor([NULL_CLASS]))
    sigmas = linear_sigmas(2)
    labels = torch.arange(10).repeat(args.per_class)
    verifier = build_verifier("classifier_prob")
    for name in args.searches.split(","):
        search = build_search(name)
        seconds, waits, chosen = {False: [], True: []}, {False: [], True: []}, {}
        for repeat in range(args.repeats + 1):  # the first pair warms up
            for ahead in (False, True) if repeat % 2 == 0 else (True, False):
                in_noise = Stopwatch("cpu")
                task = timed_task(SearchTask(denoiser=denoiser, solver=heun, sigmas=sigmas,
                                             cost_per_sample=solver_nfe("heun", sigmas), conds=labels,
                                             condition_ids=torch.arange(len(labels)), noise_shape=(1, 8, 8), seed=0,
                                             verifier=verifier, max_batch_size=args.max_batch_size,
                                             noise_generator="torch", noise_ahead=ahead), in_noise)
                start = time.perf_counter()
                result = search(task, args.budget)
                wall = time.perf_counter() - start
                if ahead in chosen:
                    assert torch.equal(chosen[ahead], result.chosen)
                chosen[ahead] = result.chosen
                if repeat:
                    seconds[ahead].append(wall)
                    waits[ahead].append(in_noise.seconds)
        assert torch.equal(chosen[False], chosen[True]), "drawing ahead changed the selection"
        inline, ahead = (statistics.median(seconds[mode]) for mode in (False, True))
        print(json.dumps({"search": name, "device_wait_s": args.device_wait, "conditions": len(labels),
                          "budget": args.budget, "inline_s": round(inline, 3), "ahead_s": round(ahead, 3),
                          "speedup": round(inline / ahead, 3),
                          "inline_range_s": [round(min(seconds[False]), 3), round(max(seconds[False]), 3)],
                          "ahead_range_s": [round(min(seconds[True]), 3), round(max(seconds[True]), 3)],
                          "noise_wait_inline_s": round(statistics.median(waits[False]), 3),
                          "noise_wait_ahead_s": round(statistics.median(waits[True]), 3)}), flush=True)


if __name__ == "__main__":
    main()
