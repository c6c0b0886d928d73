"""Text-to-image verifiers (CLIPScore, LAION aesthetic, ImageReward, rank ensemble) on tiny random networks.

Real weights cannot be downloaded here: the networks are transformers/timm models built from tiny configs, and
the checkpoint layouts are the published ones, written out by hand.
"""

import json
import math
import shutil
from functools import partial

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from PIL import Image
from safetensors.torch import load_file
from torch import nn
from tiny_models import tiny_clip
from transformers import BertTokenizer, BlipTextConfig, BlipVisionConfig, CLIPImageProcessor

from inference_scaling.verifiers._images import check_inputs, resize_center_crop, to_model_input
from inference_scaling.verifiers.aesthetic import Aesthetic, AestheticConfig, ScoreMLP, load_head, resolve_file
from inference_scaling.verifiers.clip_score import ClipEncoder, ClipScore, ClipScoreConfig, clip_score
from inference_scaling.verifiers.ensemble import (MEMBERS, Ensemble, EnsembleConfig, average_ranks, build_ensemble,
                                                  rank_average)
from inference_scaling.verifiers.image_reward import (DEFAULT_TOKENIZER, DEFAULT_WEIGHTS, REWARD_MEAN, REWARD_STD,
                                                      ImageReward, ImageRewardConfig, ImageRewardModel,
                                                      convert_image_reward_state, image_reward_configs,
                                                      load_image_reward_weights, load_tokenizer, resolve_tokenizer)
from inference_scaling.weights import WeightsError

PROMPTS = ["a red cat", "a blue dog", "a red cat", "two birds", "a blue dog", "a red cat", "a cat", "a dog"]
MLP_LAYERS = (0, 2, 4, 6, 7)  # Linear layers of the published aesthetic / ImageReward MLP state dicts
MLP_WIDTHS = (1024, 128, 64, 16, 1)


pytestmark = pytest.mark.usefixtures("one_thread")


def images(n: int = 8, h: int = 40, w: int = 48, seed: int = 0) -> torch.Tensor:
    """Non-square images in [-1, 1], so that resizing and cropping both act."""
    return torch.rand(n, 3, h, w, generator=torch.Generator().manual_seed(seed)) * 2 - 1


# ---------- tiny networks ----------

@pytest.fixture(scope="module")
def clip_encoder() -> ClipEncoder:
    model, tokenizer = tiny_clip()
    encoder = ClipEncoder(model, tokenizer)
    # A random CLIP embeds all images near one direction and all texts near another; where these point apart,
    # every CLIP-S clamps to 0 and the tests below could not fail. Flip the text side to make cosines positive.
    with torch.no_grad():
        if F.cosine_similarity(encoder.embed_images(images()), encoder.embed_texts(PROMPTS)).mean() < 0:
            model.text_projection.weight.neg_()
    return encoder


BERT_WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "red", "blue", "cat", "dog", "two", "birds"]
BERT_VOCAB = len(BERT_WORDS) + 2  # load_tokenizer adds BLIP's [DEC] and [ENC], as ImageReward's 30522 + 2


def tiny_blip_configs(width: int = 32):
    vision = BlipVisionConfig(hidden_size=width, intermediate_size=4 * width, num_hidden_layers=2,
                              num_attention_heads=2, image_size=32, patch_size=16, layer_norm_eps=1e-6)
    text = BlipTextConfig(vocab_size=BERT_VOCAB, hidden_size=width, encoder_hidden_size=width,
                          intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=40,
                          layer_norm_eps=1e-12, is_decoder=True, use_cache=False, pad_token_id=0, bos_token_id=None,
                          eos_token_id=None, sep_token_id=None)
    return vision, text


def tiny_timm_vit():
    """timm's ViT keeps the key layout and maths of BLIP's vit.py (blocks.i.attn.qkv, pos_embed, norm...)."""
    from timm.models.vision_transformer import VisionTransformer

    with torch.random.fork_rng(), torch.no_grad():
        torch.manual_seed(1)
        vit = VisionTransformer(img_size=32, patch_size=16, embed_dim=32, depth=2, num_heads=2, num_classes=0,
                                global_pool="", norm_layer=partial(nn.LayerNorm, eps=1e-6)).eval()
        for p in vit.parameters():  # timm zero-initialises biases and LayerNorms; make every tensor matter
            p.add_(0.1 * torch.randn_like(p))
    return vit


def med_text_layout(width: int = 32, layers: int = 2) -> list[tuple[str, tuple[int, ...]]]:
    """Keys and shapes of BLIP's med.py BertModel(add_pooling_layer=False, add_cross_attention=True)."""
    keys = [("embeddings.word_embeddings.weight", (BERT_VOCAB, width)),
            ("embeddings.position_embeddings.weight", (40, width)),
            ("embeddings.LayerNorm.weight", (width,)), ("embeddings.LayerNorm.bias", (width,))]
    for i in range(layers):
        for block in ("attention", "crossattention"):
            for lin in ("self.query", "self.key", "self.value", "output.dense"):
                keys += [(f"encoder.layer.{i}.{block}.{lin}.weight", (width, width)),
                         (f"encoder.layer.{i}.{block}.{lin}.bias", (width,))]
            keys += [(f"encoder.layer.{i}.{block}.output.LayerNorm.{p}", (width,)) for p in ("weight", "bias")]
        keys += [(f"encoder.layer.{i}.intermediate.dense.weight", (64, width)),
                 (f"encoder.layer.{i}.intermediate.dense.bias", (64,)),
                 (f"encoder.layer.{i}.output.dense.weight", (width, 64)),
                 (f"encoder.layer.{i}.output.dense.bias", (width,)),
                 (f"encoder.layer.{i}.output.LayerNorm.weight", (width,)),
                 (f"encoder.layer.{i}.output.LayerNorm.bias", (width,))]
    return keys


def mlp_state(input_size: int, seed: int) -> dict[str, torch.Tensor]:
    """A state dict in the published improved-aesthetic-predictor layout (also ImageReward's `mlp.`)."""
    g = torch.Generator().manual_seed(seed)
    state, fan_in = {}, input_size
    for index, width in zip(MLP_LAYERS, MLP_WIDTHS):
        state[f"layers.{index}.weight"] = torch.randn(width, fan_in, generator=g) / math.sqrt(fan_in)
        state[f"layers.{index}.bias"] = 0.1 * torch.randn(width, generator=g)
        fan_in = width
    return state


def mlp_reference(state: dict[str, torch.Tensor], x: torch.Tensor, prefix: str = "") -> torch.Tensor:
    """The published head: five affine maps, no activation between them."""
    for index in MLP_LAYERS:
        x = F.linear(x, state[f"{prefix}layers.{index}.weight"], state[f"{prefix}layers.{index}.bias"])
    return x.squeeze(-1)


def image_reward_checkpoint(seed: int = 2) -> tuple[dict[str, torch.Tensor], nn.Module]:
    """A tiny checkpoint in ImageReward.pt's layout (with the keys the reward does not use) and its ViT."""
    vit = tiny_timm_vit()
    state = {f"blip.visual_encoder.{k}": v.clone() for k, v in vit.state_dict().items()}
    g = torch.Generator().manual_seed(seed)
    for key, shape in med_text_layout():
        state[f"blip.text_encoder.{key}"] = (1.0 if key.endswith("LayerNorm.weight") else 0.0) + \
            0.3 * torch.randn(shape, generator=g)
    state["blip.text_encoder.embeddings.position_ids"] = torch.arange(40).expand(1, -1)
    state["blip.vision_proj.weight"], state["blip.vision_proj.bias"] = torch.randn(8, 32), torch.randn(8)
    state["blip.text_proj.weight"], state["blip.text_proj.bias"] = torch.randn(8, 32), torch.randn(8)
    state.update({f"mlp.{k}": v for k, v in mlp_state(32, seed).items()})
    return state, vit


def med_text_reference(state, input_ids, mask, image_tokens, heads: int = 2, layers: int = 2) -> torch.Tensor:
    """BLIP's med.py text encoder in plain torch: post-LN BERT layers, each self-attention → cross-attention
    to the image tokens → feed-forward."""
    def lin(x, key):
        return F.linear(x, state[f"{key}.weight"], state[f"{key}.bias"])

    def ln(x, key):
        return F.layer_norm(x, x.shape[-1:], state[f"{key}.weight"], state[f"{key}.bias"], eps=1e-12)

    def attend(x, context, key, key_mask):
        b, d = x.shape[0], x.shape[-1]

        def split(t):
            return t.view(b, -1, heads, d // heads).transpose(1, 2)

        q, k, v = split(lin(x, f"{key}.query")), split(lin(context, f"{key}.key")), split(lin(context, f"{key}.value"))
        logits = q @ k.transpose(-1, -2) / math.sqrt(d // heads)
        if key_mask is not None:
            logits = logits.masked_fill(key_mask[:, None, None, :] == 0, float("-inf"))
        return (logits.softmax(-1) @ v).transpose(1, 2).reshape(b, -1, d)

    p = "blip.text_encoder."
    x = state[p + "embeddings.word_embeddings.weight"][input_ids]
    x = ln(x + state[p + "embeddings.position_embeddings.weight"][: input_ids.shape[1]], p + "embeddings.LayerNorm")
    for i in range(layers):
        q = f"{p}encoder.layer.{i}."
        x = ln(x + lin(attend(x, x, q + "attention.self", mask), q + "attention.output.dense"),
               q + "attention.output.LayerNorm")
        x = ln(x + lin(attend(x, image_tokens, q + "crossattention.self", None), q + "crossattention.output.dense"),
               q + "crossattention.output.LayerNorm")
        x = ln(x + lin(F.gelu(lin(x, q + "intermediate.dense")), q + "output.dense"), q + "output.LayerNorm")
    return x


def save_bert_tokenizer(folder, words=BERT_WORDS) -> str:
    BertTokenizer(vocab={w: i for i, w in enumerate(words)}).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def image_reward(tmp_path_factory) -> ImageReward:
    state, _ = image_reward_checkpoint()
    path = tmp_path_factory.mktemp("ir") / "ImageReward.pt"
    torch.save(state, path)
    model = load_image_reward_weights(ImageRewardModel(*tiny_blip_configs()), str(path))
    return ImageReward(model, load_tokenizer(save_bert_tokenizer(tmp_path_factory.mktemp("bert"))), batch_size=8)


# ---------- preprocessing ----------

def test_to_model_input_matches_clips_image_processor():
    small = torch.rand(1, 3, 6, 8, generator=torch.Generator().manual_seed(3))
    x = F.interpolate(small, size=(48, 64), mode="bilinear", align_corners=False) * 2 - 1  # a smooth image
    pil = Image.fromarray(((x[0] + 1) / 2 * 255).round().byte().permute(1, 2, 0).numpy())
    processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    expected = processor(images=pil, return_tensors="pt")["pixel_values"]
    ours = to_model_input(x, 32, "cpu", torch.float32)
    assert ours.shape == expected.shape == (1, 3, 32, 32)
    assert (ours - expected).abs().max() < 0.05  # normalised units; PIL's resampler and uint8 account for it
    assert (to_model_input(x.flip(1), 32, "cpu", torch.float32) - expected).abs().max() > 0.2  # RGB order matters


def test_resize_center_crop_keeps_the_centre():
    x = -torch.ones(1, 3, 32, 64)
    x[..., 8:56] = 1.0  # the centre 48 columns bright
    out = resize_center_crop(x, 16)
    assert out.shape == (1, 3, 16, 16)
    assert torch.allclose(out, torch.ones_like(out), atol=1e-4)
    assert resize_center_crop(torch.zeros(2, 3, 16, 24), 16).shape == (2, 3, 16, 16)


def test_grey_images_are_repeated_to_rgb():
    grey = torch.linspace(-1, 1, 64).view(1, 1, 8, 8)
    assert torch.equal(to_model_input(grey, 8, "cpu", torch.float32),
                       to_model_input(grey.expand(-1, 3, -1, -1), 8, "cpu", torch.float32))


def test_inputs_are_checked():
    with pytest.raises(ValueError, match="B, 3, H, W"):
        check_inputs(torch.zeros(2, 2, 8, 8), ["a", "b"])
    check_inputs(torch.zeros(2, 1, 8, 8), ["a", "b"])  # grey (the embedded benchmarks) is repeated to RGB
    with pytest.raises(ValueError, match="2 images but 1 prompts"):
        check_inputs(torch.zeros(2, 3, 8, 8), ["a"])
    with pytest.raises(TypeError, match="prompt strings"):
        check_inputs(torch.zeros(2, 3, 8, 8), torch.tensor([0, 1]))


# ---------- CLIPScore ----------

def test_clip_score_is_hessels_definition():
    image = torch.tensor([[1.0, 0.0]] * 4)
    text = torch.tensor([[2.0, 0.0], [0.6, 0.8], [0.0, 3.0], [-1.0, 0.1]])  # cos 1, 0.6, 0, negative
    assert torch.allclose(clip_score(image, text), torch.tensor([2.5, 1.5, 0.0, 0.0]))
    assert torch.allclose(clip_score(image, text, scale=1.0), torch.tensor([1.0, 0.6, 0.0, 0.0]))
    # The prompt whose embedding matches the image's scores higher than one that does not.
    e = torch.tensor([[0.3, -0.2, 0.9]])
    assert clip_score(e, e + 0.05) > clip_score(e, torch.tensor([[0.9, 0.3, -0.1]]))


def test_clip_score_model_path(clip_encoder):
    x = images()
    verifier = ClipScore(clip_encoder, batch_size=8)
    scores = verifier(x, PROMPTS)
    assert scores.shape == (8,) and scores.dtype == torch.float32 and scores.device.type == "cpu"
    with torch.no_grad():
        direct = clip_score(clip_encoder.embed_images(x), clip_encoder.embed_texts(PROMPTS))
    assert torch.allclose(scores, direct, atol=1e-5)
    assert ((scores >= 0) & (scores <= 2.5)).all() and (scores > 0).any()
    assert torch.equal(verifier(x, PROMPTS), scores)  # deterministic
    for batch_size in (1, 3):
        assert torch.allclose(ClipScore(clip_encoder, batch_size=batch_size)(x, PROMPTS), scores, atol=1e-5)
    assert torch.allclose(verifier(x.flip(0), PROMPTS[::-1]), scores.flip(0), atol=1e-5)  # input order
    assert not torch.allclose(verifier(x, ["two birds"] * 8), scores)  # the prompt matters
    assert verifier.cost.calls == 4 and verifier.cost.images == 32 and verifier.cost.seconds > 0


# ---------- aesthetic ----------

@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_aesthetic_head_loads_the_published_layout(tmp_path, suffix):
    state = mlp_state(768, seed=4)
    path = tmp_path / f"sac+logos+ava1-l14-linearMSE{suffix}"
    if suffix == ".pth":
        torch.save(state, path)
    else:
        from safetensors.torch import save_file

        save_file(state, str(path))
    head = load_head(str(path))
    assert not head.training
    x = F.normalize(torch.randn(5, 768, generator=torch.Generator().manual_seed(5)), dim=-1)
    with torch.no_grad():
        assert torch.allclose(head(x), mlp_reference(state, x), atol=1e-5)
        assert head(x).shape == (5,)


def test_aesthetic_head_rejects_other_files(tmp_path):
    bad = mlp_state(768, seed=4)
    bad["layers.1.weight"] = bad.pop("layers.2.weight")  # a ReLU where the published head has none
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(WeightsError, match="do not fit the aesthetic MLP"):
        load_head(str(tmp_path / "bad.pth"))
    torch.save(mlp_state(512, seed=4), tmp_path / "b32.pth")
    with pytest.raises(WeightsError, match="768 inputs"):
        load_head(str(tmp_path / "b32.pth"))
    assert load_head(str(tmp_path / "b32.pth"), input_size=512).input_size == 512
    with pytest.raises(WeightsError, match="does not exist"):
        load_head(str(tmp_path / "missing.pth"))
    with pytest.raises(WeightsError, match="hf:OWNER/REPO/PATH"):
        resolve_file("hf:only-a-repo")
    torch.save(torch.zeros(3), tmp_path / "tensor.pth")
    with pytest.raises(WeightsError, match="not a state dict"):
        load_head(str(tmp_path / "tensor.pth"))


def test_aesthetic_on_tiny_clip(clip_encoder, tmp_path):
    state = mlp_state(16, seed=6)
    torch.save(state, tmp_path / "head.pth")
    verifier = Aesthetic(clip_encoder, load_head(str(tmp_path / "head.pth"), input_size=16), batch_size=8)
    x = images()
    scores = verifier(x, PROMPTS)
    assert scores.shape == (8,) and scores.dtype == torch.float32
    with torch.no_grad():
        expected = mlp_reference(state, F.normalize(clip_encoder.embed_images(x), dim=-1))
    assert torch.allclose(scores, expected, atol=1e-5)
    assert torch.equal(verifier(x, PROMPTS), scores)
    assert torch.equal(verifier(x, ["anything"] * 8), scores)  # the prompt plays no part
    for batch_size in (1, 3):
        assert torch.allclose(Aesthetic(clip_encoder, verifier.head, batch_size)(x, PROMPTS), scores, atol=1e-5)
    assert scores.std() > 0
    with pytest.raises(ValueError, match="takes 768 features but the CLIP embeds to 16"):
        Aesthetic(clip_encoder, ScoreMLP(768))


# ---------- ImageReward ----------

def test_image_reward_key_map_covers_the_network():
    state, _ = image_reward_checkpoint()
    converted = convert_image_reward_state(state)
    model = ImageRewardModel(*tiny_blip_configs())
    assert set(converted) == set(model.state_dict())
    assert not any(k.startswith(("blip", "vision_proj", "text_proj")) for k in converted)
    assert "vision.encoder.layers.1.self_attn.projection.weight" in converted
    assert torch.equal(converted["vision.embeddings.class_embedding"], state["blip.visual_encoder.cls_token"])


def test_image_reward_network_matches_blip_reference(image_reward):
    state, vit = image_reward_checkpoint()
    x = images(4, 32, 32)
    pixels = to_model_input(x, 32, "cpu", torch.float32)
    tokens = image_reward.tokenizer(PROMPTS[:4], padding="max_length", truncation=True, max_length=35,
                                    return_tensors="pt")
    with torch.no_grad():
        image_tokens = vit.forward_features(pixels)
        assert torch.allclose(image_reward.model.vision(pixel_values=pixels).last_hidden_state, image_tokens,
                              atol=1e-5)
        text = med_text_reference(state, tokens["input_ids"], tokens["attention_mask"], image_tokens)
        raw = mlp_reference(state, text[:, 0], prefix="mlp.")
        assert torch.allclose(image_reward.model(pixels, tokens["input_ids"], tokens["attention_mask"]), raw,
                              atol=1e-4)
    # The verifier's score is the raw reward standardised with ImageReward's published mean and std.
    assert (REWARD_MEAN, REWARD_STD) == (0.16717362830052426, 1.0333394966054072)
    assert torch.allclose(image_reward(x, PROMPTS[:4]), (raw - REWARD_MEAN) / REWARD_STD, atol=1e-4)
    assert raw.std() > 0.1  # the reference is not trivially constant


def test_image_reward_batching(image_reward):
    x = images()
    scores = image_reward(x, PROMPTS)
    assert scores.shape == (8,) and scores.dtype == torch.float32
    assert torch.equal(image_reward(x, PROMPTS), scores)
    for batch_size in (1, 3):
        other = ImageReward(image_reward.model, image_reward.tokenizer, batch_size=batch_size)
        assert torch.allclose(other(x, PROMPTS), scores, atol=1e-5)
        assert other.cost.calls == math.ceil(8 / batch_size) and other.cost.images == 8
    assert torch.allclose(image_reward(x.flip(0), PROMPTS[::-1]), scores.flip(0), atol=1e-5)
    assert not torch.allclose(image_reward(x, ["two birds"] * 8), scores)


def test_image_reward_rejects_other_checkpoints(tmp_path):
    state, _ = image_reward_checkpoint()
    del state["blip.visual_encoder.blocks.1.attn.qkv.weight"]
    torch.save(state, tmp_path / "partial.pt")
    with pytest.raises(WeightsError, match="do not fit the ImageReward network"):
        load_image_reward_weights(ImageRewardModel(*tiny_blip_configs()), str(tmp_path / "partial.pt"))


def test_image_reward_folder_round_trip(image_reward, tmp_path):
    """save_pretrained → from_pretrained / from_config gives the same network, tokenizer and scores."""
    folder = image_reward.save_pretrained(tmp_path / "ir")
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in folder.iterdir()}
    x = images()
    scores = image_reward(x, PROMPTS)
    loaded = ImageReward.from_pretrained(str(folder), batch_size=8)
    assert loaded.model.image_size == 32 and loaded.model.text.config.num_hidden_layers == 2
    assert len(loaded.tokenizer) == BERT_VOCAB
    assert torch.equal(loaded(x, PROMPTS), scores)
    from_config = ImageReward.from_config(ImageRewardConfig(weights=str(folder), batch_size=8), device="cpu")
    assert torch.equal(from_config(x, PROMPTS), scores)
    # A float16 copy: the BLIP tensors stored as float16, its scores close to float32's.
    ImageReward(loaded.model, loaded.tokenizer, dtype=torch.float16).save_pretrained(tmp_path / "fp16")
    half = load_file(str(tmp_path / "fp16" / "model.safetensors"))
    assert half["vision.embeddings.patch_embedding.weight"].dtype == torch.float16
    assert half["mlp.layers.0.weight"].dtype == torch.float32  # the head stays float32
    fp16_scores = ImageReward.from_pretrained(str(tmp_path / "fp16"))(x, PROMPTS)
    assert not torch.equal(fp16_scores, scores) and torch.allclose(fp16_scores, scores, atol=0.02)


def edit_config(folder, edit) -> None:
    config = json.loads((folder / "config.json").read_text())
    edit(config)
    (folder / "config.json").write_text(json.dumps(config))


FOLDER_DAMAGE = {
    "more text layers": (lambda f: edit_config(f, lambda c: c["text_config"].update(num_hidden_layers=3)),
                         "do not fit the ImageReward network of its config.json: Missing key"),
    "wider text encoder": (lambda f: edit_config(f, lambda c: c["text_config"].update(hidden_size=64)),
                           "do not fit the ImageReward network of its config.json: .*size mismatch"),
    "vision narrower than cross-attention": (
        lambda f: edit_config(f, lambda c: c["vision_config"].update(hidden_size=16, intermediate_size=64)),
        "encoder_hidden_size=32 must equal the image encoder's hidden_size=16"),
    "not a typed config": (lambda f: edit_config(f, lambda c: c["vision_config"].update(hidden_size="wide")),
                           "not an ImageReward folder .*hidden_size"),
    "no format marker": (lambda f: edit_config(f, lambda c: c.pop("format")), "format is None"),
    "config.json not JSON": (lambda f: (f / "config.json").write_text("{vision"), "JSONDecodeError"),
    "no config.json": (lambda f: (f / "config.json").unlink(), "FileNotFoundError"),
    "truncated weights": (lambda f: (f / "model.safetensors").write_bytes((f / "model.safetensors").read_bytes()[:99]),
                          "model.safetensors is not readable"),
    "no weights": (lambda f: (f / "model.safetensors").unlink(), "model.safetensors is not readable"),
}


def test_image_reward_folder_mismatch_is_a_one_line_weights_error(image_reward, tmp_path):
    saved = image_reward.save_pretrained(tmp_path / "saved")
    for case, (damage, message) in FOLDER_DAMAGE.items():
        folder = tmp_path / case.replace(" ", "_")
        shutil.copytree(saved, folder)
        damage(folder)
        with pytest.raises(WeightsError, match=message) as err:
            ImageReward.from_pretrained(str(folder))
        assert str(folder) in str(err.value) and "\n" not in str(err.value), case


def test_image_reward_tokenizer_defaults(image_reward, tmp_path, config):
    folder = str(image_reward.save_pretrained(tmp_path / "ir"))
    assert ImageRewardConfig().tokenizer == "" and config("verifier=image_reward").verifier.tokenizer == ""
    assert config("verifier=ensemble").verifier.image_reward.tokenizer == ""
    assert resolve_tokenizer("", folder) == folder  # a saved folder brings its own tokenizer
    assert resolve_tokenizer("", DEFAULT_WEIGHTS) == DEFAULT_TOKENIZER == "bert-base-uncased"
    torch.save({}, tmp_path / "ImageReward.pt")
    assert resolve_tokenizer("", str(tmp_path / "ImageReward.pt")) == DEFAULT_TOKENIZER
    assert resolve_tokenizer("other-bert", folder) == "other-bert"  # an explicit tokenizer always wins
    # Same words, other ids: an explicit tokenizer replaces the folder's and changes the scores.
    shuffled = save_bert_tokenizer(tmp_path / "shuffled", BERT_WORDS[:5] + BERT_WORDS[6:] + BERT_WORDS[5:6])
    x = images()
    own = ImageReward.from_pretrained(folder)
    other = ImageReward.from_pretrained(folder, tokenizer=shuffled)
    assert other.tokenizer("cat")["input_ids"] != own.tokenizer("cat")["input_ids"]
    assert not torch.allclose(other(x, PROMPTS), own(x, PROMPTS))
    with pytest.raises(WeightsError, match=r"has 15 tokens but the text encoder of .* embeds 14"):
        ImageReward.from_pretrained(folder, tokenizer=save_bert_tokenizer(tmp_path / "big", BERT_WORDS + ["fish"]))
    for file in ("tokenizer.json", "tokenizer_config.json"):
        (tmp_path / "ir" / file).unlink()
    with pytest.raises(WeightsError, match="holds no tokenizer.json or vocab.txt"):
        ImageReward.from_pretrained(folder)
    assert torch.equal(ImageReward.from_pretrained(folder, tokenizer=str(tmp_path / "shuffled"))(x, PROMPTS),
                       other(x, PROMPTS))


def test_image_reward_v1_architecture():
    """Shapes of the published ImageReward-v1.0 checkpoint: BLIP ViT-L/16 at 224 px, BERT-base, 768 → MLP."""
    with torch.device("meta"):
        model = ImageRewardModel(*image_reward_configs())
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes["vision.embeddings.position_embedding"] == (1, 197, 1024)
    assert shapes["vision.embeddings.patch_embedding.weight"] == (1024, 3, 16, 16)
    assert shapes["vision.encoder.layers.23.self_attn.qkv.weight"] == (3072, 1024)
    assert shapes["text.embeddings.word_embeddings.weight"] == (30524, 768)
    assert shapes["text.encoder.layer.11.crossattention.self.key.weight"] == (768, 1024)
    assert shapes["mlp.layers.0.weight"] == (1024, 768) and shapes["mlp.layers.7.weight"] == (1, 16)
    assert "vision.encoder.layers.24.layer_norm1.weight" not in shapes
    assert model.text.config.num_attention_heads == 12 and model.vision.config.layer_norm_eps == 1e-6


# ---------- ensemble ----------

def test_average_ranks_with_ties():
    ranks = average_ranks(torch.tensor([0.3, 0.1, 0.3, 0.3, 0.5]))
    assert torch.equal(ranks, torch.tensor([2.0, 0.0, 2.0, 2.0, 4.0]))
    assert torch.equal(average_ranks(torch.tensor([[1.0, 5.0], [2.0, 5.0]])), torch.tensor([[0.0, 0.5], [1.0, 0.5]]))


def test_rank_average_hand_example():
    scores = torch.tensor([[0.1, 3.0], [0.5, 1.0], [0.5, 2.0], [0.9, 0.0]])
    # member 0 ranks: 0, 1.5, 1.5, 3 (a tie); member 1 ranks: 3, 1, 2, 0
    assert torch.equal(rank_average(scores), torch.tensor([1.5, 1.25, 1.75, 1.5]))
    assert torch.equal(rank_average(scores, torch.tensor([3.0, 1.0])), torch.tensor([0.75, 1.375, 1.625, 2.25]))
    assert torch.equal(rank_average(scores, torch.tensor([0.0, 2.0])), torch.tensor([3.0, 1.0, 2.0, 0.0]))
    assert torch.equal(rank_average(scores * 100 - 7), rank_average(scores))  # ranks ignore each scale
    with pytest.raises(AssertionError, match="non-negative"):
        rank_average(scores, torch.tensor([1.0, -1.0]))
    with pytest.raises(AssertionError, match=r"weights must be \(2,\)"):
        rank_average(scores, torch.tensor([1.0]))


class Lookup:
    """A stand-in member verifier: the score of an image is a fixed function of its first pixel."""

    def __init__(self, name: str, fn):
        from inference_scaling.verifiers.base import VerifierCost

        self.name, self.fn, self.cost = name, fn, VerifierCost()

    def __call__(self, images, prompts):
        self.cost.calls += 1
        self.cost.images += len(images)
        return self.fn(images[:, 0, 0, 0])


def test_ensemble_ranks_within_each_condition():
    values = torch.tensor([0.1, 0.7, 0.4, 0.2, 0.9])
    x = values.view(5, 1, 1, 1).expand(5, 3, 4, 4).clone()
    prompts = ["a", "b", "a", "b", "a"]
    ensemble = Ensemble([Lookup("up", lambda v: v), Lookup("down", lambda v: -v)], weights=[3.0, 1.0])
    scores = ensemble(x, prompts)
    # "a" holds 0.1, 0.4, 0.9 → up ranks 0, 1, 2; down ranks 2, 1, 0; "b" holds 0.7, 0.2 → up 1, 0; down 0, 1
    expected = torch.tensor([(0 * 3 + 2) / 4, (1 * 3 + 0) / 4, (1 * 3 + 1) / 4, (0 * 3 + 1) / 4, (2 * 3 + 0) / 4])
    assert torch.equal(scores, expected)
    assert ensemble.set_level and ensemble.cost.calls == 2 and ensemble.cost.images == 5
    one_group = ensemble(x, prompts, groups=torch.zeros(5, dtype=torch.long))
    assert torch.equal(one_group, rank_average(torch.stack([values, -values], 1), torch.tensor([3.0, 1.0])))
    with pytest.raises(ValueError, match="one non-negative number per member"):
        Ensemble([Lookup("up", lambda v: v)], weights=[1.0, 1.0])
    with pytest.raises(ValueError, match="at least one member"):
        Ensemble([])


def test_ensemble_of_tiny_t2i_verifiers(clip_encoder, image_reward, tmp_path):
    torch.save(mlp_state(16, seed=7), tmp_path / "head.pth")
    members = [Aesthetic(clip_encoder, load_head(str(tmp_path / "head.pth"), 16)), ClipScore(clip_encoder),
               image_reward]
    ensemble = Ensemble(members)
    x, prompts = images(6), ["a red cat"] * 6
    scores = ensemble(x, prompts)
    member_scores = torch.stack([m(x, prompts) for m in members], 1)
    assert torch.allclose(scores, rank_average(member_scores))
    assert scores.shape == (6,) and (scores >= 0).all() and (scores <= 5).all()
    assert math.isclose(scores.sum().item(), 15.0, abs_tol=1e-5)  # mean rank over members: ranks sum to N(N-1)/2
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    assert torch.allclose(ensemble(x[perm], prompts), scores[perm])


# ---------- configs ----------

def test_configs_are_typed_and_named():
    for cls, name in [(ClipScoreConfig, "clip_score"), (AestheticConfig, "aesthetic"),
                      (ImageRewardConfig, "image_reward"), (EnsembleConfig, "ensemble")]:
        cfg = OmegaConf.structured(cls)
        assert cfg.name == name
    cfg = OmegaConf.structured(EnsembleConfig)
    assert set(cfg.members) == set(MEMBERS) and cfg.clip_score.scale == 2.5
    with pytest.raises(Exception, match="batch_size"):
        OmegaConf.merge(OmegaConf.structured(ClipScoreConfig), {"batch_size": "many"})
    bad = EnsembleConfig(members={"clip_score": 1.0, "pickscore": 1.0})
    with pytest.raises(ValueError, match=r"unknown ensemble members \['pickscore'\]"):
        build_ensemble(bad)


def test_loading_from_local_folders(clip_encoder, tmp_path):
    """The from_config / from_pretrained paths users take, on a tiny CLIP saved as a transformers folder."""
    folder = tmp_path / "tiny-clip"
    clip_encoder.model.save_pretrained(folder)
    clip_encoder.tokenizer.save_pretrained(folder)
    torch.save(mlp_state(16, seed=8), tmp_path / "head.pth")
    x = images(4)
    clip = ClipScore.from_config(ClipScoreConfig(clip=str(folder), batch_size=2), device="cpu")
    assert torch.allclose(clip(x, PROMPTS[:4]), ClipScore(clip_encoder)(x, PROMPTS[:4]), atol=1e-5)
    aesthetic = Aesthetic.from_config(AestheticConfig(weights=str(tmp_path / "head.pth"), clip=str(folder),
                                                      input_size=16), device="cpu")
    assert aesthetic(x, PROMPTS[:4]).shape == (4,)
    cfg = EnsembleConfig(members={"clip_score": 1.0, "aesthetic": 2.0},
                         clip_score=ClipScoreConfig(clip=str(folder)),
                         aesthetic=AestheticConfig(weights=str(tmp_path / "head.pth"), clip=str(folder), input_size=16))
    ensemble = Ensemble.from_config(cfg, device="cpu")
    assert ensemble.members[0].encoder is ensemble.members[1].encoder  # one CLIP for both
    assert torch.equal(ensemble.weights, torch.tensor([1.0, 2.0]))
    assert ensemble(x, ["a cat"] * 4).shape == (4,)


def test_image_reward_tokenizer_adds_blips_tokens(tmp_path):
    BertTokenizer(vocab={w: i for i, w in enumerate(BERT_WORDS)}).save_pretrained(tmp_path)
    tokenizer = load_tokenizer(str(tmp_path))
    assert len(tokenizer) == len(BERT_WORDS) + 2  # bert-base-uncased: 30522 + 2 = ImageReward's 30524
    ids = tokenizer(["a red cat"], padding="max_length", truncation=True, max_length=35)["input_ids"][0]
    assert len(ids) == 35 and ids[:5] == [2, 5, 6, 8, 3] and ids[5:] == [0] * 30  # [CLS] a red cat [SEP] [PAD]...
