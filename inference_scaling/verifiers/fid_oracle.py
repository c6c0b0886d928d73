"""FID-oracle verifier (Ma et al. 2025, §4.1): pick, per condition, the candidate that most lowers the FID of the
selected set against reference statistics.

FID (Heusel et al. 2017) between Gaussians fitted to features:
    FID = |μ − μ_r|² + tr Σ + tr Σ_r − 2 tr (Σ Σ_r)^{1/2}.
`frechet_distance` computes the last term as the sum of square roots of the eigenvalues of the symmetric PSD matrix
Σ_r^{1/2} Σ Σ_r^{1/2} (similar to Σ Σ_r, so the same trace), with Σ_r^{1/2} from an eigendecomposition and
rounding-level negative eigenvalues clamped to 0. pytorch-fid instead takes `scipy.linalg.sqrtm` of the
non-symmetric product, which can return complex parts and needs an ε-offset retry on singular covariances;
torch-fidelity sums the square roots of `eigvals` of the product. All three agree on well-conditioned inputs.

The oracle is set-level: a selection's FID depends on every condition's pick. `greedy_fid_search` does coordinate
descent: start from `init` (default: every condition's candidate 0), visit the conditions in `order` (default:
condition order) and give each the candidate that minimises the FID of the whole selection with the other picks
held fixed (a pick changes only on strict improvement, so the FID never rises); repeat for up to `passes` passes,
stopping early once a pass changes nothing. Per visit it evaluates all N candidates of a condition exactly, in one
batch: the selection's statistics are running sums, and the trace term is read off the eigenvalues of
(N, D, D) matrices, O(N·D³) time and N·D² memory per visit. For the digits features (D = 128) a visit takes about
2 ms on one CPU core at N = 4; for Inception (D = 2048) one 2048² eigendecomposition takes 0.6 s on one CPU core,
so C conditions cost about C·passes·N times that: the real-scale oracle is expensive, as an oracle may be.

Features: the embedded digits classifier's penultimate ('hidden') features, the space the digits benchmark's FID is
measured in (`features: digits`), or InceptionV3's 2048-d pool features via torch-fidelity (`features: inception`).
Reference statistics: an .npz with `mu` (D,) and `sigma` (D, D) (the layout torch-fidelity and pytorch-fid use;
`python -m inference_scaling.evaluation.reference_stats` writes one); for the digits features it defaults to all
1,797 digits.

As a verifier, one call must hold all candidates of every condition it selects for, each condition with the same
number N of them; the score of candidate j of condition c is −FID of the selection with c's pick replaced by j,
computed when c was last visited (exact for all candidates once a pass changes nothing), so each condition's chosen
candidate scores highest. The FID is over the conditions of the call: the true oracle needs all conditions in one
call (a search's `max_batch_size` of at least C·N).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from inference_scaling.config import VerifierConfig
from inference_scaling.datasets import load_digits
from inference_scaling.models.digits_classifier import DEFAULT_WEIGHTS, load_classifier
from inference_scaling.verifiers.base import VerifierCost
from inference_scaling.verifiers.inception_is import CLASS_BENCHMARKS, load_inception, to_uint8_rgb

FEATURES = ("digits", "inception")


@dataclass
class FidOracleConfig(VerifierConfig):
    name: str = "fid_oracle"
    weights: str = ""  # the feature network's: "" = the committed digits classifier / torch-fidelity's Inception
    features: str = "digits"  # digits | inception
    reference: str = ""  # .npz with mu, sigma; "": all 1,797 digits (features=digits only)
    passes: int = 2  # coordinate-descent passes over the conditions (stops early when a pass changes nothing)
    device: Optional[str] = None  # None: the generator's device
    batch_size: int = 256  # images per feature forward pass


# ---------- statistics and the Fréchet distance ----------

def feature_statistics(features: Tensor) -> tuple[Tensor, Tensor]:
    """Mean (D,) and unbiased covariance (D, D), float64, of features (N, D), as numpy's `cov(rowvar=False)`."""
    assert features.ndim == 2 and len(features) >= 2, f"need features (N >= 2, D), got {tuple(features.shape)}"
    x = features.double()
    mu = x.mean(0)
    centred = x - mu
    return mu, centred.T @ centred / (len(x) - 1)


def psd_sqrt(sigma: Tensor) -> Tensor:
    """Symmetric square root of a covariance via its eigendecomposition (negative rounding eigenvalues → 0)."""
    values, vectors = torch.linalg.eigh((sigma + sigma.T) / 2)
    return (vectors * values.clamp(min=0).sqrt()) @ vectors.T


def frechet_distance(mu1: Tensor, sigma1: Tensor, mu2: Tensor, sigma2: Tensor) -> float:
    """FID between N(mu1, sigma1) and N(mu2, sigma2), in float64."""
    mu1, sigma1, mu2, sigma2 = (torch.as_tensor(t, dtype=torch.float64) for t in (mu1, sigma1, mu2, sigma2))
    root2 = psd_sqrt(sigma2)
    inner = root2 @ sigma1 @ root2
    tr_sqrt = torch.linalg.eigvalsh((inner + inner.T) / 2).clamp(min=0).sqrt().sum()
    diff = mu1 - mu2
    return float(diff @ diff + sigma1.trace() + sigma2.trace() - 2 * tr_sqrt)


def load_reference(path: str) -> tuple[Tensor, Tensor]:
    """`mu` (D,) and `sigma` (D, D) of an .npz (torch-fidelity / pytorch-fid layout) as float64 tensors."""
    with np.load(path) as data:
        if "mu" not in data or "sigma" not in data:
            raise ValueError(f"reference statistics {path!r} need arrays 'mu' and 'sigma', found {sorted(data)}")
        mu, sigma = torch.from_numpy(data["mu"]).double(), torch.from_numpy(data["sigma"]).double()
    if mu.ndim != 1 or sigma.shape != (len(mu), len(mu)):
        raise ValueError(f"reference statistics {path!r}: mu {tuple(mu.shape)} and sigma {tuple(sigma.shape)} "
                         f"must be (D,) and (D, D)")
    return mu, sigma


# ---------- greedy selection ----------

@dataclass
class FidSelection:
    chosen: Tensor  # (C,) candidate index picked per condition
    fid: float  # FID of the chosen set against the reference
    candidate_fid: Tensor  # (C, N) FID with condition c's pick replaced by j, as of c's last visit
    passes: int  # passes run


def greedy_fid_search(candidate_features: Tensor, mu_ref: Tensor, sigma_ref: Tensor,
                      order: Optional[Sequence[int]] = None, passes: int = 2,
                      init: Optional[Tensor] = None) -> FidSelection:
    """Coordinate descent on the FID of a selection (one candidate per condition) from features (C, N, D);
    runs in float64 on the features' device. See the module docstring for the order and stopping rule."""
    assert candidate_features.ndim == 3, f"candidate_features must be (C, N, D), got {tuple(candidate_features.shape)}"
    c, n, d = candidate_features.shape
    assert c >= 2, "the FID of a selection needs at least 2 conditions (a covariance)"
    assert passes >= 1, f"passes={passes} must be >= 1"
    device = candidate_features.device
    mu_ref, sigma_ref = mu_ref.to(device, torch.float64), sigma_ref.to(device, torch.float64)
    assert mu_ref.shape == (d,) and sigma_ref.shape == (d, d), \
        f"reference statistics {tuple(mu_ref.shape)}, {tuple(sigma_ref.shape)} do not match feature width {d}"
    # FID is invariant to shifting both sets: centre on μ_r (μ_r becomes 0; less cancellation in the sums).
    feats = candidate_features.double() - mu_ref
    # Features g = f Σ_r^{1/2}: cov(g) = Σ_r^{1/2} Σ Σ_r^{1/2}, whose eigenvalues give the trace term.
    white = feats @ psd_sqrt(sigma_ref)
    tr_ref = sigma_ref.trace()
    order = list(range(c)) if order is None else [int(i) for i in order]
    assert sorted(order) == list(range(c)), "order must be a permutation of the condition positions"
    chosen = torch.zeros(c, dtype=torch.long, device=device) if init is None else init.to(device).long().clone()
    candidate_fid = torch.full((c, n), float("nan"), dtype=torch.float64, device=device)
    rows = torch.arange(c, device=device)
    if n == 1:  # nothing to choose: the selection's FID
        fid = frechet_distance(*feature_statistics(feats[:, 0]), torch.zeros_like(mu_ref), sigma_ref)
        return FidSelection(chosen.cpu(), fid, torch.full((c, 1), fid, dtype=torch.float64), 0)

    done = 0
    for done in range(1, passes + 1):
        x, g = feats[rows, chosen], white[rows, chosen]  # the selection, resummed each pass
        s, sq, sg, p = x.sum(0), (x * x).sum(), g.sum(0), g.T @ g
        changed = False
        for k in order:
            old_x, old_g = x[k], g[k]
            # Sums with pick k replaced by each candidate j (N rows at once).
            s_j = s - old_x + feats[k]
            sq_j = sq - old_x @ old_x + (feats[k] ** 2).sum(-1)
            sg_j = sg - old_g + white[k]
            p_j = p - torch.outer(old_g, old_g) + white[k, :, :, None] * white[k, :, None, :]
            mu_j, mug_j = s_j / c, sg_j / c
            tr_sigma = (sq_j - c * (mu_j ** 2).sum(-1)) / (c - 1)
            cov_white = (p_j - c * mug_j[:, :, None] * mug_j[:, None, :]) / (c - 1)
            tr_sqrt = torch.linalg.eigvalsh(cov_white).clamp(min=0).sqrt().sum(-1)
            fid = (mu_j ** 2).sum(-1) + tr_sigma + tr_ref - 2 * tr_sqrt
            candidate_fid[k] = fid
            best = int(fid.argmin())
            if fid[best] < fid[chosen[k]]:
                new_x, new_g = feats[k, best], white[k, best]
                s, sq, sg = s - old_x + new_x, sq - old_x @ old_x + new_x @ new_x, sg - old_g + new_g
                p = p - torch.outer(old_g, old_g) + torch.outer(new_g, new_g)
                chosen[k] = best  # x[k], g[k] go stale: k is not visited again this pass
                changed = True
        if not changed:
            break
    mu_sel, sigma_sel = feature_statistics(feats[rows, chosen])
    fid = frechet_distance(mu_sel, sigma_sel, torch.zeros_like(mu_ref), sigma_ref)
    return FidSelection(chosen.cpu(), fid, candidate_fid.cpu(), done)


def greedy_fid_selection(candidate_features: Tensor, mu_ref: Tensor, sigma_ref: Tensor,
                         order: Optional[Sequence[int]] = None, passes: int = 2) -> Tensor:
    """(C,) the candidate per condition that greedy coordinate descent on the selection's FID picks."""
    return greedy_fid_search(candidate_features, mu_ref, sigma_ref, order, passes).chosen


# ---------- feature networks ----------

class DigitsFeatures:
    """The digits classifier's penultimate ('hidden') features of (B, 1, 8, 8) images, clipped to [-1, 1] as saved
    images and the evaluation's uint8 pixels are: the space the digits benchmark measures FID/KID in
    (torch-fidelity extractor `digits-classifier`, layer 'hidden'; it also rounds to 256 levels, a ~1e-3 effect)."""

    def __init__(self, weights: str = DEFAULT_WEIGHTS, device: str = "cpu"):
        self.net = load_classifier(weights or DEFAULT_WEIGHTS, device).eval()
        self.device = device

    @torch.no_grad()
    def __call__(self, images: Tensor) -> Tensor:
        if tuple(images.shape[1:]) != (1, 8, 8):
            raise ValueError(f"the digits classifier reads (B, 1, 8, 8) images, got {tuple(images.shape)}")
        return self.net.features(images.to(self.device).clamp(-1, 1)).float()


class InceptionFeatures:
    """InceptionV3's 2048-d pool features (torch-fidelity's FID layer) of [-1, 1] images, grey repeated to RGB."""

    def __init__(self, net, device: str = "cpu"):
        self.net = net.to(device).eval()
        self.device = device

    @classmethod
    def from_pretrained(cls, weights: str = "", device: str = "cpu", dtype: str = "float32") -> "InceptionFeatures":
        return cls(load_inception(weights, ("2048",), device, dtype), device)

    def __call__(self, images: Tensor) -> Tensor:
        (features,) = self.net(to_uint8_rgb(images, self.device))
        return features.float()


def digits_reference(weights: str = DEFAULT_WEIGHTS) -> tuple[Tensor, Tensor]:
    """Statistics of all 1,797 scikit-learn digits in the digits classifier's features."""
    with torch.no_grad():
        return feature_statistics(DigitsFeatures(weights)(load_digits()[0]))


# ---------- the verifier ----------

def condition_groups(cond: Tensor) -> Tensor:
    """(B,) group ids when none are given: consecutive runs of equal conditions, the layout of a search that
    scores the candidates of each condition together (two adjacent conditions with equal rows would merge)."""
    flat = cond.reshape(len(cond), -1)
    starts = torch.ones(len(cond), dtype=torch.bool)
    starts[1:] = (flat[1:] != flat[:-1]).any(-1).cpu()
    return starts.long().cumsum(0) - 1


class FidOracle:
    """−FID of the selection with each candidate swapped in; each condition's greedy pick scores highest."""

    name = "fid_oracle"
    benchmarks = CLASS_BENCHMARKS
    set_level = True  # a call must hold all candidates of each of its conditions, and its FID spans the call
    needs_all_conditions = True  # ... so the search scores every condition's candidates in one call

    def __init__(self, features: Callable[[Tensor], Tensor], mu_ref: Tensor, sigma_ref: Tensor, passes: int = 2,
                 batch_size: int = 256, device: str = "cpu"):
        if passes < 1 or batch_size < 1:
            raise ValueError(f"passes={passes} and batch_size={batch_size} must be >= 1")
        self.features = features
        self.mu_ref, self.sigma_ref = mu_ref.double(), sigma_ref.double()
        self.passes = passes
        self.batch_size = batch_size
        self.device = device
        self.cost = VerifierCost()
        self.last_selection: Optional[FidSelection] = None  # the latest call's selection (chosen, FID)

    @classmethod
    def from_config(cls, cfg: FidOracleConfig, device: str = "cpu") -> "FidOracle":
        if cfg.features not in FEATURES:
            raise ValueError(f"features={cfg.features!r}; choose one of: {', '.join(FEATURES)}")
        dev = cfg.device or device
        if cfg.reference:
            mu, sigma = load_reference(cfg.reference)
        elif cfg.features == "digits":
            mu, sigma = digits_reference(cfg.weights or DEFAULT_WEIGHTS)
        else:
            raise ValueError("features=inception needs reference statistics: reference=PATH.npz "
                             "(python -m inference_scaling.evaluation.reference_stats PATH.npz --folder DIR)")
        if cfg.features == "digits":
            features = DigitsFeatures(cfg.weights or DEFAULT_WEIGHTS, dev)
        else:
            features = InceptionFeatures.from_pretrained(cfg.weights, dev)
        return cls(features, mu, sigma, cfg.passes, cfg.batch_size, dev)

    def __call__(self, images: Tensor, cond: Tensor, groups: Optional[Tensor] = None) -> Tensor:
        """Scores (B,) of candidates grouped by condition: `groups` (B,) names each image's condition (default:
        consecutive runs of equal `cond`); every group must have the same number of candidates."""
        if images.ndim != 4 or len(cond) != len(images):
            raise ValueError(f"need images (B, C, H, W) and one condition each, got {tuple(images.shape)}, {len(cond)}")
        groups = condition_groups(cond) if groups is None else groups.cpu()
        _, inverse, counts = groups.unique(return_inverse=True, return_counts=True)  # conditions by group id
        if (counts != counts[0]).any():
            raise ValueError(f"every condition needs the same number of candidates in one call, got {counts.tolist()}")
        if len(counts) < 2:
            raise ValueError("the FID-oracle selects over several conditions at once; this call holds one "
                             "(raise search.max_batch_size so that one call holds all candidates)")
        start = time.perf_counter()
        with torch.no_grad():
            feats = torch.cat([self.features(images[lo:lo + self.batch_size])
                               for lo in range(0, len(images), self.batch_size)])
        self.cost.calls += -(-len(images) // self.batch_size)
        # Position of each image in a (C, N) layout: its condition (visited in group-id order), then its order among
        # that condition's images (candidate 0, the starting pick, is the first). Interleaving does not matter.
        order = torch.argsort(inverse, stable=True)
        layout = order.view(len(counts), int(counts[0]))
        selection = greedy_fid_search(feats[layout.to(feats.device)], self.mu_ref, self.sigma_ref, passes=self.passes)
        scores = torch.empty(len(images))
        scores[layout.reshape(-1)] = -selection.candidate_fid.reshape(-1).float()
        self.last_selection = selection
        self.cost.images += len(images)
        self.cost.seconds += time.perf_counter() - start
        return scores
