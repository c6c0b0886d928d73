"""Weights & Biases logging of one job: its config, metrics against NFEs, its image grid.

Offline by default (no account or network needed; `wandb sync` uploads later). The API key is read by
wandb itself from the environment (WANDB_API_KEY) and never passes through our configs.
"""

from __future__ import annotations

from pathlib import Path


def log_job(wandb_cfg, config: dict, metrics: dict, out: Path, group: str, job_name: str) -> None:
    import wandb

    run = wandb.init(
        project=wandb_cfg.project, entity=wandb_cfg.entity, group=wandb_cfg.group or group, name=job_name,
        mode=wandb_cfg.mode, dir=str(out), config=config, reinit="finish_previous",
        settings=wandb.Settings(console="off", silent=True),
    )
    run.define_metric("nfe")
    run.define_metric("*", step_metric="nfe")
    run.log({**{k: v for k, v in metrics.items()}})
    samples = out / "samples.png"
    if samples.exists():
        run.log({"nfe": metrics["nfe"], "samples": wandb.Image(str(samples))})
    run.summary.update(metrics)
    run.finish()
