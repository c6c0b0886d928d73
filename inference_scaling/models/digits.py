"""The embedded default model: FlowMLP on scikit-learn's 8×8 digits, conditioned on the class (10 = null)."""

from __future__ import annotations

from inference_scaling.models.flow_mlp import EmbeddedFlowModel, FlowDenoiser, FlowMLP
from inference_scaling.models.flow_mlp import load_flow as _load

NUM_CLASSES = 10
NULL_CLASS = NUM_CLASSES
IMAGE_SHAPE = (1, 8, 8)
DEFAULT_WEIGHTS = "package:digits_flow.safetensors"
DigitsDenoiser = FlowDenoiser


def new_model() -> FlowMLP:
    return FlowMLP(image_shape=IMAGE_SHAPE, fields=(NUM_CLASSES,))


def load_flow(path: str = DEFAULT_WEIGHTS, device: str = "cpu") -> FlowMLP:
    return _load(path, device)


class DigitsModel(EmbeddedFlowModel):
    """`model=digits`: class labels over the ten digits."""

    name = "digits"
    condition_kind = "digits"
