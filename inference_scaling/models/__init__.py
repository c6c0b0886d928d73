"""Model families, each adapted once onto the denoiser contract (`inference_scaling.models.base.ModelAdapter`).

The registry names the adapter class of every `model.name`; modules load on first use, so choosing the
embedded model never imports diffusers.
"""

from __future__ import annotations

from importlib import import_module

MODELS: dict[str, str] = {
    "digits": "inference_scaling.models.digits:DigitsModel",
    "scenes": "inference_scaling.models.scenes:ScenesModel",  # three sizes, one adapter (conf/model/scenes*.yaml)
    "scenes_small": "inference_scaling.models.scenes:ScenesModel",
    "scenes_large": "inference_scaling.models.scenes:ScenesModel",
    "sit_xl2": "inference_scaling.models.sit:SiTModel",  # SiT presets share one adapter (conf/model/sit_*.yaml)
    "sit_l2": "inference_scaling.models.sit:SiTModel",
    "sit_b2": "inference_scaling.models.sit:SiTModel",
    "flux_dev": "inference_scaling.models.flux:FluxModel",  # FLUX.1 presets share one adapter (conf/model/flux_*.yaml)
    "flux_schnell": "inference_scaling.models.flux:FluxModel",
    "sd35_medium": "inference_scaling.models.sd3:SD3Model",
    "dit_xl2": "inference_scaling.models.dit:DiTModel",  # ε-prediction on a VP schedule (models/vp.py)
    "pixart_sigma": "inference_scaling.models.pixart:PixArtSigmaModel",
}


def model_class(name: str):
    """The adapter class registered as `name`; unknown names fail with the list of known ones."""
    if name not in MODELS:
        raise ValueError(f"model.name={name!r} is unknown; choose one of: {', '.join(sorted(MODELS))}")
    module, _, cls = MODELS[name].partition(":")
    return getattr(import_module(module), cls)


def load_model(cfg):
    """The adapter of `cfg.name`, loaded from `cfg.weights` onto `cfg.device`."""
    return model_class(cfg.name)(cfg)


def model_configs() -> dict[str, type]:
    """The typed config of every model family that has fields of its own, by config-store name."""
    from inference_scaling.models.sit import SiTConfig
    from inference_scaling.models.flux import FluxConfig
    from inference_scaling.models.sd3 import SD3Config
    from inference_scaling.models.dit import DiTConfig
    from inference_scaling.models.pixart import PixArtSigmaConfig

    return {"sit": SiTConfig, "flux": FluxConfig, "sd3": SD3Config, "dit": DiTConfig, "pixart_sigma": PixArtSigmaConfig}
