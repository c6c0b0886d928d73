"""Typed configs (Hydra structured configs) and the range checks that run before any model loads."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from inference_scaling import weights
from inference_scaling.nfe import check_budget
from inference_scaling.sampling import SOLVERS, linear_sigmas, solver_nfe


class ConfigError(ValueError):
    """A config value out of its accepted range."""


@dataclass
class ModelConfig:
    name: str = MISSING  # registry name in inference_scaling.runner.MODELS
    weights: str = MISSING  # package:NAME (committed asset), a local path, or a hub id for hub models
    solver: str = "heun"  # euler | heun
    search_steps: int = 2  # solver steps of each candidate during search
    final_steps: int = 2  # solver steps that render the chosen noise (the paper: 250 for SiT)
    guidance: float = 1.0  # classifier-free guidance scale; 1 = none (and 1 NFE per evaluation)
    device: str = "cpu"


@dataclass
class VerifierConfig:
    name: str = MISSING  # registry name in inference_scaling.verifiers.VERIFIERS
    weights: str = MISSING


@dataclass
class SearchConfig:
    name: str = MISSING  # registry name in inference_scaling.search.SEARCHES
    max_batch_size: int = 1024  # rows per denoiser call


@dataclass
class BudgetConfig:
    nfe: int = MISSING  # search NFEs per condition (denoiser forward passes, guidance counted)


@dataclass
class WandbConfig:
    mode: str = "offline"  # offline | online | disabled
    project: str = "inference-scaling"
    entity: Optional[str] = None
    group: Optional[str] = None  # default: the sweep folder's name, shared by all jobs of a multirun


@dataclass
class LoggerConfig:
    backend: str = "wandb"  # wandb | none
    wandb: WandbConfig = field(default_factory=WandbConfig)


@dataclass
class BenchmarkConfig:
    name: str = MISSING  # digits
    per_class: int = 100  # conditions per class; the condition set is class-balanced
    kid_subset_size: int = 500


@dataclass
class Config:
    model: ModelConfig = MISSING
    verifier: VerifierConfig = MISSING
    search: SearchConfig = MISSING
    budget: BudgetConfig = MISSING
    logger: LoggerConfig = MISSING
    benchmark: BenchmarkConfig = MISSING
    seed: int = 0
    progress: bool = True
    save_images: bool = True


def register() -> None:
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=Config)
    for group, node in [("model", ModelConfig), ("verifier", VerifierConfig), ("search", SearchConfig),
                        ("budget", BudgetConfig), ("logger", LoggerConfig), ("benchmark", BenchmarkConfig)]:
        cs.store(group=group, name=f"base_{group}", node=node)


WANDB_MODES = ("offline", "online", "disabled")
LOGGER_BACKENDS = ("wandb", "none")


def _at_least(name: str, value, low) -> None:
    if value < low:
        raise ConfigError(f"{name}={value} must be >= {low}")


def search_cost(model: ModelConfig) -> int:
    """NFEs per condition of one candidate with the model's search sampler, guidance included."""
    per_eval = 1 if model.guidance == 1.0 else 2
    return solver_nfe(model.solver, linear_sigmas(model.search_steps)) * per_eval


def validate(cfg: Config) -> int:
    """Check every range and file the job depends on; returns the number of candidates the budget buys."""
    if cfg.model.solver not in SOLVERS:
        raise ConfigError(f"model.solver={cfg.model.solver!r} is not a solver; choose one of: {', '.join(SOLVERS)}")
    _at_least("model.search_steps", cfg.model.search_steps, 1)
    _at_least("model.final_steps", cfg.model.final_steps, 1)
    _at_least("model.guidance", cfg.model.guidance, 0.0)
    _at_least("search.max_batch_size", cfg.search.max_batch_size, 1)
    _at_least("benchmark.per_class", cfg.benchmark.per_class, 1)
    _at_least("benchmark.kid_subset_size", cfg.benchmark.kid_subset_size, 2)
    if cfg.logger.backend not in LOGGER_BACKENDS:
        raise ConfigError(f"logger.backend={cfg.logger.backend!r}; choose one of: {', '.join(LOGGER_BACKENDS)}")
    if cfg.logger.wandb.mode not in WANDB_MODES:
        raise ConfigError(f"logger.wandb.mode={cfg.logger.wandb.mode!r}; choose one of: {', '.join(WANDB_MODES)}")
    for key, path in [("model.weights", cfg.model.weights), ("verifier.weights", cfg.verifier.weights)]:
        try:
            weights.check_exists(path)
        except weights.WeightsError as err:
            raise ConfigError(f"{key}: {err}") from None
    return check_budget(cfg.budget.nfe, search_cost(cfg.model))
