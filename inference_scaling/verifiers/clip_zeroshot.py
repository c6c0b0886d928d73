"""Supervised verifier: CLIP as a zero-shot classifier (Radford et al. 2021, §3.1.4; Ma et al. 2025, §4.1).

Each class k gets a text embedding t_k: the normalised mean over prompt templates ("a photo of a {name}." by
default) of the normalised CLIP text embeddings, as in CLIP's zero-shot recipe. An image with normalised embedding
e gets the logits  l_k = s · cos(e, t_k), with s = exp(logit_scale) (100 for OpenAI CLIP), the logits
`CLIPModel` returns. The score is the logit of the conditioning class (`score: logit`, the paper's "logits of the
classifier"), or its log-softmax over all K classes (`score: log_prob`), which also counts how strongly the other
classes respond.

Classes: the 1,000 ImageNet class names (`assets/imagenet_classes.txt`, one per line in the standard index order)
by default; any other list (a text file, one name per line, or `class_names`, e.g. the ten digit names for the
embedded digits benchmark) maps condition index k to the k-th name. The class embeddings are computed once, at
construction, and not counted in `cost`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from inference_scaling import weights
from inference_scaling.config import VerifierConfig
from inference_scaling.verifiers.base import VerifierCost
from inference_scaling.verifiers.clip_score import DEFAULT_CLIP, ClipEncoder
from inference_scaling.verifiers.inception_is import CLASS_BENCHMARKS, score_classes

IMAGENET_CLASSES = "package:imagenet_classes.txt"
TEMPLATE = "a photo of a {name}."
SCORES = ("logit", "log_prob")


@dataclass
class ClipZeroShotConfig(VerifierConfig):
    name: str = "clip_zeroshot"
    weights: str = ""  # unused: `clip` names the model
    clip: str = DEFAULT_CLIP  # transformers CLIP: hub id or local folder
    classes: str = IMAGENET_CLASSES  # class names, one a line, in class-index order (package:NAME or a path)
    class_names: list[str] = field(default_factory=list)  # if given, these names instead of `classes`
    templates: list[str] = field(default_factory=lambda: [TEMPLATE])  # each with one {name}
    score: str = "logit"  # logit | log_prob
    device: Optional[str] = None  # None: the generator's device
    dtype: str = "float32"  # float32 | float16 | bfloat16
    batch_size: int = 32


def read_class_names(path: str = IMAGENET_CLASSES) -> list[str]:
    """Class names, one a line (blank lines skipped), from a file or package:NAME in inference_scaling/assets."""
    file = weights.resolve(path)
    if not file.is_file():
        raise FileNotFoundError(f"class-name file {str(file)!r} (from {path!r}) does not exist")
    return [line.strip() for line in file.read_text().splitlines() if line.strip()]


def class_text_embeddings(encoder: ClipEncoder, names: Sequence[str], templates: Sequence[str] = (TEMPLATE,),
                          batch_size: int = 256) -> Tensor:
    """(K, D) unit text embeddings of the classes: per class the normalised mean of its templates' unit embeddings."""
    if not names or not templates or any("{name}" not in t for t in templates):
        raise ValueError(f"need class names and templates that each contain {{name}}, got {len(names)} names "
                         f"and templates {list(templates)}")
    prompts = [t.format(name=n) for n in names for t in templates]
    with torch.no_grad():
        embeds = torch.cat([F.normalize(encoder.embed_texts(prompts[lo:lo + batch_size]), dim=-1)
                            for lo in range(0, len(prompts), batch_size)])
    return F.normalize(embeds.view(len(names), len(templates), -1).mean(1), dim=-1)


def zero_shot_logits(image_embeds: Tensor, class_embeds: Tensor, logit_scale: float) -> Tensor:
    """(B, K) CLIP logits s · cos(image, class) of image embeddings (B, D) against class embeddings (K, D)."""
    return logit_scale * F.normalize(image_embeds.float(), dim=-1) @ F.normalize(class_embeds.float(), dim=-1).T


class ClipZeroShot:
    """The CLIP zero-shot classifier's logit (or log-probability) of the conditioning class; higher is better."""

    name = "clip_zeroshot"
    benchmarks = CLASS_BENCHMARKS
    set_level = False

    def __init__(self, encoder: ClipEncoder, class_names: Sequence[str], templates: Sequence[str] = (TEMPLATE,),
                 score: str = "logit", batch_size: int = 32):
        if score not in SCORES:
            raise ValueError(f"score={score!r}; choose one of: {', '.join(SCORES)}")
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be >= 1")
        self.encoder = encoder
        self.class_names = list(class_names)
        self.class_embeds = class_text_embeddings(encoder, self.class_names, templates)
        self.logit_scale = float(encoder.model.logit_scale.detach().exp())
        self.score = score
        self.batch_size = batch_size
        self.cost = VerifierCost()

    @classmethod
    def from_config(cls, cfg: ClipZeroShotConfig, device: str = "cpu") -> "ClipZeroShot":
        names = list(cfg.class_names) or read_class_names(cfg.classes)
        encoder = ClipEncoder.from_pretrained(cfg.clip, cfg.device or device, cfg.dtype)
        return cls(encoder, names, list(cfg.templates), cfg.score, cfg.batch_size)

    def logits(self, images: Tensor) -> Tensor:
        """(B, K) zero-shot logits of [-1, 1] images."""
        return zero_shot_logits(self.encoder.embed_images(images), self.class_embeds, self.logit_scale)

    def _score(self, images: Tensor, cond: Tensor) -> Tensor:
        logits = self.logits(images)
        if self.score == "log_prob":
            logits = logits.log_softmax(-1)
        return logits.gather(1, cond.to(logits.device).view(-1, 1)).squeeze(1)

    def __call__(self, images: Tensor, cond: Tensor) -> Tensor:
        return score_classes(self._score, images, cond, self.batch_size, self.cost, len(self.class_names))
