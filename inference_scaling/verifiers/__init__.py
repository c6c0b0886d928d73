"""Verifiers score candidates (higher is better); one file each, looked up by name."""

from __future__ import annotations

from inference_scaling.verifiers.base import Verifier
from inference_scaling.verifiers.classifier import ClassifierLogit, ClassifierProb

VERIFIERS: dict[str, type] = {"classifier_prob": ClassifierProb, "classifier_logit": ClassifierLogit}


def build_verifier(name: str, **kwargs) -> Verifier:
    if name not in VERIFIERS:
        raise ValueError(f"unknown verifier {name!r}; choose one of: {', '.join(sorted(VERIFIERS))}")
    return VERIFIERS[name](**kwargs)


__all__ = ["Verifier", "VERIFIERS", "build_verifier", "ClassifierProb", "ClassifierLogit"]
