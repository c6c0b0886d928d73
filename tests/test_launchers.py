"""Hydra's joblib and submitit launchers run the project's sweeps unchanged: the same selections, images and
metrics as the basic launcher; the presets in conf/hydra/launcher compose; `model.device=cuda:auto` gives each job
its own GPU."""

import json

import pytest
import torch
from hydra import compose, initialize_config_dir
from test_bad_inputs import assert_one_job_error
from test_cli import cli

from inference_scaling.__main__ import CONF_DIR
from inference_scaling.config import ConfigError, job_device, validate
from inference_scaling.runner import REUSE_DEPENDENT
from inference_scaling.store import load_selected

SWEEP = ["-m", "budget.nfe=3,6,12", "benchmark.per_class=1", "logger=none", "progress=false"]
LAUNCHERS = {"basic": [], "joblib": ["hydra/launcher=gpus", "hydra.launcher.n_jobs=2"],
             "submitit": ["hydra/launcher=submitit_local"]}


def job_record(job) -> tuple:
    metrics = {k: v for k, v in json.loads((job / "metrics.json").read_text()).items()
               if "second" not in k and k not in REUSE_DEPENDENT}  # parallel jobs reuse each other's candidates
    return metrics, (job / "results.csv").read_text(), load_selected(job)


def one_thread_cli(*args: str, cwd):
    """The CLI with one intra-op thread everywhere: float sums then add in the same order in every process (loky
    would give its workers cores / n_jobs threads, and a different thread count rounds differently)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "WANDB_SILENT": "true", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "inference_scaling", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_a_budget_sweep_gives_the_same_results_under_every_launcher(tmp_path):
    """Byte for byte: the same choices (results.csv), the same images and the same metrics."""
    records = {}
    for name, launcher in LAUNCHERS.items():
        sweep = tmp_path / name
        proc = one_thread_cli(*SWEEP, *launcher, f"hydra.sweep.dir={sweep}", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        jobs = sorted(p.parent for p in sweep.rglob("metrics.json"))
        assert [j.name for j in jobs] == ["0_nfe3", "1_nfe6", "2_nfe12"]
        records[name] = [job_record(job) for job in jobs]
    for name in ("joblib", "submitit"):
        for (metrics, csv, images), (basic_metrics, basic_csv, basic_images) in zip(records[name], records["basic"]):
            assert csv == basic_csv and torch.equal(images, basic_images) and metrics == basic_metrics, name


def test_a_job_error_is_one_line_under_joblib(tmp_path):
    proc = cli("-m", *LAUNCHERS["joblib"], "model=glob(sc*)", "benchmark.per_class=1", "logger=none",
               "progress=false", f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path)
    assert proc.returncode == 1
    assert_one_job_error(proc.stderr.splitlines(), "error: model=scenes takes scenes conditions but benchmark=digits "
                                                   "gives digits conditions; models for it: digits")


def test_the_presets_compose_with_their_settings():
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        slurm = compose("config", overrides=["hydra/launcher=slurm"], return_hydra_config=True).hydra.launcher
        gpus = compose("config", overrides=["hydra/launcher=gpus"], return_hydra_config=True).hydra.launcher
    assert slurm._target_.endswith("SlurmLauncher") and slurm.gpus_per_node == 1 and slurm.tasks_per_node == 1
    assert slurm.max_num_timeout == 3 and slurm.array_parallelism == 64 and slurm.timeout_min == 240
    assert gpus._target_.endswith("JoblibLauncher") and gpus.n_jobs == 2 and gpus.backend == "loky"


def test_cuda_auto_gives_job_n_gpu_n_mod_the_count(config):
    assert [job_device("cuda:auto", n, 4) for n in range(6)] == ["cuda:0", "cuda:1", "cuda:2", "cuda:3", "cuda:0",
                                                                 "cuda:1"]
    assert job_device("cpu", 3, 4) == "cpu" and job_device("cuda:1", 3, 4) == "cuda:1"
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="^model.device=cuda:auto but this machine has no CUDA device"):
            validate(config("model.device=cuda:auto"))
