"""`python -m inference_scaling` / `inference-scaling`: the Hydra app.

Before Hydra starts any job, every combination of the command line's overrides is composed and validated,
so a bad value fails in one line, with a non-zero exit, before a folder is created or a model is loaded.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import OmegaConf

from inference_scaling.config import Config, ConfigError, register, validate
from inference_scaling.nfe import BudgetError
from inference_scaling.weights import WeightsError

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")
MAX_CHECKED_COMBINATIONS = 512
SUMMARY = ("accuracy", "count_accuracy", "relation_accuracy", "is", "fid", "kid")

register()


class UsageError(ValueError):
    """A command line that does not compose."""


def _sweep_values(override) -> list[str]:
    if not override.is_sweep_override():
        return [override.get_value_element_as_str()]
    return list(override.sweep_string_iterator())


def _choices(override) -> list[str]:
    """The single-valued overrides a (possibly sweeping) override stands for."""
    if override.is_delete():
        return [override.input_line]
    prefix = "++" if override.is_force_add() else "+" if override.is_add() else ""
    return [f"{prefix}{override.get_key_element()}={v}" for v in _sweep_values(override)]


def _group_options(group: str) -> list[str]:
    from hydra.core.global_hydra import GlobalHydra

    options = GlobalHydra.instance().config_loader().get_group_options(group)
    return sorted(o for o in options if not o.startswith("base_"))  # base_* are the typed schemas


def _explain(err: Exception, overrides: list[str]) -> str:
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
        base = _compose([])
        node = OmegaConf.select(base, parent) if parent else base
        accepted = ", ".join(node.keys()) if OmegaConf.is_dict(node) else "none"
        return f"unknown config key {full_key!r}; accepted keys{' in ' + parent if parent else ''}: {accepted}"
    culprits = [o for o in overrides if o.lstrip("+~").split("=")[0] == full_key] or overrides
    detail = str(cause).strip().splitlines()[0]
    return f"bad override {culprits[-1]}: {detail}"


def _compose(overrides: list[str]):
    return hydra.compose(config_name="config", overrides=overrides)


def precheck(overrides: list[str]) -> int:
    """Compose and validate every combination the overrides sweep; returns how many were checked."""
    from hydra import initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = [o for o in OverridesParser.create().parse_overrides(overrides) if not o.get_key_element().startswith("hydra")]
    choices = [_choices(o) for o in parsed]
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        checked = 0
        for combination in itertools.islice(itertools.product(*choices), MAX_CHECKED_COMBINATIONS):
            combination = list(combination)
            try:
                cfg = _compose(combination)
            except Exception as err:  # Hydra wraps OmegaConf's errors; explain whichever came
                raise UsageError(_explain(err, combination)) from None
            validate(OmegaConf.to_object(cfg))
            checked += 1
    return checked


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def app(cfg) -> float:
    from inference_scaling.reporting.records import write_job
    from inference_scaling.runner import run

    hydra_cfg = HydraConfig.get()
    out = Path(hydra_cfg.runtime.output_dir)
    typed: Config = OmegaConf.to_object(cfg)
    try:
        result = run(typed)
    except (ConfigError, BudgetError, WeightsError, OSError) as err:  # OSError: a hub id that cannot be loaded
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(f"error: {first_line}", file=sys.stderr)
        sys.exit(2)
    config_yaml = OmegaConf.to_yaml(cfg, resolve=True)
    write_job(out, config_yaml, result, cfg.save_images)
    metrics = result["metrics"]
    shown = " ".join(f"{k}={metrics[k]:.4g}" for k in SUMMARY if k in metrics)
    print(f"nfe={metrics['nfe']} N={metrics['n_candidates']} verifier={metrics['verifier_score']:.4g} {shown} -> {out}")
    if typed.logger.backend == "wandb":
        from inference_scaling.reporting.wandb_logger import log_job

        multirun = hydra_cfg.mode == RunMode.MULTIRUN
        group = Path(hydra_cfg.sweep.dir if multirun else hydra_cfg.run.dir).name
        log_job(typed.logger.wandb, OmegaConf.to_container(cfg, resolve=True), metrics, out, group,
                job_name=f"{typed.label or typed.search.name + '-' + typed.verifier.name}-nfe{typed.budget.nfe}")
    return metrics["verifier_score"]


def main() -> None:
    from hydra._internal.utils import get_args_parser

    args, _ = get_args_parser().parse_known_args()
    if not (args.help or args.hydra_help or args.info or args.cfg or args.shell_completion):
        try:
            precheck(args.overrides)
        except (UsageError, ConfigError, BudgetError, WeightsError) as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)
    app()


if __name__ == "__main__":
    main()
