"""The scenes benchmark's networks: FlowMLP on 16×16 scenes, and the learned scene classifier.

The flow model is conditioned on the two condition fields (count token, relation token; see
`inference_scaling.scenes`). The classifier predicts both fields from an image; it is the benchmark's
learned (supervised) verifier and its penultimate features are where FID/KID are computed.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from inference_scaling import scenes, weights
from inference_scaling.models.flow_mlp import EmbeddedFlowModel, FlowMLP, load_flow

FLOW_WEIGHTS = "package:scenes_flow.safetensors"
CLASSIFIER_WEIGHTS = "package:scene_classifier.safetensors"


def new_flow(width: int = 256, hidden: int = 512, depth: int = 3) -> FlowMLP:
    """A fresh scenes flow model; the defaults are the committed `scenes_flow.safetensors`'s size."""
    return FlowMLP(image_shape=scenes.IMAGE_SHAPE, fields=scenes.FIELDS, width=width, hidden=hidden, depth=depth,
                   input_skip=True)


def load(path: str = FLOW_WEIGHTS, device: str = "cpu") -> FlowMLP:
    return load_flow(path, device)


class SceneClassifier(nn.Module):
    """MLP 256 → hidden → features, with a count head (6) and a relation head (2)."""

    def __init__(self, hidden: int = 256, features: int = 128):
        super().__init__()
        pixels = scenes.SIZE * scenes.SIZE
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(pixels, hidden), nn.SiLU(), nn.Linear(hidden, features), nn.SiLU())
        self.count_head = nn.Linear(features, len(scenes.COUNTS))
        self.relation_head = nn.Linear(features, len(scenes.RELATIONS))

    def features(self, x: Tensor) -> Tensor:
        return self.body(x)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        f = self.body(x)
        return self.count_head(f), self.relation_head(f)

    def features_and_logits(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Penultimate features and the 12 joint log-probabilities log p(count) + log p(relation)."""
        f = self.body(x)
        joint = self.count_head(f).log_softmax(-1)[:, :, None] + self.relation_head(f).log_softmax(-1)[:, None, :]
        return f, joint.flatten(1)

    def condition_log_prob(self, x: Tensor, conditions: Tensor, aspect: str = "both") -> Tensor:
        """log p(count) + log p(relation) of each image's condition row (the heads are independent); `aspect`
        "count" or "relation": that head's term alone."""
        count_logits, relation_logits = self(x)
        rows = torch.arange(len(x))
        log_p_count = count_logits.log_softmax(-1)[rows, conditions[:, 0]]
        log_p_relation = relation_logits.log_softmax(-1)[rows, conditions[:, 1]]
        return {"both": log_p_count + log_p_relation, "count": log_p_count, "relation": log_p_relation}[aspect]


def load_classifier(path: str = CLASSIFIER_WEIGHTS, device: str = "cpu") -> SceneClassifier:
    return weights.load_into(SceneClassifier, path).to(device)


class ScenesModel(EmbeddedFlowModel):
    """`model=scenes`: (count, relation) token rows of the scenes grammar."""

    name = "scenes"
    condition_kind = "scenes"
