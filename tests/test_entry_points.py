"""The installed entry points: the console script from any folder (editable install), and a regular wheel install,
whose configs must come from the package itself."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = Path(sys.executable).with_name("inference-scaling")
QUICK = ["budget.nfe=3", "benchmark.per_class=1", "logger=none", "progress=false"]


def run(command: list[str], cwd: Path, **env) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "WANDB_SILENT": "true", "OMP_NUM_THREADS": "1", **env})


def test_console_script_runs_from_any_folder_and_help_lists_only_real_options(tmp_path):
    proc = run([str(SCRIPT), *QUICK, f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["n_conditions"] == 10
    help_text = run([str(SCRIPT), "--help"], cwd=tmp_path).stdout
    assert "model: digits, dit_xl2" in help_text and "base_" not in help_text
    completion = run([str(SCRIPT), "-sc", "query=bash", "model="], cwd=tmp_path, COMP_LINE="inference-scaling model=",
                     COMP_POINT="24")
    assert completion.returncode == 0 and "model=digits" in completion.stdout and "base_" not in completion.stdout


def test_a_wheel_install_ships_its_configs_and_runs(tmp_path):
    wheel_dir, site, source = tmp_path / "wheel", tmp_path / "site", tmp_path / "source"
    # Built from a copy, so the build leaves nothing in the work tree.
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".venv", ".git", "outputs", "build", "*.egg-info",
                                                                "__pycache__", "wandb"))
    built = run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(source), "-w",
                 str(wheel_dir)], cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    wheel = next(wheel_dir.glob("*.whl"))
    installed = run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
                    cwd=tmp_path)
    assert installed.returncode == 0, installed.stderr
    assert (site / "inference_scaling" / "conf" / "model" / "sit_xl2.yaml").is_file()
    where = run([sys.executable, "-c", "import inference_scaling.__main__ as m; print(m.CONF_DIR)"], cwd=tmp_path,
                PYTHONPATH=str(site))
    assert where.stdout.strip() == str(site / "inference_scaling" / "conf"), where.stderr
    proc = run([sys.executable, "-m", "inference_scaling", *QUICK, f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path,
               PYTHONPATH=str(site))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "run" / "metrics.json").is_file()
