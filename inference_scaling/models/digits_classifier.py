"""The embedded digits classifier: plays InceptionV3's role for the embedded model.

Its class probabilities are the IS-oracle verifier and the IS evaluation; its penultimate features are
the space FID and KID are computed in. Trained by `experiments/train_digits_classifier.py`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from inference_scaling import weights

DEFAULT_WEIGHTS = "package:digits_classifier.safetensors"


class DigitsClassifier(nn.Module):
    """MLP 64 → hidden → features → 10 logits on model-space images (B, 1, 8, 8) in [-1, 1]."""

    def __init__(self, hidden: int = 256, features: int = 128, num_classes: int = 10):
        super().__init__()
        self.body = nn.Sequential(
            nn.Flatten(), nn.Linear(64, hidden), nn.SiLU(), nn.Linear(hidden, features), nn.SiLU()
        )
        self.head = nn.Linear(features, num_classes)

    def features(self, x: Tensor) -> Tensor:
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))

    def features_and_logits(self, x: Tensor) -> tuple[Tensor, Tensor]:
        f = self.body(x)
        return f, self.head(f)


def load_classifier(path: str = DEFAULT_WEIGHTS, device: str = "cpu") -> DigitsClassifier:
    return weights.load_into(DigitsClassifier, path).to(device)
