"""Search algorithms over noises; one file each, looked up by name."""

from __future__ import annotations

from inference_scaling.search.base import SearchResult, SearchTask
from inference_scaling.search.random import RandomSearch

SEARCHES: dict[str, type] = {"random": RandomSearch}


def build_search(name: str, **kwargs):
    if name not in SEARCHES:
        raise ValueError(f"unknown search {name!r}; choose one of: {', '.join(sorted(SEARCHES))}")
    return SEARCHES[name](**kwargs)


__all__ = ["SearchTask", "SearchResult", "SEARCHES", "build_search", "RandomSearch"]
