"""Weights & Biases logging: one group per study, one resumable run per job, one report run per study.

Offline by default (no account or network needed; `wandb sync` uploads later). The API key is read by wandb itself
from the environment (WANDB_API_KEY) and never passes through our configs; config values under a key that names a
key, token or secret are redacted before they reach W&B all the same.

A study's group is kept in `<folder>/.wandb_group` and a job's run id in `<job>/.wandb_run_id`, so a rerun or a
resumed job in the same folder logs to the same group and run, and a new folder starts a new study. Shell scripts
that put several sweeps into one study folder fix its group first:

    python -m inference_scaling.reporting.wandb_logger group OUT
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import string
from pathlib import Path

GROUP_FILE = ".wandb_group"
RUN_ID_FILE = ".wandb_run_id"
REPORT_ID_FILE = ".wandb_report_id"
GROUP_ANCESTORS = 3  # a study folder up to this many levels above a sweep folder lends it its group
SECRET_WORDS = ("key", "apikey", "token", "secret", "password")  # the last word of a secret's key
REDACTED = "<redacted>"


def _read_or_create(path: Path, value: str) -> str:
    """The text of `path`, first written as `value` if absent; of writers that race, the first one's value wins."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
        tmp.write_text(value)
        try:
            os.link(tmp, path)  # atomic, and refuses to replace another writer's file
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text().strip()


def _new_run_id() -> str:
    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(16))


def study_group(folder: Path) -> str:
    """The W&B group of the study in `folder`: the `.wandb_group` of the folder or of an ancestor up to
    GROUP_ANCESTORS levels up, else a new `<folder name>-<8 random hex>` kept in the folder."""
    folder = Path(folder).resolve()
    for candidate in (folder, *folder.parents[:GROUP_ANCESTORS]):
        if (candidate / GROUP_FILE).exists():
            return (candidate / GROUP_FILE).read_text().strip()
    return _read_or_create(folder / GROUP_FILE, f"{folder.name}-{secrets.token_hex(4)}")


def job_run_id(out: Path) -> str:
    """The stable W&B run id of the job folder `out` (16 lowercase letters and digits, kept in `.wandb_run_id`)."""
    return _read_or_create(Path(out) / RUN_ID_FILE, _new_run_id())


def redact(config):
    """`config` with every value under a key whose last word is key, token, secret or password (any case: `api_key`,
    `HF_TOKEN`, `client-secret`) replaced by REDACTED; `tokenizer` or `api_key_env` (the variable's name) stay."""
    if isinstance(config, dict):
        return {k: REDACTED if re.split(r"[_\-. ]", str(k).lower())[-1] in SECRET_WORDS else redact(v)
                for k, v in config.items()}
    if isinstance(config, list):
        return [redact(v) for v in config]
    return config


def _init(wandb_cfg, out: Path, run_id: str, group: str, name: str, job_type: str, config: dict | None = None):
    """A run in `out`/wandb with a fixed id, resumed if it exists (online; offline, `wandb sync` joins the parts)."""
    import wandb

    return wandb.init(
        project=wandb_cfg.project, entity=wandb_cfg.entity, group=wandb_cfg.group or group, name=name,
        job_type=job_type, mode=wandb_cfg.mode, dir=str(out), id=run_id, resume="allow",
        config=redact(config or {}), reinit="finish_previous", settings=wandb.Settings(console="off", silent=True),
    )


def start_job(wandb_cfg, config: dict, out: Path, group: str, job_name: str):
    """Start, or resume after a restart, the run of the job in `out`; metrics are logged against `nfe`."""
    run = _init(wandb_cfg, out, job_run_id(out), group, job_name, "job", config)
    run.define_metric("chunks_done")
    run.define_metric("progress", step_metric="chunks_done")
    run.define_metric("nfe")
    run.define_metric("*", step_metric="nfe")
    return run


def log_progress(run, chunks_done: int, n_chunks: int) -> None:
    """The job's chunks done so far, and that as a fraction of its chunks."""
    run.log({"chunks_done": chunks_done, "progress": chunks_done / n_chunks})


def finish_job(run, metrics: dict, out: Path) -> None:
    """Log the job's metrics (and samples.png if the job wrote it) and finish its run."""
    import wandb

    run.log(dict(metrics))
    samples = Path(out) / "samples.png"
    if samples.exists():
        run.log({"nfe": metrics["nfe"], "samples": wandb.Image(str(samples))})
    run.summary.update(metrics)
    run.finish()


def log_report(wandb_cfg, folder: Path, rows: list[dict], group: str, x: str = "nfe",
               fits: list[dict] | None = None) -> None:
    """The report of the study in `folder` as the group's run "report" (resumed by every report of the folder): the
    scaling table, one line plot per metric (x: NFEs or GFLOPs per sample, one series per line), scaling.png and
    the curves' fits (curves.fit_rows) as the table `scaling_fits`."""
    import wandb

    from inference_scaling.reporting.curves import COLUMNS, FIT_COLUMNS, METRICS_SHOWN, X_AXES, series

    folder = Path(folder)
    run = _init(wandb_cfg, folder, _read_or_create(folder / REPORT_ID_FILE, _new_run_id()), group, "report", "report")
    columns = [c for c in COLUMNS if any(c in r for r in rows)]
    logged = {"scaling_table": wandb.Table(columns=columns, data=[[r.get(c) for c in columns] for r in rows])}
    for key, title in METRICS_SHOWN:
        lines = series(rows, key, x)
        if lines:
            logged[f"scaling/{key}"] = wandb.plot.line_series(
                xs=[[px for px, _ in points] for points in lines.values()],
                ys=[[py for _, py in points] for points in lines.values()],
                keys=list(lines), title=title, xname=X_AXES[x][0])
    if fits:
        logged["scaling_fits"] = wandb.Table(columns=FIT_COLUMNS, data=[[f.get(c) for c in FIT_COLUMNS] for f in fits])
    if (folder / "scaling.png").exists():
        logged["scaling"] = wandb.Image(str(folder / "scaling.png"))
    run.log(logged)
    run.finish()


def log_table(wandb_cfg, folder: Path, metrics: list[str], rows: list[tuple[str, dict]], group: str) -> None:
    """The verifier × metric table of the study in `folder` (inference_scaling.reporting.table) as the group's run
    "report": the scores, the gains over no search and table.png."""
    import wandb

    from inference_scaling.reporting.table import gains

    folder = Path(folder)
    run = _init(wandb_cfg, folder, _read_or_create(folder / REPORT_ID_FILE, _new_run_id()), group, "report", "report")
    by_name = dict(gains(metrics, rows))
    columns = ["search verifier", *metrics, *(f"gain_{m}" for m in metrics)]
    data = [[name, *(scores.get(m) for m in metrics), *(by_name.get(name, {}).get(m) for m in metrics)]
            for name, scores in rows]
    logged = {"verifier_metric_table": wandb.Table(columns=columns, data=data)}
    if (folder / "table.png").exists():
        logged["verifier_metric_heatmap"] = wandb.Image(str(folder / "table.png"))
    run.log(logged)
    run.finish()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="W&B helpers for shell scripts.")
    commands = parser.add_subparsers(dest="command", required=True)
    group = commands.add_parser("group", help="print the W&B group of the study in FOLDER (fixing it on first use)")
    group.add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    print(study_group(args.folder))


if __name__ == "__main__":
    main()
