"""What a decode between denoiser calls costs the denoiser itself on the tiny SiT: the seconds spent inside the
denoiser by plain batched sampling, alone and with a VAE decode of each batch after its solve (untimed), in pairs of
alternating order; and how the plain runs' wall time and CPU time move together on this machine.

    python experiments/denoiser_cache.py [--repeats 15]

The denoiser's weights of a model this small fit in the CPU's cache, and the VAE's evict them; a network larger
than any cache does not pay that. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))
sys.path.insert(0, str(ROOT / "tests"))  # the tiny builders the tests use

from bench_backends import tiny_folders  # noqa: E402
from bench_throughput import Stopwatch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from inference_scaling.benchmarks import BENCHMARKS  # noqa: E402
from inference_scaling.config import register, search_sigmas  # noqa: E402
from inference_scaling.models import load_model  # noqa: E402
from inference_scaling.sampling import get_solver  # noqa: E402
from inference_scaling.search.base import batches  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--samples", type=int, default=512)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(1)
    register()
    with tempfile.TemporaryDirectory() as tmp, initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        overrides = [*tiny_folders(Path(tmp))["sit"], "model.device=cpu", "model.search_steps=4",
                     "benchmark.per_class=8", "logger=none", "progress=false"]
        cfg = OmegaConf.to_object(compose(config_name="config", overrides=overrides))
        model = load_model(cfg.model)
        rows = model.encode(BENCHMARKS[cfg.benchmark.name](cfg.benchmark).conditions())
        model.free_encoders()
        in_denoiser = Stopwatch("cpu")
        denoiser = model.guided(in_denoiser.wrap(model), cfg.model.guidance)
        solver, sigmas = get_solver(cfg.model.solver), search_sigmas(cfg.model)
        flat = torch.arange(args.samples) % len(rows)

        def run(decode: bool) -> tuple[float, float, float]:
            """(seconds in the denoiser, wall seconds, CPU seconds) of one plain run."""
            in_denoiser.seconds = 0.0
            wall, cpu = time.perf_counter(), time.process_time()
            x = torch.randn(args.samples, *model.noise_shape)
            for part in batches(args.samples, args.batch):
                y = solver(denoiser, x[part], sigmas, rows[flat[part]])
                if decode:
                    model.decode(y)
            return in_denoiser.seconds, time.perf_counter() - wall, time.process_time() - cpu

        run(False), run(True)  # warm-up
        runs = {False: [], True: []}
        for repeat in range(args.repeats):
            for decode in (False, True) if repeat % 2 == 0 else (True, False):
                runs[decode].append(run(decode))
        alone, between = ([r[0] for r in runs[d]] for d in (False, True))
        pairs = [b / a for a, b in zip(alone, between)]
        walls, cpus = [r[1] for r in runs[False]], [r[2] for r in runs[False]]
        print(json.dumps({
            "denoiser_s_alone": round(statistics.median(alone), 4),
            "denoiser_s_with_decode_between": round(statistics.median(between), 4),
            "slowdown": round(statistics.median(between) / statistics.median(alone), 3),
            "pair_median": round(statistics.median(pairs), 3), "pair_range": [round(min(pairs), 3), round(max(pairs), 3)],
            "plain_wall_s_range": [round(min(walls), 3), round(max(walls), 3)],
            "plain_cpu_over_wall": round(statistics.median(c / w for c, w in zip(cpus, walls)), 3)}))


if __name__ == "__main__":
    main()
