"""`python -m inference_scaling` / `inference-scaling`: the Hydra app.

Hydra does Hydra's work (composition, every sweep syntax, sweeper and launcher plugins, `-cd`, search paths, `+`,
`++`, `~`, `--cfg`, completion). Validation runs on composed configs: up front, before any folder exists, for every
combination of the command line that can be enumerated (plain values, choice and range sweeps, at most
MAX_CHECKED_COMBINATIONS), and again inside each job before any model loads, which covers what cannot be enumerated
(glob over options, a sweeper's interval). A refusal of the command line is one line `error: ...` and exit code 2;
an error inside a job is one line under every launcher (a `JobError`, which Hydra prints as it is) and exit code
1; HYDRA_FULL_ERROR=1 shows the full traceback instead.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import sys
import tempfile
from importlib import resources
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import CompactHydraException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from inference_scaling.config import AUTO_CUDA, Config, ConfigError, job_device, register, validate
from inference_scaling.nfe import BudgetError, NonFiniteError
from inference_scaling.store import StoreError
from inference_scaling.weights import WeightsError

CONF_DIR = str(resources.files("inference_scaling.conf"))  # conf/, shipped in the package as inference_scaling.conf
MAX_CHECKED_COMBINATIONS = 512
SUMMARY = ("accuracy", "count_accuracy", "relation_accuracy", "is", "fid", "kid")
REFUSALS = (ConfigError, BudgetError, WeightsError, NonFiniteError, StoreError)  # named in one line, exit code 2

register()


class UsageError(ValueError):
    """A command line that does not compose."""


def full_error() -> bool:
    return os.environ.get("HYDRA_FULL_ERROR") == "1"


def first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _enumerable(override) -> bool:
    """Plain values and the sweeps whose values the command line itself lists (choice, range)."""
    from hydra.core.override_parser.types import ChoiceSweep, RangeSweep

    return not override.is_sweep_override() or isinstance(override.value(), (ChoiceSweep, RangeSweep))


def _choices(override) -> list[str]:
    """The single-valued overrides an enumerable override stands for (the key keeps its +, ++ or ~ prefix)."""
    if override.is_delete() or not override.is_sweep_override():
        return [override.input_line]
    return [f"{override.get_key_element()}={v}" for v in override.sweep_string_iterator()]


def _group_options(group: str) -> list[str]:
    from hydra.core.global_hydra import GlobalHydra

    return sorted(GlobalHydra.instance().config_loader().get_group_options(group))


def _explain(err: Exception, overrides: list[str], config_name: str = "config") -> str:
    """One line naming the bad value and what is accepted, from Hydra's or OmegaConf's error."""
    from hydra.errors import MissingConfigException
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError

    if isinstance(err, MissingConfigException) and err.missing_cfg_file:
        group, _, value = err.missing_cfg_file.rpartition("/")
        if group:
            return f"unknown {group} {value!r}; choose one of: {', '.join(_group_options(group))}"
    cause = err.__cause__ or err
    full_key = getattr(cause, "full_key", None) or ""
    if isinstance(cause, (ConfigKeyError, ConfigAttributeError)) and full_key:
        parent = full_key.rpartition(".")[0]
        selected = [o for o in overrides if not o.lstrip("+~").startswith(full_key)]  # the options actually chosen
        base = _compose(selected, config_name)
        node = OmegaConf.select(base, parent) if parent else base
        accepted = ", ".join(node.keys()) if OmegaConf.is_dict(node) else "none"
        return f"unknown config key {full_key!r}; accepted keys{' in ' + parent if parent else ''}: {accepted}"
    keys = {o: o.lstrip("+~").split("=")[0] for o in overrides}
    culprits = ([o for o, k in keys.items() if k == full_key] or
                [o for o, k in keys.items() if k and f"'{k.rpartition('.')[2]}'" in str(cause)] or overrides)
    return f"bad override {culprits[-1]}: {first_line(cause)}"


def _compose(overrides: list[str], config_name: str = "config") -> DictConfig:
    return hydra.compose(config_name=config_name, overrides=overrides)


def check_keys(cfg: DictConfig) -> None:
    """Refuse keys that the selected option's typed config does not have (`+model.typo=3` adds one beside the real
    keys, and the typed config would drop it silently)."""
    for group, node in cfg.items():
        if not OmegaConf.is_dict(node):
            continue
        schema = OmegaConf.get_type(node)
        if not dataclasses.is_dataclass(schema):
            continue
        known = [f.name for f in dataclasses.fields(schema)]
        extra = [k for k in node.keys() if k not in known]
        if extra:
            raise ConfigError(f"unknown config key '{group}.{extra[0]}'; accepted keys in {group}: {', '.join(known)}")


def typed_config(cfg: DictConfig) -> Config:
    """The composed config as typed objects, after the key check (schema errors become one-line refusals)."""
    from omegaconf.errors import OmegaConfBaseException

    check_keys(cfg)
    try:
        return OmegaConf.to_object(cfg)
    except OmegaConfBaseException as err:
        raise ConfigError(f"{getattr(err, 'full_key', '') or 'config'}: {first_line(err)}") from None


def precheck(overrides: list[str], config_dir: str = CONF_DIR, config_name: str = "config",
             multirun: bool = False) -> int:
    """Compose and validate every combination of the command line's enumerable overrides; returns how many were
    checked. Other `hydra.*` overrides are Hydra's own (`hydra.searchpath` joins the composition); a sweep that
    cannot be enumerated is checked inside its jobs. With `multirun`, the sweep a config fixes in
    `hydra.sweeper.params` (an experiment's, `+experiment=...`) is enumerated too, before the command line's
    overrides, which replace a key it also sets (as Hydra's basic sweeper does)."""
    from hydra import initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser

    def ours(override) -> bool:
        key = override.get_key_element().lstrip("+~")
        return not key.startswith("hydra") or key == "hydra.searchpath"

    parser = OverridesParser.create()
    parsed = [o for o in parser.parse_overrides(overrides) if ours(o)]
    choices = [_choices(o) if _enumerable(o) else [None] for o in parsed]
    with initialize_config_dir(config_dir=config_dir, version_base="1.3"):
        if multirun and None not in (first := [c[0] for c in choices]):
            try:
                params = OmegaConf.select(hydra.compose(config_name=config_name, overrides=first,
                                                        return_hydra_config=True), "hydra.sweeper.params") or {}
            except Exception as err:
                raise UsageError(_explain(err, first, config_name)) from None
            given = {o.get_key_element().lstrip("+~") for o in parsed}
            swept = [o for o in parser.parse_overrides([f"{k}={v}" for k, v in params.items()])
                     if o.get_key_element() not in given]
            choices = [_choices(o) if _enumerable(o) else [None] for o in swept] + choices
        checked = 0
        for combination in itertools.islice(itertools.product(*choices), MAX_CHECKED_COMBINATIONS):
            if None in combination:  # a glob or interval sweep: its jobs are validated as they start
                continue
            combination = list(combination)
            try:
                cfg = _compose(combination, config_name)
            except Exception as err:  # Hydra wraps OmegaConf's errors; explain whichever came
                raise UsageError(_explain(err, combination, config_name)) from None
            validate(typed_config(cfg))
            checked += 1
    return checked


def check_output_dir(overrides: list[str], multirun: bool) -> None:
    """The job folder can be made: the nearest existing ancestor of `hydra.run.dir` (`hydra.sweep.dir` with -m),
    or of outputs/ in the working folder, is a writable folder and the path itself is not a file."""
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    given = [o.split("=", 1)[1] for o in overrides if o.lstrip("+").split("=", 1)[0] == key]
    target = Path(given[-1] if given else "outputs").expanduser()
    if "${" in str(target):
        target = Path(str(target).split("${", 1)[0] or ".")  # a folder named by the time: check its parent
    target = target.absolute()
    if target.exists() and not target.is_dir():
        raise ConfigError(f"{key}={target} is a file, not a folder; give a folder to write the job into")
    ancestor = next(p for p in (target, *target.parents) if p.exists())
    try:  # a real attempt (permission bits say nothing to root, or on read-only mounts such as /proc)
        os.rmdir(tempfile.mkdtemp(prefix=".write-check-", dir=ancestor))
    except OSError:
        raise ConfigError(f"{key}={target} cannot be created: {ancestor} is not a writable folder; give a folder "
                          f"you can write to") from None


def refuse(err: BaseException, code: int) -> None:
    """Print the command line's error as one line and exit; the traceback only with HYDRA_FULL_ERROR=1."""
    if full_error():
        raise err
    print(f"error: {first_line(err)}", file=sys.stderr)
    sys.exit(code)


class JobError(CompactHydraException):
    """A job's error as one line. Raised inside the job, it travels back to the launching process like any job
    result (Hydra's run_job catches it; submitit and joblib pickle it), where Hydra prints just this line."""


def job_error(err: BaseException) -> JobError:
    """The one line of an error raised inside a job: a refusal as it is, anything unexpected with its type."""
    if isinstance(err, (*REFUSALS, OSError)):
        return JobError(f"error: {first_line(err)}")
    return JobError(f"error: {type(err).__name__}: {first_line(err)} (HYDRA_FULL_ERROR=1 shows the traceback)")


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def app(cfg: DictConfig) -> float:
    import json

    from inference_scaling.reporting.records import METRICS, write_job
    from inference_scaling.runner import run
    from inference_scaling.store import ChunkStore

    hydra_cfg = HydraConfig.get()
    out = Path(hydra_cfg.runtime.output_dir)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    if (out / METRICS).exists() and not cfg.overwrite:  # a finished job is never redone or overwritten silently
        print(f"skipping finished job {out} (overwrite=true reruns it)")
        return json.loads((out / METRICS).read_text()).get("verifier_score")
    study = Path(hydra_cfg.sweep.dir) if multirun else out
    wandb_run = []  # the job's W&B run, started when its first chunk is written (a refused job starts none)

    def logged():
        if not wandb_run:
            from inference_scaling.reporting.wandb_logger import start_job, study_group

            name = f"{typed.label or typed.search.name + '-' + typed.verifier.name}-nfe{typed.budget.nfe}"
            wandb_run.append(start_job(typed.logger.wandb, OmegaConf.to_container(cfg, resolve=True), out,
                                       study_group(study), job_name=name))
        return wandb_run[0]

    def on_chunk(done: int, total: int) -> None:
        if typed.logger.backend == "wandb":
            from inference_scaling.reporting.wandb_logger import log_progress

            log_progress(logged(), done, total)

    try:
        typed = typed_config(cfg)
        if typed.model.device == AUTO_CUDA:
            import torch

            typed.model.device = job_device(AUTO_CUDA, hydra_cfg.job.num or 0, max(torch.cuda.device_count(), 1))
        if typed.overwrite:
            ChunkStore(out).clear()
        # validates again: a job of a glob or interval sweep was not checked up front
        result = run(typed, out, cache_root=study if multirun else None, on_chunk=on_chunk)
    except Exception as err:  # one line under every launcher; the traceback with HYDRA_FULL_ERROR=1
        if wandb_run:
            wandb_run[0].finish(exit_code=1)
        if full_error():
            raise
        raise job_error(err) from None
    config_yaml = OmegaConf.to_yaml(cfg, resolve=True)
    write_job(out, config_yaml, result, cfg.save_images)
    metrics = result["metrics"]
    shown = " ".join(f"{k}={metrics[k]:.4g}" for k in SUMMARY if k in metrics)
    print(f"nfe={metrics['nfe']} N={metrics['n_candidates']} verifier={metrics['verifier_score']:.4g} {shown} -> {out}")
    if typed.logger.backend == "wandb":
        from inference_scaling.reporting.wandb_logger import finish_job

        finish_job(logged(), metrics, out)  # the run of the job's first start: W&B resumes it by its id
    return metrics["verifier_score"]


def main() -> None:
    from hydra._internal.utils import get_args_parser

    args, _ = get_args_parser().parse_known_args()
    # -cp names a folder relative to this module, which Hydra resolves; its jobs validate themselves.
    checkable = not (args.help or args.hydra_help or args.info or args.cfg or args.shell_completion or args.config_path)
    if checkable:
        config_dir = str(Path(args.config_dir).expanduser().resolve()) if args.config_dir else CONF_DIR
        try:
            check_output_dir(args.overrides, args.multirun)
            precheck(args.overrides, config_dir, args.config_name or "config", args.multirun)
        except (UsageError, *REFUSALS) as err:
            refuse(err, 2)
    app()


if __name__ == "__main__":
    main()
