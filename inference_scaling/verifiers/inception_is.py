"""IS-oracle verifier (Ma et al. 2025, §4.1): InceptionV3's probability of the conditioning ImageNet class.

The network is torch-fidelity's `FeatureExtractorInceptionV3`, the TF Inception graph `inception-2015-12-05` that
the Inception Score and FID are computed with (Salimans et al. 2016; Heusel et al. 2017), so the oracle favours
exactly what the IS evaluation rewards. It takes uint8 images (B, 3, H, W) and resizes them to 299×299 itself,
with TF1's bilinear resampling. Its score is softmax(logits_unbiased)[k]: the 1008 logits without the fc bias,
softmaxed over all 1008 outputs, as torch-fidelity's IS does.

Class indices. The graph's 1008 outputs are NOT the 1000 ImageNet indices shifted by one: its label map
(`imagenet_2012_challenge_label_map_proto.pbtxt`, shipped with the graph) assigns outputs 1–1000 to the synsets in
another order (tench, ImageNet index 0 → output 449; giant panda, 388 → 169); outputs 0 and 1001–1007 name no
class. `assets/inception_2015_12_05_classes.json` holds that map per standard ImageNet index (synsets sorted,
the order of `assets/imagenet_classes.txt` and of class-conditional ImageNet models such as DiT/SiT).

Weights: torch-fidelity's converted file `weights-inception-2015-12-05-6726825d.pth` (or the same tensors as
.safetensors); with `weights` "" it is downloaded once into the torch hub cache. No file is ever unpickled: the
state dict is read here with `torch.load(weights_only=True)` (or safetensors), refused unless it is a plain state
dict of tensors, and handed to torch-fidelity's network, which loads it strictly; torch-fidelity's own reading of
the file (`torch.load(weights_only=False)`, a full unpickle) never runs.

The helpers at the bottom (class-index inputs, batched scoring) serve all class-conditional verifiers.
"""

from __future__ import annotations

import json
import pickle
import time
from unittest import mock
from dataclasses import dataclass
from importlib import resources
from typing import Callable, Optional

import torch
from torch import Tensor

from inference_scaling.config import VerifierConfig
from inference_scaling.datasets import to_uint8
from inference_scaling.verifiers.base import VerifierCost
from inference_scaling.weights import WeightsError

# Benchmarks whose conditions are class indices (B,): the ones class-conditional verifiers can score.
CLASS_BENCHMARKS = ("digits", "imagenet")  # benchmarks whose conditions are class indices
TF_CLASS_MAP = "inception_2015_12_05_classes.json"
INCEPTION_DTYPES = ("float32", "float64")  # the internal dtypes torch-fidelity's Inception accepts


@dataclass
class InceptionISConfig(VerifierConfig):
    name: str = "inception_is"
    weights: str = ""  # torch-fidelity's weights-inception-2015-12-05-6726825d.pth; "": download it once
    device: Optional[str] = None  # None: the generator's device
    dtype: str = "float32"  # float32 | float64 (Inception's internal dtype)
    batch_size: int = 64


def tf_class_index() -> Tensor:
    """(1000,) output of the TF Inception graph for each standard ImageNet class index."""
    doc = json.loads((resources.files("inference_scaling") / "assets" / TF_CLASS_MAP).read_text())
    return torch.tensor(doc["tf_index"], dtype=torch.long)


def inception_state(weights: str = "") -> dict[str, Tensor]:
    """The Inception state dict, read without unpickling: a local (or hf:) .pth through `torch.load(weights_only=True)`,
    a .safetensors file, or, with `weights` "", torch-fidelity's release downloaded once into the torch hub cache (the
    file torch-fidelity itself would download) and read the same way."""
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

    from inference_scaling.verifiers.aesthetic import load_state_file

    try:
        if not weights:
            return torch.hub.load_state_dict_from_url(URL_INCEPTION_V3, map_location="cpu", progress=False,
                                                      weights_only=True)
        return load_state_file(weights)
    except WeightsError:
        raise
    except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
        raise WeightsError(f"weights {weights or URL_INCEPTION_V3!r} are not a plain state dict of tensors: "
                           f"{str(err).strip().splitlines()[0][:200]}") from None


def load_inception(weights: str = "", features: tuple[str, ...] = ("logits_unbiased",), device: str = "cpu",
                   dtype: str = "float32"):
    """torch-fidelity's InceptionV3 with `features` outputs and the weights of `inception_state(weights)`."""
    import torch_fidelity.feature_extractor_inceptionv3 as tf_inception

    if dtype not in INCEPTION_DTYPES:
        raise ValueError(f"dtype={dtype!r}: torch-fidelity's Inception runs in one of {', '.join(INCEPTION_DTYPES)}")
    state = inception_state(weights)
    # Its constructor takes no state dict: it unpickles a path or downloads. Answer its download with the tensors
    # read above, so it never opens a file; it then loads them with its strict `load_state_dict`.
    try:
        with mock.patch.object(tf_inception, "load_state_dict_from_url", lambda *args, **kwargs: state):
            net = tf_inception.FeatureExtractorInceptionV3("inception-v3-compat", list(features),
                                                           feature_extractor_internal_dtype=dtype)
    except RuntimeError as err:
        raise WeightsError(f"weights {weights!r} do not fit torch-fidelity's InceptionV3: "
                           f"{str(err).strip().splitlines()[-1][:300]}") from None
    return net.to(device).eval()


def to_uint8_rgb(images: Tensor, device: str) -> Tensor:
    """[-1, 1] images (B, 3, H, W), or grey (B, 1, H, W) repeated to RGB → uint8 pixels on `device`."""
    pixels = to_uint8(images.to(device))
    return pixels.expand(-1, 3, -1, -1) if pixels.shape[1] == 1 else pixels


class InceptionIS:
    """p(y = condition | image) under InceptionV3 (softmax over its 1008 unbiased logits); higher is better."""

    name = "inception_is"
    benchmarks = CLASS_BENCHMARKS
    set_level = False

    def __init__(self, net, device: str = "cpu", batch_size: int = 64):
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be >= 1")
        self.net = net.to(device).eval()
        self.device = device
        self.batch_size = batch_size
        self.class_index = tf_class_index().to(device)
        self.cost = VerifierCost()

    @classmethod
    def from_pretrained(cls, weights: str = "", device: str = "cpu", dtype: str = "float32",
                        batch_size: int = 64) -> "InceptionIS":
        return cls(load_inception(weights, ("logits_unbiased",), device, dtype), device, batch_size)

    @classmethod
    def from_config(cls, cfg: InceptionISConfig, device: str = "cpu") -> "InceptionIS":
        return cls.from_pretrained(cfg.weights, cfg.device or device, cfg.dtype, cfg.batch_size)

    def probabilities(self, images: Tensor) -> Tensor:
        """(B, 1008) softmax of the unbiased logits of [-1, 1] images."""
        (logits,) = self.net(to_uint8_rgb(images, self.device))
        return logits.double().softmax(-1)

    def _score(self, images: Tensor, cond: Tensor) -> Tensor:
        probs = self.probabilities(images)
        return probs.gather(1, self.class_index[cond.to(self.device)].view(-1, 1)).squeeze(1)

    def __call__(self, images: Tensor, cond: Tensor) -> Tensor:
        return score_classes(self._score, images, cond, self.batch_size, self.cost, len(self.class_index))


# ---------- shared by the class-conditional verifiers ----------

def check_class_inputs(images: Tensor, cond: Tensor, num_classes: int) -> None:
    """Images (B, 3, H, W) or grey (B, 1, H, W), and one class index in 0 … num_classes − 1 per image."""
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be (B, 3, H, W) RGB or (B, 1, H, W) grey in [-1, 1], "
                         f"got shape {tuple(images.shape)}")
    if not isinstance(cond, Tensor) or cond.ndim != 1 or cond.is_floating_point():
        raise TypeError("this verifier needs class indices, an integer tensor (B,), one per image")
    if len(cond) != len(images):
        raise ValueError(f"{len(images)} images but {len(cond)} class indices")
    if len(cond) and (int(cond.min()) < 0 or int(cond.max()) >= num_classes):
        raise ValueError(f"class indices must lie in 0..{num_classes - 1}, got {int(cond.min())}..{int(cond.max())}")


def score_classes(score: Callable[[Tensor, Tensor], Tensor], images: Tensor, cond: Tensor, batch_size: int,
                  cost: VerifierCost, num_classes: int) -> Tensor:
    """Scores (B,) float32 on the CPU, in input order, from `score` run on chunks of at most `batch_size` images;
    each chunk counts as one forward pass in `cost`."""
    check_class_inputs(images, cond, num_classes)
    start = time.perf_counter()
    out = []
    with torch.no_grad():
        for lo in range(0, len(images), batch_size):
            out.append(score(images[lo:lo + batch_size], cond[lo:lo + batch_size]).float().cpu())
            cost.calls += 1
    cost.images += len(images)
    cost.seconds += time.perf_counter() - start
    return torch.cat(out) if out else torch.empty(0)
