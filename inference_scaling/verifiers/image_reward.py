"""ImageReward verifier (Xu et al. 2023, "ImageReward: Learning and Evaluating Human Preferences for
Text-to-Image Generation"), reimplemented on transformers' BLIP classes.

ImageReward = BLIP (ViT-L/16 image encoder at 224 px; BERT-base text encoder whose every layer cross-attends to
the image tokens) + an MLP on the text encoder's [CLS] output, normalised by the reward's mean and std over the
training set: score = (MLP(h_CLS) − 0.16717362830052426) / 1.0333394966054072. The prompt is tokenised with
BERT's bert-base-uncased vocabulary, padded to 35 tokens; [CLS] starts the sequence (not BLIP's [ENC]).

Why not the `image-reward` package: image-reward 1.5 pins timm==0.6.13 and fairscale==0.4.13, which conflict
with this project's timm>=1.0. So the network is built here from `BlipVisionModel` and `BlipTextModel`, whose
layers are those of BLIP's vit.py and med.py, and the published checkpoint (THUDM/ImageReward, `ImageReward.pt`,
a plain state dict read with torch.load(weights_only=True)) is mapped onto it by `convert_image_reward_state`.

A second, self-describing weights format is a folder written by `ImageReward.save_pretrained`: `config.json`
(a format marker and the BLIP vision and text configs, `to_dict()`), `model.safetensors` (the `ImageRewardModel`
state dict, in the dtype it was saved in) and the tokenizer's files. Its architecture is read from config.json, so
it holds converted, fine-tuned or float16 reward models of any size, and the tiny random ones the tests run end to
end. Convert the published checkpoint once with
`ImageReward.from_pretrained("ImageReward.pt", dtype="float16").save_pretrained("image-reward-v1")`.

Tested here on tiny random networks only: the key mapping (against timm's ViT, whose layout BLIP's ViT keeps, and
against a plain re-implementation of BLIP's text encoder), the normalisation, shapes, batching and the folder
format. Not tested against the real checkpoint (no network here): run `ImageReward.from_pretrained()` once on a
machine with the weights and compare with the official package's `model.score(prompt, image)`; expect
differences of a few 1e-3 from preprocessing (torch bicubic on tensors vs PIL bicubic on uint8 images).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from inference_scaling.config import VerifierConfig
from inference_scaling.verifiers._images import resolve_dtype, score_in_batches, to_model_input
from inference_scaling.verifiers.aesthetic import HUB_PREFIX, ScoreMLP, load_state_file, load_strict
from inference_scaling.verifiers.base import VerifierCost
from inference_scaling.weights import WeightsError

if TYPE_CHECKING:
    from transformers import BlipTextConfig, BlipVisionConfig

DEFAULT_WEIGHTS = "hf:THUDM/ImageReward/ImageReward.pt"
DEFAULT_TOKENIZER = "bert-base-uncased"
REWARD_MEAN = 0.16717362830052426  # ImageReward.mean
REWARD_STD = 1.0333394966054072  # ImageReward.std
MAX_LENGTH = 35  # ImageReward pads and truncates prompts to 35 tokens
FOLDER_FORMAT = "inference_scaling.image_reward"  # config.json's "format" in a folder saved by save_pretrained
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt")  # either makes a folder a BERT tokenizer


@dataclass
class ImageRewardConfig(VerifierConfig):
    name: str = "image_reward"
    # a local ImageReward.pt, hf:OWNER/REPO/PATH, or a folder saved by ImageReward.save_pretrained;
    # "": the published ImageReward.pt from the hub (THUDM/ImageReward)
    weights: str = ""
    tokenizer: str = ""  # BERT tokenizer, hub id or folder; "": the weights folder's own, else bert-base-uncased
    max_length: int = MAX_LENGTH
    device: Optional[str] = None  # None: the generator's device
    dtype: str = "float32"  # BLIP's dtype; the head runs in float32
    batch_size: int = 32


def image_reward_configs():
    """The BLIP configs of ImageReward-v1.0: ViT-L/16 at 224 px and BERT-base with cross-attention (med_config)."""
    from transformers import BlipTextConfig, BlipVisionConfig

    vision = BlipVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                              image_size=224, patch_size=16, layer_norm_eps=1e-6)
    text = BlipTextConfig(vocab_size=30524, hidden_size=768, encoder_hidden_size=1024, intermediate_size=3072,
                          num_hidden_layers=12, num_attention_heads=12, max_position_embeddings=512,
                          layer_norm_eps=1e-12, is_decoder=True, use_cache=False)  # is_decoder: build cross-attention
    return vision, text


class ImageRewardModel(nn.Module):
    """BLIP image encoder → text encoder cross-attending to it → MLP on [CLS]: the raw (unnormalised) reward."""

    def __init__(self, vision_config, text_config):
        super().__init__()
        from transformers import BlipTextModel, BlipVisionModel

        if text_config.encoder_hidden_size != vision_config.hidden_size:
            raise ValueError(f"text encoder_hidden_size={text_config.encoder_hidden_size} must equal the image "
                             f"encoder's hidden_size={vision_config.hidden_size}")
        self.vision = BlipVisionModel(vision_config)
        self.text = BlipTextModel(text_config, add_pooling_layer=False)
        self.mlp = ScoreMLP(text_config.hidden_size)
        self.image_size = int(vision_config.image_size)

    def forward(self, pixel_values: Tensor, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        image_tokens = self.vision(pixel_values=pixel_values).last_hidden_state
        # No encoder mask: every image token is attended, as ImageReward's all-ones image_atts.
        text = self.text(input_ids=input_ids, attention_mask=attention_mask, encoder_hidden_states=image_tokens,
                         is_decoder=False).last_hidden_state
        return self.mlp(text[:, 0].float())


# ImageReward.pt key → ImageRewardModel key, first match wins; keys matching nothing (BLIP's vision_proj and
# text_proj, the position_ids buffer) are not used by the reward and are dropped.
KEY_MAP = [
    (r"^blip\.visual_encoder\.cls_token$", "vision.embeddings.class_embedding"),
    (r"^blip\.visual_encoder\.pos_embed$", "vision.embeddings.position_embedding"),
    (r"^blip\.visual_encoder\.patch_embed\.proj\.", "vision.embeddings.patch_embedding."),
    (r"^blip\.visual_encoder\.blocks\.(\d+)\.norm1\.", r"vision.encoder.layers.\1.layer_norm1."),
    (r"^blip\.visual_encoder\.blocks\.(\d+)\.norm2\.", r"vision.encoder.layers.\1.layer_norm2."),
    (r"^blip\.visual_encoder\.blocks\.(\d+)\.attn\.qkv\.", r"vision.encoder.layers.\1.self_attn.qkv."),
    (r"^blip\.visual_encoder\.blocks\.(\d+)\.attn\.proj\.", r"vision.encoder.layers.\1.self_attn.projection."),
    (r"^blip\.visual_encoder\.blocks\.(\d+)\.mlp\.(fc1|fc2)\.", r"vision.encoder.layers.\1.mlp.\2."),
    (r"^blip\.visual_encoder\.norm\.", "vision.post_layernorm."),
    (r"^blip\.text_encoder\.embeddings\.position_ids$", None),
    (r"^blip\.text_encoder\.", "text."),  # transformers' BLIP text model keeps med.py's names
    (r"^mlp\.layers\.", "mlp.layers."),
]


def convert_key(key: str) -> Optional[str]:
    for pattern, replacement in KEY_MAP:
        if re.match(pattern, key):
            return None if replacement is None else re.sub(pattern, replacement, key)
    return None


def convert_image_reward_state(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Map an ImageReward.pt state dict (the `ImageReward` module of the image-reward package) onto
    `ImageRewardModel`'s keys; unused keys are dropped."""
    converted = {}
    for key, value in state.items():
        new = convert_key(key)
        if new is not None:
            converted[new] = value
    return converted


def load_image_reward_weights(model: ImageRewardModel, spec: str) -> ImageRewardModel:
    """Load an ImageReward.pt-layout checkpoint into `model` strictly, after key conversion; eval mode."""
    return load_strict(model, convert_image_reward_state(load_state_file(spec)), spec, "the ImageReward network")


def is_folder(spec: str) -> bool:
    """Whether a weights spec names a local folder (the saved format) rather than a file or hub file."""
    return not spec.startswith(HUB_PREFIX) and Path(spec).expanduser().is_dir()


def read_folder_configs(folder: str) -> tuple[BlipVisionConfig, BlipTextConfig]:
    """The BLIP vision and text configs in a saved folder's config.json."""
    from huggingface_hub.errors import StrictDataclassError
    from transformers import BlipTextConfig, BlipVisionConfig

    try:
        config = json.loads((Path(folder).expanduser() / CONFIG_FILE).read_text())
        if config.get("format") != FOLDER_FORMAT:
            raise ValueError(f"format is {config.get('format')!r}, not {FOLDER_FORMAT!r}")
        return BlipVisionConfig.from_dict(config["vision_config"]), BlipTextConfig.from_dict(config["text_config"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError, StrictDataclassError) as err:
        reason = " ".join(f"{type(err).__name__}: {err}".split())[:300]
        raise WeightsError(f"weights folder {folder!r} is not an ImageReward folder saved by "
                           f"ImageReward.save_pretrained ({CONFIG_FILE}: {reason})") from None


def load_image_reward_folder(folder: str) -> ImageRewardModel:
    """The network a saved folder's config.json describes, its model.safetensors loaded strictly; eval mode."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    vision, text = read_folder_configs(folder)
    try:
        model = ImageRewardModel(vision, text)
    except ValueError as err:
        raise WeightsError(f"weights folder {folder!r}: {' '.join(str(err).split())[:300]}") from None
    try:
        state = load_file(str(Path(folder).expanduser() / WEIGHTS_FILE))
    except (OSError, SafetensorError) as err:
        raise WeightsError(f"weights folder {folder!r}: {WEIGHTS_FILE} is not readable ({err})") from None
    return load_strict(model, state, folder, f"the ImageReward network of its {CONFIG_FILE}")


def load_image_reward_model(spec: str = DEFAULT_WEIGHTS) -> ImageRewardModel:
    """A saved folder's network, or ImageReward-v1.0 with an ImageReward.pt-layout file's weights."""
    if is_folder(spec):
        return load_image_reward_folder(spec)
    return load_image_reward_weights(ImageRewardModel(*image_reward_configs()), spec)


def resolve_tokenizer(tokenizer: str, weights: str) -> str:
    """An explicit tokenizer; else, for a weights folder, the folder itself; else bert-base-uncased."""
    if tokenizer:
        return tokenizer
    return weights if is_folder(weights) else DEFAULT_TOKENIZER


def load_tokenizer(name: str = DEFAULT_TOKENIZER):
    """BERT's tokenizer with BLIP's two added tokens ([DEC], [ENC]), which make the vocabulary 30524."""
    from transformers import BertTokenizer

    folder = Path(name).expanduser()
    if folder.is_dir() and not any((folder / file).is_file() for file in TOKENIZER_FILES):
        # BertTokenizer.from_pretrained would build an empty vocabulary and read every word as [UNK]
        raise WeightsError(f"tokenizer folder {name!r} holds no {' or '.join(TOKENIZER_FILES)}; save the "
                           f"tokenizer there (tokenizer.save_pretrained) or set verifier.tokenizer")
    tokenizer = BertTokenizer.from_pretrained(name)
    tokenizer.add_special_tokens({"bos_token": "[DEC]", "additional_special_tokens": ["[ENC]"]})
    return tokenizer


class ImageReward:
    """ImageReward score of each image for its prompt; higher is better, about N(0, 1) over generated images."""

    name = "image_reward"
    set_level = False  # each image is scored on its own
    takes_prompts = True  # scores images against the benchmark's prompts (any benchmark)
    weights_folder = True  # `weights` may be a folder saved by save_pretrained (validation accepts folders)

    def __init__(self, model: ImageRewardModel, tokenizer, device: str = "cpu", dtype: torch.dtype = torch.float32,
                 batch_size: int = 32, max_length: int = MAX_LENGTH):
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be >= 1")
        self.model = model.to(device=device, dtype=dtype).eval()
        self.model.mlp.float()  # the reward head runs in float32, as upstream's .float() before it
        self.tokenizer = tokenizer
        self.device = device
        self.dtype = dtype
        self.batch_size = batch_size
        self.max_length = max_length
        self.cost = VerifierCost()

    @classmethod
    def from_pretrained(cls, weights: str = DEFAULT_WEIGHTS, tokenizer: str = "", device: str = "cpu",
                        dtype: str = "float32", batch_size: int = 32, max_length: int = MAX_LENGTH) -> "ImageReward":
        """`weights`: a saved folder, a local ImageReward.pt or hf:OWNER/REPO/PATH; `tokenizer`: see
        `resolve_tokenizer`."""
        model = load_image_reward_model(weights)
        name = resolve_tokenizer(tokenizer, weights)
        tok = load_tokenizer(name)
        if len(tok) > model.text.config.vocab_size:
            raise WeightsError(f"tokenizer {name!r} has {len(tok)} tokens but the text encoder of {weights!r} "
                               f"embeds {model.text.config.vocab_size}; set verifier.tokenizer to the model's own")
        return cls(model, tok, device, resolve_dtype(dtype), batch_size, max_length)

    @classmethod
    def from_config(cls, cfg: ImageRewardConfig, device: str = "cpu") -> "ImageReward":
        return cls.from_pretrained(cfg.weights or DEFAULT_WEIGHTS, cfg.tokenizer, cfg.device or device, cfg.dtype,
                                   cfg.batch_size, cfg.max_length)

    def save_pretrained(self, folder: Union[str, Path]) -> Path:
        """Write the folder format: config.json, model.safetensors (in the model's dtypes) and the tokenizer."""
        from safetensors.torch import save_file

        out = Path(folder).expanduser()
        out.mkdir(parents=True, exist_ok=True)
        config = {"format": FOLDER_FORMAT, "vision_config": self.model.vision.config.to_dict(),
                  "text_config": self.model.text.config.to_dict()}
        (out / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
        state = {k: v.detach().contiguous().cpu() for k, v in self.model.state_dict().items()}
        save_file(state, str(out / WEIGHTS_FILE))
        self.tokenizer.save_pretrained(str(out))
        return out

    def raw(self, images: Tensor, prompts: list[str]) -> Tensor:
        """The MLP's output before normalisation, (B,)."""
        tokens = self.tokenizer(prompts, padding="max_length", truncation=True, max_length=self.max_length,
                                return_tensors="pt").to(self.device)
        pixels = to_model_input(images, self.model.image_size, self.device, self.dtype)
        return self.model(pixels, tokens["input_ids"], tokens["attention_mask"])

    def _score(self, images: Tensor, prompts: list[str]) -> Tensor:
        return (self.raw(images, prompts) - REWARD_MEAN) / REWARD_STD

    def __call__(self, images: Tensor, prompts: Sequence[str]) -> Tensor:
        return score_in_batches(self._score, images, prompts, self.batch_size, self.cost)
