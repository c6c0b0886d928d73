"""Typed configs (Hydra structured configs) and the range checks that run before any model loads."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from inference_scaling import weights
from inference_scaling.nfe import BudgetError, check_budget
from inference_scaling.sampling import SDE_SCALE, SOLVERS, STOCHASTIC, linear_sigmas, solver_nfe


class ConfigError(ValueError):
    """A config value out of its accepted range."""


@dataclass
class ModelConfig:
    name: str = MISSING  # registry name in inference_scaling.models.MODELS
    weights: str = MISSING  # package:NAME (committed asset), a local path, or a hub id for hub models
    solver: str = "heun"  # euler | heun | heun2 | sde (stochastic: every search but gradient)
    search_steps: int = 2  # solver steps of each candidate during search
    final_steps: int = 2  # solver steps that render the chosen noise (the paper: 250 for SiT)
    guidance: float = 1.0  # classifier-free guidance scale; 1 = none (and 1 NFE per evaluation)
    device: str = "cpu"  # cpu | cuda | cuda:N | cuda:auto (GPU job number mod GPUs: one GPU per job) | mps
    dtype: str = "float32"  # the network's dtype: float32 | bfloat16 | float16 (ODE states stay float32)
    sde_scale: float = SDE_SCALE  # solver=sde: diffusion g(σ) = sde_scale·σ² (inference_scaling.sampling); 0 = Euler


@dataclass
class VerifierConfig:
    name: str = MISSING  # registry name in inference_scaling.verifiers.VERIFIERS
    weights: str = MISSING


@dataclass
class SearchConfig:
    name: str = MISSING  # registry name in inference_scaling.search.SEARCHES
    max_batch_size: int = 1024  # rows per denoiser call


@dataclass
class ZeroOrderConfig(SearchConfig):
    n: int = 4  # N neighbours per iteration; K = (budget // cost − 1) // N
    lam: float = 0.6  # λ: distance / ‖pivot‖ on the Gaussian shell, in (0, 2]


@dataclass
class PathsConfig(SearchConfig):
    m: int = 2  # M noises per path and round; the beam width N comes from the budget
    sigma_start: float = 0.5  # level the first solve stops at
    delta_f: float = 0.1  # Δf: forward (noising) step up
    delta_b: float = 0.35  # Δb: solve back down (> Δf)


@dataclass
class FKSteeringConfig(SearchConfig):
    resamplings: int = 3
    delta_f: float = 0.1  # fresh-noise renoising after each resampling
    lam: float = 10.0  # potential temperature
    potential: str = "diff"  # max | add | diff


@dataclass
class EvolutionaryConfig(SearchConfig):
    population: int = 8
    elites: int = 2
    mutation: float = 0.5  # β: child = sqrt(1 − β²)·parent + β·ε


@dataclass
class AdaptiveConfig(SearchConfig):
    success_threshold: Optional[float] = None  # a score >= this solves a condition (no more candidates); None: never
    max_candidates_per_condition: Optional[int] = None  # a cap per condition; None: the chunk's pool is the only one


@dataclass
class GradientConfig(SearchConfig):
    lr: float = 0.1  # relative step on the Gaussian shell, in (0, 2] (as zero-order's λ)
    backward_nfe: float = 0.75  # forward NFEs one backward row is priced at (experiments/backward_ratio.py)


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
    name: str = MISSING  # registry name in inference_scaling.benchmarks.BENCHMARKS
    per_class: int = 100  # conditions per class (per condition of the grammar); the set is balanced
    kid_subset_size: int = 500
    # Evaluation metrics apart from the search's verifier, each a verifier's fields (and an optional label), e.g.
    # [{name: clip_score, clip: openai/clip-vit-base-patch32}]; each scores every final image.
    metrics: list[Any] = field(default_factory=list)
    # Conditions per chunk: a job searches, renders and writes one chunk at a time (bounded memory; a killed job
    # resumes after its last complete chunk). A chunk's results do not depend on the other chunks.
    chunk_size: int = 1024
    shard: str = ""  # "i/n": run chunks k with k mod n = i only (same noises and choices as the whole job); "" all


@dataclass
class ScenesBenchmarkConfig(BenchmarkConfig):
    counts: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5, 6])  # within 1..6
    relations: list[str] = field(default_factory=lambda: ["left", "right"])
    prompts: list[str] = field(default_factory=list)  # if given, these conditions instead of counts × relations
    reference_size: int = 2400  # generated scenes FID/KID compare against
    reference_seed: int = 4000


@dataclass
class ImageNetBenchmarkConfig(BenchmarkConfig):
    classes: list[int] = field(default_factory=list)  # ImageNet class indices 0..999; empty: all 1,000
    inception: bool = False  # IS (and with `reference` FID, precision/recall) in InceptionV3's features
    reference: str = ""  # .npz with mu, sigma (and arr_0, the reference batch): FID, precision/recall; implies inception
    inception_weights: str = ""  # torch-fidelity's inception-2015-12-05 weights file; "": its download
    is_splits: int = 10  # IS over this many equal parts (ADM's and torch-fidelity's 10)
    eval_batch_size: int = 100  # images per Inception forward pass


@dataclass
class PromptsBenchmarkConfig(BenchmarkConfig):
    prompts: list[str] = field(default_factory=list)
    prompts_file: str = ""  # a UTF-8 text file, one prompt a line (instead of `prompts`)


@dataclass
class PromptSetBenchmarkConfig(BenchmarkConfig):
    categories: list[str] = field(default_factory=list)  # the categories to run; empty: all
    prompts_per_category: int = 0  # the first n prompts of each category (a quick look); 0: all


@dataclass
class Config:
    model: ModelConfig = MISSING
    verifier: VerifierConfig = MISSING
    search: SearchConfig = MISSING
    budget: BudgetConfig = MISSING
    logger: LoggerConfig = MISSING
    benchmark: BenchmarkConfig = MISSING
    seed: int = 0
    # How candidate noises are drawn from (seed, condition, index) (inference_scaling.noise): counter (batched on the
    # model's device, the README's tables) | torch (a CPU generator per candidate, the tables before the switch)
    noise: str = "counter"
    progress: bool = True
    save_images: bool = True
    label: Optional[str] = None  # the line this job belongs to in scaling figures (default: search / verifier / model)
    overwrite: bool = False  # rerun a finished job (or one holding another config's chunks) instead of skipping it
    reuse: bool = True  # random search in a sweep: reuse the candidates of the sweep's other budgets (see reuse.py)


def register() -> None:
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=Config)
    for group, node in [("model", ModelConfig), ("verifier", VerifierConfig), ("search", SearchConfig),
                        ("budget", BudgetConfig), ("logger", LoggerConfig), ("benchmark", BenchmarkConfig)]:
        cs.store(name=f"base_{group}", node=node)
    for name, node in [("scenes", ScenesBenchmarkConfig), ("imagenet", ImageNetBenchmarkConfig),
                       ("prompts", PromptsBenchmarkConfig), ("prompt_set", PromptSetBenchmarkConfig)]:
        cs.store(name=f"base_{name}_benchmark", node=node)
    for name, node in benchmark_configs().items():
        cs.store(name=f"base_{name}_benchmark", node=node)
    from inference_scaling.models import model_configs

    for name, node in model_configs().items():
        cs.store(name=f"base_{name}", node=node)
    for name, node in [("zero_order", ZeroOrderConfig), ("paths", PathsConfig), ("fk_steering", FKSteeringConfig),
                       ("evolutionary", EvolutionaryConfig)]:
        cs.store(name=f"base_{name}", node=node)
    cs.store(name="base_adaptive", node=AdaptiveConfig)
    cs.store(name="base_gradient", node=GradientConfig)
    for name, node in verifier_configs().items():
        cs.store(name=f"base_{name}", node=node)
    if not OmegaConf.has_resolver("sample_cost"):
        # budget=one_sample: exactly one candidate of the model's search sampler, i.e. no search.
        OmegaConf.register_new_resolver("sample_cost", lambda name, solver, steps, guidance: _cost(
            name, solver, int(steps), float(guidance)))


def benchmark_configs() -> dict[str, type]:
    """The typed config of the benchmarks whose evaluators live in their own module (light to import)."""
    from inference_scaling.evaluation.geneval import GenEvalConfig
    from inference_scaling.evaluation.t2i_compbench import T2ICompBenchConfig

    return {"t2i_compbench": T2ICompBenchConfig, "geneval": GenEvalConfig}


def verifier_configs() -> dict[str, type]:
    """The typed config of every verifier that has fields of its own (the others use VerifierConfig)."""
    from inference_scaling.verifiers.aesthetic import AestheticConfig
    from inference_scaling.verifiers.clip_score import ClipScoreConfig
    from inference_scaling.verifiers.clip_zeroshot import ClipZeroShotConfig
    from inference_scaling.verifiers.dino_linear import DinoLinearConfig
    from inference_scaling.verifiers.ensemble import EnsembleConfig
    from inference_scaling.verifiers.fid_oracle import FidOracleConfig
    from inference_scaling.verifiers.image_reward import ImageRewardConfig
    from inference_scaling.verifiers.inception_is import InceptionISConfig
    from inference_scaling.verifiers.llm_grader import LLMGraderConfig
    from inference_scaling.verifiers.scene_classifier import SceneClassifierConfig
    from inference_scaling.verifiers.ssl_clip import SslClipConfig
    from inference_scaling.verifiers.ssl_digits import SslDigitsConfig
    from inference_scaling.verifiers.ssl_dino import SslDinoConfig

    return {"llm_grader": LLMGraderConfig, "clip_score": ClipScoreConfig, "aesthetic": AestheticConfig,
            "image_reward": ImageRewardConfig, "ensemble": EnsembleConfig, "inception_is": InceptionISConfig,
            "clip_zeroshot": ClipZeroShotConfig, "dino_linear": DinoLinearConfig, "fid_oracle": FidOracleConfig,
            "ssl_dino": SslDinoConfig, "ssl_clip": SslClipConfig, "ssl_digits": SslDigitsConfig,
            "scene_classifier": SceneClassifierConfig}


def verifier_preset(name: str) -> dict:
    """The fields of conf/verifier/<name>.yaml (without its defaults list), or none if there is no such option."""
    from pathlib import Path

    file = Path(__file__).resolve().parents[1] / "conf" / "verifier" / f"{name}.yaml"
    preset = OmegaConf.to_container(OmegaConf.load(file)) if file.is_file() else {}
    preset.pop("defaults", None)
    return preset


def metric_configs(benchmark: BenchmarkConfig) -> dict[str, VerifierConfig]:
    """`benchmark.metrics` (each a verifier's fields with its `name`, and an optional `label`, default the name) as
    typed verifier configs by label: verifiers that score every final image as an evaluation metric, apart from the
    verifier that searched."""
    from omegaconf.errors import OmegaConfBaseException

    from inference_scaling.verifiers import VERIFIERS

    typed = {}
    for k, entry in enumerate(benchmark.metrics):
        if isinstance(entry, str):  # a verifier's name alone: its own config's defaults
            entry = {"name": entry}
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise ConfigError(f"benchmark.metrics[{k}]={entry!r} must be a verifier's name or its fields with its "
                              f"name, e.g. benchmark.metrics=[clip_score,{{name: aesthetic, label: aes}}]")
        fields = dict(entry)
        label, name = str(fields.pop("label", fields["name"])), fields["name"]
        if name not in VERIFIERS:
            raise ConfigError(f"benchmark.metrics[{k}].name={name!r} is unknown; choose one of: "
                              f"{', '.join(sorted(VERIFIERS))}")
        if label in typed:
            raise ConfigError(f"benchmark.metrics[{k}]: label {label!r} is taken; give each metric its own label")
        node = verifier_configs().get(name, VerifierConfig)
        try:  # the fields override that verifier's own config option, so defaults are those of verifier=<name>
            typed[label] = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(node), verifier_preset(name),
                                                               fields))
        except OmegaConfBaseException as err:
            accepted = ", ".join(["label", *(f.name for f in dataclasses.fields(node))])
            raise ConfigError(f"benchmark.metrics[{k}]: {str(err).strip().splitlines()[0]}; {name} takes: "
                              f"{accepted}") from None
    return typed


WANDB_MODES = ("offline", "online", "disabled")
LOGGER_BACKENDS = ("wandb", "none")
INT64 = 2**63  # ints index tensors, seed generators and count NFEs as int64: every int option lies in [−2**63, 2**63)
# A job holds every condition's final image and scores every candidate, one float each, in memory: at most 10**7
# conditions (10**7 of the smallest 8×8 digits are 2.5 GB) and 10**10 candidates in all (a 40 GB score table).
MAX_CONDITIONS = 10**7
MAX_CANDIDATES = 10**10


def _at_least(name: str, value, low) -> None:
    if value < low:
        raise ConfigError(f"{name}={value} must be >= {low}")


def _leaves(node, key: str = ""):
    """(dotted key, value) of every leaf of a typed config: dataclass fields, dict items and list entries."""
    if dataclasses.is_dataclass(node):
        for f in dataclasses.fields(node):
            yield from _leaves(getattr(node, f.name), f"{key}.{f.name}" if key else f.name)
    elif isinstance(node, dict):
        for k, value in node.items():
            yield from _leaves(value, f"{key}.{k}")
    elif isinstance(node, (list, tuple)):
        for k, value in enumerate(node):
            yield from _leaves(value, f"{key}[{k}]")
    else:
        yield key, node


def _check_numbers(cfg: Config) -> None:
    """Seeds in [0, 2**63), every float option finite and every int option within int64, whatever its group."""
    for key, seed in [("seed", cfg.seed), ("benchmark.reference_seed", getattr(cfg.benchmark, "reference_seed", 0))]:
        if not 0 <= seed < INT64:
            raise ConfigError(f"{key}={seed} must lie in [0, 2**63)")
    for key, value in _leaves(cfg):
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{key}={value} must be a finite number")
        if isinstance(value, int) and not isinstance(value, bool) and not -INT64 <= value < INT64:
            raise ConfigError(f"{key}={value} does not fit in 64 bits; use a value below 2**63")


def _cost(name: str, solver: str, steps: int, guidance: float) -> int:
    from inference_scaling.models import model_class

    return solver_nfe(solver, linear_sigmas(steps)) * model_class(name).guidance_cost(guidance)


def search_cost(model: ModelConfig) -> int:
    """NFEs per condition of one candidate with the model's search sampler, guidance as the model declares it."""
    from inference_scaling.models import model_class

    return solver_nfe(model.solver, search_sigmas(model)) * model_class(model.name).evals_per_call(model)


def search_sigmas(model: ModelConfig):
    """The model's own σ grid for its search sampler."""
    from inference_scaling.models import model_class

    return model_class(model.name).sigmas(model, model.search_steps)


def final_sigmas(model: ModelConfig):
    from inference_scaling.models import model_class

    return model_class(model.name).sigmas(model, model.final_steps)


def validate(cfg: Config) -> int:
    """Check every range and file the job depends on; returns the number of candidates the budget buys."""
    _check_numbers(cfg)
    if cfg.model.solver not in SOLVERS:
        raise ConfigError(f"model.solver={cfg.model.solver!r} is not a solver; choose one of: {', '.join(SOLVERS)}")
    _at_least("model.search_steps", cfg.model.search_steps, 1)
    _at_least("model.final_steps", cfg.model.final_steps, 1)
    _at_least("model.sde_scale", cfg.model.sde_scale, 0.0)
    if cfg.model.solver in STOCHASTIC and cfg.model.final_steps != cfg.model.search_steps:
        raise ConfigError(f"model.solver={cfg.model.solver} draws fresh noise at every step, so model.final_steps="
                          f"{cfg.model.final_steps} would render another sample than the one the search chose with "
                          f"model.search_steps={cfg.model.search_steps}; set model.final_steps=${{model.search_steps}}")
    _at_least("model.guidance", cfg.model.guidance, 0.0)
    _check_device(cfg.model)
    _at_least("search.max_batch_size", cfg.search.max_batch_size, 1)
    _at_least("benchmark.per_class", cfg.benchmark.per_class, 1)
    _at_least("benchmark.kid_subset_size", cfg.benchmark.kid_subset_size, 2)
    from inference_scaling.noise import GENERATORS

    if cfg.noise not in GENERATORS:
        raise ConfigError(f"noise={cfg.noise!r}; choose one of: {', '.join(GENERATORS)}")
    if cfg.logger.backend not in LOGGER_BACKENDS:
        raise ConfigError(f"logger.backend={cfg.logger.backend!r}; choose one of: {', '.join(LOGGER_BACKENDS)}")
    if cfg.logger.wandb.mode not in WANDB_MODES:
        raise ConfigError(f"logger.wandb.mode={cfg.logger.wandb.mode!r}; choose one of: {', '.join(WANDB_MODES)}")
    n_conditions = _check_components(cfg)
    _check_chunks(cfg, n_conditions)
    from inference_scaling.models import model_class

    try:
        model_class(cfg.model.name).check_config(cfg.model)
    except weights.WeightsError as err:
        raise ConfigError(f"model.weights: {err}") from None
    except ValueError as err:  # adapters name the key in their message
        raise ConfigError(str(err)) from None
    _check_verifier_weights("verifier", cfg.verifier)
    _check_metrics(cfg)
    return _check_search_plan(cfg, n_conditions)


def _check_chunks(cfg: Config, n_conditions: int) -> None:
    """A chunk size, and a shard that gets conditions enough for the benchmark's evaluation."""
    from inference_scaling.benchmarks import BENCHMARKS
    from inference_scaling.store import StoreError, make_plan
    from inference_scaling.verifiers import VERIFIERS

    _at_least("benchmark.chunk_size", cfg.benchmark.chunk_size, 1)
    if cfg.benchmark.shard and getattr(VERIFIERS[cfg.verifier.name], "needs_all_conditions", False):
        raise ConfigError(f"benchmark.shard={cfg.benchmark.shard}: verifier={cfg.verifier.name} scores the whole "
                          f"selected set at once, so its job cannot be split; run it without benchmark.shard")
    try:
        plan = make_plan(n_conditions, cfg.benchmark.chunk_size, cfg.benchmark.shard, "")
    except StoreError as err:
        raise ConfigError(str(err)) from None
    benchmark = BENCHMARKS[cfg.benchmark.name]
    least = getattr(benchmark, "min_conditions", 1)
    if cfg.benchmark.shard and plan.n_conditions < least:
        raise ConfigError(f"benchmark.shard={cfg.benchmark.shard} gets {plan.n_conditions} condition(s); "
                          f"the evaluation needs at least {least} ({benchmark.min_conditions_why}): use fewer shards")


def _check_verifier_weights(key: str, verifier: VerifierConfig) -> None:
    """A verifier's own up-front checks (its `check` classmethod, where it has one) and that its weights file
    exists (a hub file or a folder the verifier reads is checked when it loads)."""
    from inference_scaling.verifiers import VERIFIERS
    from inference_scaling.verifiers.aesthetic import HUB_PREFIX

    check = getattr(VERIFIERS.get(verifier.name), "check", None)
    if check is not None:
        try:
            check(verifier)
        except ValueError as err:
            raise ConfigError(str(err) if key == "verifier" else f"{key}: {err}") from None

    path = verifier.weights
    takes_folder = getattr(VERIFIERS.get(verifier.name), "weights_folder", False)
    if path.startswith(HUB_PREFIX) or (takes_folder and weights.resolve(path).is_dir()):
        path = ""  # a hub file (fetched when loaded) or a saved model folder (read when loaded)
    if path:  # "" = the verifier has no weights file
        try:
            weights.check_exists(path)
        except weights.WeightsError as err:
            raise ConfigError(f"{key}.weights: {err}") from None


def _check_metrics(cfg: Config) -> None:
    """Each metric verifier exists, takes its fields, reads this benchmark's conditions and scores one image alone."""
    from inference_scaling.verifiers import VERIFIERS

    for k, metric in enumerate(metric_configs(cfg.benchmark).values()):
        cls = VERIFIERS[metric.name]
        accepted = getattr(cls, "benchmarks", None)
        if accepted is not None and cfg.benchmark.name not in accepted:
            raise ConfigError(f"benchmark.metrics[{k}]: {metric.name} does not score benchmark="
                              f"{cfg.benchmark.name}; it scores: {', '.join(accepted)}")
        for flag, why in [("needs_x0", "reads x0-predictions along a search's trajectory"),
                          ("set_level", "scores candidates relative to each other"),
                          ("needs_all_conditions", "scores the whole selected set")]:
            if getattr(cls, flag, False):
                raise ConfigError(f"benchmark.metrics[{k}]: {metric.name} {why}, not each final image on its own; "
                                  f"use a per-image verifier as a metric")
        _check_verifier_weights(f"benchmark.metrics[{k}]", metric)


AUTO_CUDA = "cuda:auto"  # each job of a sweep takes its own GPU (see `job_device`)


def job_device(device: str, job_num: int, gpus: int) -> str:
    """The device a job runs on: `cuda:auto` is GPU `job_num mod gpus`, chosen inside the job, since joblib's worker
    processes are reused and a per-process CUDA_VISIBLE_DEVICES would stick to the first job a worker ran."""
    return f"cuda:{job_num % gpus}" if device == AUTO_CUDA else device


def _check_device(model: ModelConfig) -> None:
    """A device this machine has and a dtype the adapters support, before anything loads."""
    import torch

    from inference_scaling.models.base import DTYPES

    if model.dtype not in DTYPES:
        raise ConfigError(f"model.dtype={model.dtype!r} is not supported; choose one of: {', '.join(DTYPES)}")
    if model.device == AUTO_CUDA:
        if not torch.cuda.is_available():
            raise ConfigError(f"model.device={AUTO_CUDA} but this machine has no CUDA device; use model.device=cpu")
        return
    try:
        device = torch.device(model.device)
    except (RuntimeError, ValueError):
        raise ConfigError(f"model.device={model.device!r} is not a device; use cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"model.device={model.device} but this machine has no CUDA device; use model.device=cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"model.device={model.device}: this machine has {torch.cuda.device_count()} CUDA "
                              f"device(s), cuda:0..cuda:{torch.cuda.device_count() - 1}")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"model.device={model.device} but MPS is not available here; use model.device=cpu")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"model.device={model.device!r} is not supported; use cpu, cuda, cuda:N or mps")


def _check_search_plan(cfg: Config, n_conditions: int) -> int:
    """The search's free parameter for this budget, computed from the sampler alone (no model is loaded)."""
    import torch

    from inference_scaling.sampling import get_solver
    from inference_scaling.search import SearchTask, build_search
    from inference_scaling.verifiers import VERIFIERS

    samples = check_budget(cfg.budget.nfe, search_cost(cfg.model))
    if samples * n_conditions > MAX_CANDIDATES:  # no algorithm solves more candidates than the budget buys
        raise ConfigError(f"budget.nfe={cfg.budget.nfe} buys {samples:,} candidates for each of {n_conditions:,} "
                          f"conditions, {samples * n_conditions:,} in all; a job scores at most 10**10 candidates: "
                          f"lower budget.nfe or benchmark.per_class")
    try:
        search = build_search(cfg.search)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    if cfg.model.solver in STOCHASTIC and not getattr(search, "passes_indices", False):
        from inference_scaling.search import SEARCHES

        able = ", ".join(name for name, kind in SEARCHES.items() if getattr(kind, "passes_indices", False))
        raise ConfigError(f"model.solver={cfg.model.solver} draws its noise from each candidate's index, which "
                          f"search={cfg.search.name} does not pass; use an ODE solver or search: {able}")
    dry = SearchTask(denoiser=None, solver=get_solver(cfg.model.solver), sigmas=search_sigmas(cfg.model),
                     cost_per_sample=search_cost(cfg.model), conds=torch.zeros(0), condition_ids=torch.zeros(0),
                     noise_shape=(), seed=cfg.seed, verifier=None, max_batch_size=cfg.search.max_batch_size,
                     sde_scale=cfg.model.sde_scale)
    if getattr(VERIFIERS[cfg.verifier.name], "needs_x0", False):
        _check_x0_level(cfg)
    try:
        return search.plan(dry, cfg.budget.nfe)
    except BudgetError:
        raise
    except ValueError as err:  # a parameter that does not fit the solver (FK steering's Δf = 0 with an ODE)
        raise ConfigError(str(err)) from None


def _check_x0_level(cfg: Config) -> None:
    """A self-supervised verifier must read its x0-prediction before the grid's last step: that step is an Euler
    step to σ = 0, so its x0-prediction is the final sample itself and every score would be 1."""
    from inference_scaling.search.base import nearest_step

    from inference_scaling.models import model_class

    sigma, steps = cfg.verifier.sigma, cfg.model.search_steps
    if not 0.0 < sigma < 1.0:
        raise ConfigError(f"verifier.sigma={sigma} must lie in (0, 1)")
    grid = model_class(cfg.model.name).sigmas
    step = nearest_step(grid(cfg.model, steps), sigma)
    if step == steps - 1:
        enough = next(n for n in range(steps + 1, 10_000) if nearest_step(grid(cfg.model, n), sigma) != n - 1)
        raise ConfigError(
            f"verifier={cfg.verifier.name} reads the x0-prediction at the search grid's level nearest "
            f"sigma={sigma}, which is {float(grid(cfg.model, steps)[step]):g}, the last step: there it is the final "
            f"sample and every score is 1; use model.search_steps >= {enough} or another verifier.sigma")


def _check_components(cfg: Config) -> int:
    """Names exist in their registries and fit together (a benchmark's conditions, its model, the verifier);
    returns the number of conditions."""
    from inference_scaling.benchmarks import BENCHMARKS
    from inference_scaling.models import MODELS, model_class
    from inference_scaling.scenes import ConditionError
    from inference_scaling.search import SEARCHES
    from inference_scaling.verifiers import VERIFIERS

    for kind, name, registry in [("model", cfg.model.name, MODELS), ("verifier", cfg.verifier.name, VERIFIERS),
                                 ("search", cfg.search.name, SEARCHES), ("benchmark", cfg.benchmark.name, BENCHMARKS)]:
        if name not in registry:
            raise ConfigError(f"{kind}.name={name!r} is unknown; choose one of: {', '.join(sorted(registry))}")
    benchmark = BENCHMARKS[cfg.benchmark.name](cfg.benchmark)
    takes = model_class(cfg.model.name).condition_kind
    if takes != benchmark.condition_kind:
        models = sorted(m for m in MODELS if model_class(m).condition_kind == benchmark.condition_kind)
        raise ConfigError(f"model={cfg.model.name} takes {takes} conditions but benchmark={benchmark.name} gives "
                          f"{benchmark.condition_kind} conditions; models for it: {', '.join(models)}")
    accepted = getattr(VERIFIERS[cfg.verifier.name], "benchmarks", None)
    if accepted is not None and benchmark.name not in accepted:
        raise ConfigError(f"verifier={cfg.verifier.name} does not score benchmark={benchmark.name}; "
                          f"it scores: {', '.join(accepted)}")
    if getattr(SEARCHES[cfg.search.name], "needs_differentiable", False):  # it back-propagates through the verifier
        from inference_scaling.search.gradient import refuse_non_differentiable

        try:
            refuse_non_differentiable(VERIFIERS[cfg.verifier.name], cfg.verifier.name)
        except ValueError as err:
            raise ConfigError(str(err)) from None
    if getattr(VERIFIERS[cfg.verifier.name], "needs_x0", False) and not getattr(SEARCHES[cfg.search.name],
                                                                                 "passes_x0", False):
        passing = sorted(name for name, algorithm in SEARCHES.items() if getattr(algorithm, "passes_x0", False))
        raise ConfigError(f"verifier={cfg.verifier.name} compares each candidate's x0-prediction with its final "
                          f"sample, but search={cfg.search.name} scores partial trajectories; use search="
                          f"{' | '.join(passing)}")
    try:  # the size from one condition per class, so a set too large to hold is refused before it is built
        unit = len(type(benchmark)(dataclasses.replace(cfg.benchmark, per_class=1)).conditions().ids)
        if cfg.benchmark.per_class * unit > MAX_CONDITIONS:
            raise ConfigError(f"benchmark.per_class={cfg.benchmark.per_class} gives {cfg.benchmark.per_class * unit:,} "
                              f"conditions ({unit} per class); a job holds at most 10**7: use benchmark.per_class "
                              f"<= {MAX_CONDITIONS // unit:,}")
        n = len(benchmark.conditions().ids)
    except ConditionError as err:
        raise ConfigError(f"benchmark: {err}") from None
    check = getattr(benchmark, "check", None)
    if check is not None:
        try:
            check()
        except ConditionError as err:
            raise ConfigError(str(err)) from None
    if n == 0:
        raise ConfigError(f"benchmark={benchmark.name} gives no conditions; check its condition lists "
                          f"(e.g. benchmark.counts, benchmark.relations, benchmark.classes)")
    least = getattr(benchmark, "min_conditions", 1)
    if n < least:
        raise ConfigError(f"benchmark={benchmark.name} gives {n} condition(s); its evaluation needs at least {least} "
                          f"({benchmark.min_conditions_why}): raise benchmark.per_class or add conditions")
    return n
