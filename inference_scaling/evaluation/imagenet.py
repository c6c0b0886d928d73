"""ImageNet evaluation: IS, FID, precision and recall of a job's selected images in InceptionV3's features.

The network is torch-fidelity's `inception-2015-12-05` TF graph port (the weights of `verifier=inception_is`), the
graph ADM's evaluator (guided-diffusion `evaluations/evaluator.py`) runs too: its 2048-d pool features for FID and
precision/recall, its 1008 unbiased logits for IS. Numbers are comparable to ADM's only through those same weights
(and the same resizing of 256² images to 299², here torch-fidelity's TF1-compatible bilinear resize).

Reference: an .npz with `mu` and `sigma` of the reference set's pool features (ADM's
`VIRTUAL_imagenet256_labeled.npz`, or what `python -m inference_scaling.evaluation.reference_stats` writes) and
optionally `arr_0`, the reference batch of uint8 images (N, H, W, 3) that precision/recall compare against (ADM's file
holds 10,000). FID is computed from statistics in float64. Images stream from the job's chunk files a batch at a
time; only the features (N × 2048 floats) are held.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from inference_scaling.evaluation.fidelity import prc_batch_size
from inference_scaling.search.base import batches
from inference_scaling.store import as_image_set
from inference_scaling.verifiers.fid_oracle import feature_statistics, frechet_distance
from inference_scaling.verifiers.inception_is import load_inception, to_uint8_rgb

PRC_NEIGHBOURS = 3  # ADM's and torch-fidelity's k for the nearest-neighbour radii


class ReferenceError(ValueError):
    """A reference file that cannot serve the evaluation."""


def read_reference(path: str) -> dict:
    """`mu`, `sigma` (float64 tensors) and, if the file holds it, `images` (uint8, (N, 3, H, W)) of a reference .npz."""
    try:
        data = np.load(path)
    except (OSError, ValueError) as err:
        raise ReferenceError(f"benchmark.reference={path!r} cannot be read as an .npz ({type(err).__name__})") from None
    with data:
        if "mu" not in data or "sigma" not in data:
            raise ReferenceError(f"benchmark.reference={path!r} needs arrays 'mu' and 'sigma' (ADM's "
                                 f"VIRTUAL_imagenet256_labeled.npz layout); it has: {', '.join(sorted(data)) or 'none'}")
        reference = {"mu": torch.from_numpy(data["mu"]).double(), "sigma": torch.from_numpy(data["sigma"]).double()}
        if "arr_0" in data:
            batch = data["arr_0"]
            if batch.dtype != np.uint8 or batch.ndim != 4 or batch.shape[-1] != 3:
                raise ReferenceError(f"benchmark.reference={path!r}: arr_0 must be uint8 images (N, H, W, 3), got "
                                     f"{batch.dtype} {batch.shape}")
            reference["images"] = torch.from_numpy(batch).permute(0, 3, 1, 2)
    d = len(reference["mu"])
    if reference["mu"].ndim != 1 or reference["sigma"].shape != (d, d):
        raise ReferenceError(f"benchmark.reference={path!r}: mu {tuple(reference['mu'].shape)} and sigma "
                             f"{tuple(reference['sigma'].shape)} must be (D,) and (D, D)")
    return reference


def inception_score(logits: Tensor, splits: int) -> tuple[float, float]:
    """IS (mean and standard deviation over `splits` equal parts, the remainder dropped as torch-fidelity does)
    from InceptionV3's unbiased logits (N, 1008): exp E[KL(p(y|x) ‖ p(y))], in float64."""
    p = logits.double().softmax(dim=1)
    size = len(p) // splits
    if size < 1:
        raise ValueError(f"IS with {splits} splits needs at least {splits} images, got {len(p)}")
    scores = []
    for k in range(splits):
        part = p[k * size:(k + 1) * size]
        kl = (part * (part.clamp_min(1e-30).log() - part.mean(0, keepdim=True).clamp_min(1e-30).log())).sum(1)
        scores.append(kl.mean().exp())
    scores = torch.stack(scores)
    return float(scores.mean()), float(scores.std(unbiased=False))


def precision_recall(generated: Tensor, real: Tensor) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) with k = 3, as torch-fidelity computes them."""
    from torch_fidelity.metric_prc import calculate_precision_recall_part

    return calculate_precision_recall_part(generated.float(), real.float(), PRC_NEIGHBOURS,
                                           prc_batch_size(max(len(generated), len(real))))


class InceptionEvaluator:
    """Pool features and unbiased logits of [-1, 1] images (or uint8 images), a batch at a time."""

    def __init__(self, weights: str = "", device: str = "cpu", batch_size: int = 100):
        self.net = load_inception(weights, ("2048", "logits_unbiased"), device)
        self.device, self.batch_size = device, batch_size

    @torch.no_grad()
    def __call__(self, images) -> tuple[Tensor, Tensor]:
        """`images`: [-1, 1] images (a tensor or an ImageSet, streamed) or a uint8 tensor (a reference batch)."""
        uint8 = isinstance(images, Tensor) and images.dtype == torch.uint8
        pool, logits = [], []
        for chunk in ([images] if uint8 else as_image_set(images).batches()):
            for part in batches(len(chunk), self.batch_size):
                x = chunk[part]
                pixels = x.to(self.device) if x.dtype == torch.uint8 else to_uint8_rgb(x, self.device)
                features, unbiased = self.net(pixels)
                pool.append(features.float().cpu())
                logits.append(unbiased.float().cpu())
        return torch.cat(pool), torch.cat(logits)


def imagenet_metrics(images, reference: dict | None, weights: str = "", device: str = "cpu", batch_size: int = 100,
                     is_splits: int = 10) -> dict[str, float]:
    """IS always; FID against the reference statistics (from 2 images on) and precision/recall against its batch
    (from k + 1 = 4 images in each set), where the reference has them."""
    evaluate = InceptionEvaluator(weights, device, batch_size)
    pool, logits = evaluate(images)
    metrics = dict(zip(("is", "is_std"), inception_score(logits, min(is_splits, len(logits)))))
    if reference is not None:
        if reference["mu"].shape != (pool.shape[1],):
            raise ReferenceError(f"the reference statistics are {len(reference['mu'])}-d, InceptionV3's pool features "
                                 f"{pool.shape[1]}-d")
        if len(pool) >= 2:
            metrics["fid"] = frechet_distance(*feature_statistics(pool), reference["mu"], reference["sigma"])
        if "images" in reference and min(len(pool), len(reference["images"])) > PRC_NEIGHBOURS:
            real, _ = evaluate(reference["images"])
            metrics["precision"], metrics["recall"] = precision_recall(pool, real)
    return metrics
