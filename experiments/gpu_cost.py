"""Full-scale GPU cost of every figure command (inference_scaling.figures), from FLOPs and a stated throughput.

    python experiments/gpu_cost.py [--tflops 400]

For each line of each figure, every job of its sweep (the experiment config's `hydra.sweeper.params`) is composed as
the multirun would compose it; a job costs conditions × (search NFEs + final NFEs) × GFLOPs per NFE of its model at
full size (experiments/model_flops.py, counted on the meta device). The final render costs NFEs only where its
sampler differs from the search's (otherwise the chosen candidate is the image). Reuse of candidates across a sweep's
budgets (random search) is not subtracted, nor the verifiers' and the VAE's compute. GPU-hours assume a sustained
`--tflops` (default 400 TFLOP/s: an H100 SXM's 989 TFLOP/s dense bf16 peak at about 40 % utilisation), so they are
an estimate to plan with, not a measurement.
"""

from __future__ import annotations

import argparse
import itertools

import hydra
from hydra import initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from model_flops import full_size_gflops
from omegaconf import OmegaConf

from inference_scaling.__main__ import CONF_DIR
from inference_scaling.benchmarks import BENCHMARKS
from inference_scaling.config import final_sigmas, register, search_cost
from inference_scaling.figures import FIGURES
from inference_scaling.models import model_class
from inference_scaling.sampling import solver_nfe


def sweep_jobs(line: str) -> list:
    """The typed config of every job of the line's multirun."""
    parser = OverridesParser.create()
    base = [f"+experiment={line}"]
    cfg = hydra.compose(config_name="config", overrides=base, return_hydra_config=True)
    params = OmegaConf.select(cfg, "hydra.sweeper.params") or {}
    values = [[f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()] if o.is_sweep_override()
              else [o.input_line] for o in parser.parse_overrides([f"{k}={v}" for k, v in params.items()])]
    return [OmegaConf.to_object(hydra.compose(config_name="config", overrides=[*base, *combo]))
            for combo in itertools.product(*values)]


def job_nfes(cfg) -> tuple[int, int]:
    """(conditions, NFEs per condition) of one job."""
    conditions = len(BENCHMARKS[cfg.benchmark.name](cfg.benchmark).conditions().ids)
    final = 0
    if cfg.model.final_steps != cfg.model.search_steps:
        final = solver_nfe(cfg.model.solver, final_sigmas(cfg.model)) * model_class(cfg.model.name).evals_per_call(cfg.model)
    assert cfg.budget.nfe >= search_cost(cfg.model)
    return conditions, cfg.budget.nfe + final


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tflops", type=float, default=400.0, help="sustained TFLOP/s of one GPU")
    args = parser.parse_args()
    register()
    gflops = {name: row["gflops_per_nfe"] for name, row in full_size_gflops().items()}
    print("| figure | line | jobs | images | NFEs (millions) | EFLOPs | GPU-hours |")
    print("|---|---|---|---|---|---|---|")
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        for name, figure in FIGURES.items():
            total_hours = 0.0
            for line in figure.lines:
                jobs = sweep_jobs(line)
                costs = [(job_nfes(cfg), gflops[cfg.model.name]) for cfg in jobs]
                nfes = sum(c * n for (c, n), _ in costs)
                flops = sum(c * n * g * 1e9 for (c, n), g in costs)
                hours = flops / (args.tflops * 1e12) / 3600
                total_hours += hours
                print(f"| {name} | {line} | {len(jobs)} | {sum(c for (c, _), _ in costs):,} | {nfes / 1e6:,.1f} | "
                      f"{flops / 1e18:,.1f} | {hours:,.0f} |")
            print(f"| **{name}** | all lines | | | | | **{total_hours:,.0f}** |")
    print("\nGFLOPs per NFE (full size): " + ", ".join(f"{k} {v:,.1f}" for k, v in gflops.items()))


if __name__ == "__main__":
    main()
