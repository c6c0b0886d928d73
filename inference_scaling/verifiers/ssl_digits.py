"""`ssl_digits`: the self-supervised verifier's embedded analog, on the digits benchmark's own features.

φ is the embedded digits classifier's penultimate features (the space the digits benchmark measures FID in), so
the verifier runs on CPU in milliseconds; it reads (B, 1, 8, 8) images, hence digits only.
"""

from __future__ import annotations

from dataclasses import dataclass

from inference_scaling.verifiers.fid_oracle import DigitsFeatures
from inference_scaling.verifiers.ssl_features import SslConfig, SslFeatures


@dataclass
class SslDigitsConfig(SslConfig):
    name: str = "ssl_digits"
    weights: str = ""  # the digits classifier; "": the committed one


class SslDigits(SslFeatures):
    name = "ssl_digits"
    benchmarks = ("digits",)  # the classifier reads 8×8 digits

    @classmethod
    def from_config(cls, cfg: SslDigitsConfig, device: str = "cpu") -> "SslDigits":
        return cls(DigitsFeatures(cfg.weights, cfg.device or device), cfg.sigma, cfg.batch_size)
