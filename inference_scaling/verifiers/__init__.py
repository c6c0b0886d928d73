"""Verifiers score candidates (higher is better); one file each, looked up by name.

Each class has `from_config(cfg, device)`, a `cost` record, and optionally `benchmarks` (the benchmarks
whose condition rows it understands; absent: any), `takes_prompts` (it reads the conditions' text prompts)
`set_level` (a call must hold all candidates of each condition) and `needs_x0` (it also reads the sampler's
x0-prediction at its `sigma`).
"""

from __future__ import annotations

from inference_scaling.verifiers.aesthetic import Aesthetic
from inference_scaling.verifiers.base import Verifier, VerifierCost
from inference_scaling.verifiers.classifier import ClassifierLogit, ClassifierProb
from inference_scaling.verifiers.clip_score import ClipScore
from inference_scaling.verifiers.clip_zeroshot import ClipZeroShot
from inference_scaling.verifiers.dino_linear import DinoLinear
from inference_scaling.verifiers.ensemble import Ensemble
from inference_scaling.verifiers.fid_oracle import FidOracle
from inference_scaling.verifiers.image_reward import ImageReward
from inference_scaling.verifiers.inception_is import InceptionIS
from inference_scaling.verifiers.llm_grader import LLMGrader
from inference_scaling.verifiers.scene_checker import SceneChecker
from inference_scaling.verifiers.scene_classifier import SceneClassifierVerifier
from inference_scaling.verifiers.ssl_clip import SslClip
from inference_scaling.verifiers.ssl_digits import SslDigits
from inference_scaling.verifiers.ssl_dino import SslDino

VERIFIERS: dict[str, type] = {
    "classifier_prob": ClassifierProb,
    "classifier_logit": ClassifierLogit,
    "scene_checker": SceneChecker,
    "scene_classifier": SceneClassifierVerifier,
    "llm_grader": LLMGrader,
    "clip_score": ClipScore,
    "aesthetic": Aesthetic,
    "image_reward": ImageReward,
    "ensemble": Ensemble,
    "inception_is": InceptionIS,
    "clip_zeroshot": ClipZeroShot,
    "dino_linear": DinoLinear,
    "fid_oracle": FidOracle,
    "ssl_dino": SslDino,
    "ssl_clip": SslClip,
    "ssl_digits": SslDigits,
}


def build_verifier(cfg, device: str = "cpu") -> Verifier:
    """The verifier a config names (`cfg.name` and that verifier's fields), or a bare name with its defaults."""
    name = cfg if isinstance(cfg, str) else cfg.name
    if name not in VERIFIERS:
        raise ValueError(f"unknown verifier {name!r}; choose one of: {', '.join(sorted(VERIFIERS))}")
    return VERIFIERS[name](device=device) if isinstance(cfg, str) else VERIFIERS[name].from_config(cfg, device)


__all__ = ["Verifier", "VerifierCost", "VERIFIERS", "build_verifier"]
