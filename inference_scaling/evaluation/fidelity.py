"""IS, FID, KID and precision/recall with torch-fidelity, in an embedded classifier's feature space.

The embedded classifiers play InceptionV3's role: IS from their logits, FID/KID/PRC from their penultimate
features. Each is registered once as a torch-fidelity feature extractor (`digits-classifier`,
`scene-classifier`); inputs are uint8 tensors (B, 1, H, W), as torch-fidelity expects.
"""

from __future__ import annotations

import torch
import torch_fidelity
from torch import Tensor
from torch.utils.data import Dataset
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor

from inference_scaling.datasets import from_uint8, to_uint8
from inference_scaling.models import digits_classifier, scenes as scene_models
from inference_scaling.store import as_image_set


class _ClassifierExtractor(FeatureExtractorBase):
    """Features 'hidden' (penultimate layer) and 'logits_unbiased' of a classifier with `features_and_logits`."""

    default_weights: str
    input_shape: tuple[int, ...]

    def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
        super().__init__(name, features_list)
        self.net = self.load(feature_extractor_weights_path or self.default_weights)

    @staticmethod
    def load(path: str) -> torch.nn.Module:
        raise NotImplementedError

    @staticmethod
    def get_provided_features_list():
        return "logits_unbiased", "hidden"

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return {"isc": "logits_unbiased", "fid": "hidden", "kid": "hidden", "prc": "hidden"}[metric]

    @staticmethod
    def can_be_compiled():
        return False

    @classmethod
    def get_dummy_input_for_compile(cls):
        return torch.zeros(1, *cls.input_shape, dtype=torch.uint8)

    def forward(self, x):
        assert x.dtype == torch.uint8 and tuple(x.shape[1:]) == self.input_shape, \
            f"expected uint8 (B, {self.input_shape}), got {x.dtype} {tuple(x.shape)}"
        hidden, logits = self.net.features_and_logits(from_uint8(x))
        features = {"logits_unbiased": logits, "hidden": hidden}
        return tuple(features[name] for name in self.features_list)


class DigitsFeatureExtractor(_ClassifierExtractor):
    default_weights = digits_classifier.DEFAULT_WEIGHTS
    input_shape = (1, 8, 8)

    @staticmethod
    def load(path):
        return digits_classifier.load_classifier(path)


class SceneFeatureExtractor(_ClassifierExtractor):
    """Logits are the 12 joint (count, relation) log-probabilities."""

    default_weights = scene_models.CLASSIFIER_WEIGHTS
    input_shape = (1, 16, 16)

    @staticmethod
    def load(path):
        return scene_models.load_classifier(path)


EXTRACTORS = {"digits-classifier": DigitsFeatureExtractor, "scene-classifier": SceneFeatureExtractor}
for _name, _cls in EXTRACTORS.items():
    if _name not in FEATURE_EXTRACTORS_REGISTRY:
        register_feature_extractor(_name, _cls)


class _Images(Dataset):
    """uint8 pixels of an ImageSet, converted one chunk at a time (torch-fidelity reads them in order)."""

    def __init__(self, images):
        self.images = as_image_set(images)
        self._pixels: tuple[int, Tensor] | None = None

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        j, offset = self.images.locate(i)
        if self._pixels is None or self._pixels[0] != j:
            self._pixels = (j, to_uint8(self.images.chunk(j).cpu()))
        return self._pixels[1][offset]


NAMES = {"inception_score_mean": "is", "frechet_inception_distance": "fid", "kernel_inception_distance_mean": "kid",
         "kernel_inception_distance_std": "kid_std", "precision": "precision", "recall": "recall"}


PRC_BLOCK = 2**25  # distances (float32, 128 MiB) per block of torch-fidelity's nearest-neighbour search
PRC_DEFAULT_BATCH = 10_000  # torch-fidelity's own prc_batch_size


def prc_batch_size(n: int) -> int:
    """Rows per block of precision/recall's distances (a block is rows × n): torch-fidelity's default while that
    stays within PRC_BLOCK floats (sets up to 3,355 samples, computed exactly as torch-fidelity's default does),
    fewer rows for larger sets, so a block holds at most PRC_BLOCK floats instead of 10,000·n (2 GB at n = 50,000)."""
    return max(256, min(PRC_DEFAULT_BATCH, PRC_BLOCK // max(n, 1)))


def fidelity_metrics(images, reference, extractor: str = "digits-classifier", weights: str | None = None,
                     isc: bool = True, kid_subset_size: int = 500) -> dict[str, float]:
    """IS of `images` (if `isc`), and FID, KID, precision, recall against `reference` (both in [-1, 1]; tensors or
    ImageSets, streamed a chunk at a time into torch-fidelity's feature extraction).

    IS uses one split over all images (torch-fidelity's default of 10 splits would score 100-image splits).
    """
    images, reference = _Images(images), _Images(reference)
    subset = min(kid_subset_size, len(images), len(reference))
    metrics = torch_fidelity.calculate_metrics(
        input1=images, input2=reference, cuda=False, batch_size=1024,
        isc=isc, fid=True, kid=True, prc=True, feature_extractor=extractor,
        feature_extractor_weights_path=weights, kid_subset_size=subset,
        isc_splits=1, samples_shuffle=False, cache=False, save_cpu_ram=True, verbose=False,
        prc_batch_size=prc_batch_size(max(len(images), len(reference))),
    )
    return {short: float(metrics[key]) for key, short in NAMES.items() if key in metrics}


def class_hits(images, labels: Tensor, classifier_weights: str = digits_classifier.DEFAULT_WEIGHTS) -> Tensor:
    """Per image (a tensor or an ImageSet, a chunk at a time): does the embedded digits classifier assign it to its
    conditioning class."""
    net = digits_classifier.load_classifier(classifier_weights)
    hits, start = [], 0
    with torch.no_grad():
        for chunk in as_image_set(images).batches():
            hits.append(net(chunk.cpu()).argmax(-1) == labels[start:start + len(chunk)].cpu())
            start += len(chunk)
    return torch.cat(hits)

