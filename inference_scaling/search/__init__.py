"""Search algorithms over noises; one file each, looked up by name.

Every algorithm is a class with `plan(task, budget)` (its free parameter, derived from the NFE budget, or a
BudgetError saying what would fit), `__call__(task, budget) -> SearchResult`, and, where the chosen sample is
not simply an initial noise, a static `replay(task, lineage)` that re-renders it from the recorded lineage.
`passes_x0 = True` marks algorithms that score every candidate as a full solve from noise, so a verifier that
reads x0-predictions along the trajectory (the self-supervised ones) can run with them. `passes_indices = True`
marks algorithms that name the candidate index of every row they solve, which a stochastic solver (`sde`) draws its
step noise from.
"""

from __future__ import annotations

from dataclasses import asdict, is_dataclass

from inference_scaling.search.adaptive import AdaptiveSearch
from inference_scaling.search.base import SearchResult, SearchTask
from inference_scaling.search.evolutionary import EvolutionarySearch
from inference_scaling.search.fk_steering import FKSteering
from inference_scaling.search.gradient import GradientSearch
from inference_scaling.search.paths import SearchOverPaths
from inference_scaling.search.random import RandomSearch
from inference_scaling.search.zero_order import ZeroOrderSearch

SEARCHES: dict[str, type] = {
    "random": RandomSearch,
    "zero_order": ZeroOrderSearch,
    "paths": SearchOverPaths,
    "fk_steering": FKSteering,
    "evolutionary": EvolutionarySearch,
    "adaptive": AdaptiveSearch,
    "gradient": GradientSearch,
}
SHARED_FIELDS = ("name", "max_batch_size")  # fields of every search config that are not the algorithm's own


def build_search(cfg, progress: bool = False):
    """The algorithm a search config names, with that config's own parameters (or a bare name: defaults)."""
    name = cfg if isinstance(cfg, str) else cfg.name
    if name not in SEARCHES:
        raise ValueError(f"unknown search {name!r}; choose one of: {', '.join(sorted(SEARCHES))}")
    params = {k: v for k, v in asdict(cfg).items() if k not in SHARED_FIELDS} if is_dataclass(cfg) else {}
    return SEARCHES[name](**params, progress=progress)


__all__ = ["SearchTask", "SearchResult", "SEARCHES", "build_search", "RandomSearch", "ZeroOrderSearch",
           "SearchOverPaths", "FKSteering", "EvolutionarySearch", "AdaptiveSearch",
           "GradientSearch"]
