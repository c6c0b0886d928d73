"""IS, FID, KID and precision/recall with torch-fidelity, in the embedded digits classifier's feature space.

The classifier plays InceptionV3's role: IS from its logits, FID/KID/PRC from its penultimate features.
It is registered once as the torch-fidelity feature extractor `digits-classifier`; inputs are uint8 tensors
(B, 1, 8, 8) as torch-fidelity expects.
"""

from __future__ import annotations

import torch
import torch_fidelity
from torch import Tensor
from torch.utils.data import Dataset
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor

from inference_scaling.datasets import from_uint8, to_uint8
from inference_scaling.models.digits_classifier import DEFAULT_WEIGHTS, load_classifier

EXTRACTOR = "digits-classifier"


class DigitsFeatureExtractor(FeatureExtractorBase):
    """torch-fidelity feature extractor over the embedded classifier: features 'logits_unbiased', 'hidden'."""

    def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
        super().__init__(name, features_list)
        self.net = load_classifier(feature_extractor_weights_path or DEFAULT_WEIGHTS)

    @staticmethod
    def get_provided_features_list():
        return "logits_unbiased", "hidden"

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return {"isc": "logits_unbiased", "fid": "hidden", "kid": "hidden", "prc": "hidden"}[metric]

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return torch.zeros(1, 1, 8, 8, dtype=torch.uint8)

    def forward(self, x):
        assert x.dtype == torch.uint8 and x.shape[1:] == (1, 8, 8), f"expected uint8 (B, 1, 8, 8), got {x.dtype} {tuple(x.shape)}"
        hidden, logits = self.net.features_and_logits(from_uint8(x))
        features = {"logits_unbiased": logits, "hidden": hidden}
        return tuple(features[name] for name in self.features_list)


if EXTRACTOR not in FEATURE_EXTRACTORS_REGISTRY:
    register_feature_extractor(EXTRACTOR, DigitsFeatureExtractor)


class _Images(Dataset):
    def __init__(self, images: Tensor):
        self.pixels = to_uint8(images.cpu())

    def __len__(self):
        return len(self.pixels)

    def __getitem__(self, i):
        return self.pixels[i]


def fidelity_metrics(images: Tensor, reference: Tensor, kid_subset_size: int = 500,
                     classifier_weights: str = DEFAULT_WEIGHTS) -> dict[str, float]:
    """IS of `images`, and FID, KID, precision, recall of `images` against `reference` (both in [-1, 1])."""
    subset = min(kid_subset_size, len(images), len(reference))
    metrics = torch_fidelity.calculate_metrics(
        input1=_Images(images), input2=_Images(reference), cuda=False, batch_size=1024,
        isc=True, fid=True, kid=True, prc=True, feature_extractor=EXTRACTOR,
        feature_extractor_weights_path=classifier_weights, kid_subset_size=subset,
        isc_splits=1, samples_shuffle=False, cache=False, save_cpu_ram=True, verbose=False,
    )
    names = {"inception_score_mean": "is", "frechet_inception_distance": "fid",
             "kernel_inception_distance_mean": "kid", "kernel_inception_distance_std": "kid_std",
             "precision": "precision", "recall": "recall"}
    return {short: float(metrics[key]) for key, short in names.items()}


def class_accuracy(images: Tensor, labels: Tensor, classifier_weights: str = DEFAULT_WEIGHTS) -> float:
    """Fraction of `images` the embedded classifier assigns to their conditioning class."""
    net = load_classifier(classifier_weights)
    with torch.no_grad():
        return (net(images.cpu()).argmax(-1) == labels.cpu()).float().mean().item()
