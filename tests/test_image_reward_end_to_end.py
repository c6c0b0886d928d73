"""ImageReward end to end: random search on the embedded digits model with a tiny random ImageReward saved in the
folder format (`ImageReward.save_pretrained`), alone and in the paper's three-member verifier ensemble."""

import pytest
import torch
from safetensors.torch import save_file
from transformers import BertTokenizer, BlipTextConfig, BlipVisionConfig

from inference_scaling.datasets import DIGIT_NAMES
from inference_scaling.runner import run
from inference_scaling.verifiers.aesthetic import ScoreMLP
from inference_scaling.verifiers.image_reward import ImageReward, ImageRewardModel, load_tokenizer

DIGITS = ("logger=none", "progress=false", "benchmark.per_class=2", "budget.nfe=9")

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_image_reward_folder(tmp_path_factory):
    """A one-layer BLIP of width 32 on 32×32 images whose tokenizer knows the digits' prompts ("zero" … "nine")."""
    root = tmp_path_factory.mktemp("image_reward")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *DIGIT_NAMES]
    BertTokenizer(vocab={w: i for i, w in enumerate(words)}).save_pretrained(root / "bert")
    tokenizer = load_tokenizer(str(root / "bert"))
    # BLIP's vision default initializer_range is 1e-10, which would make every image look the same.
    vision = BlipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                              image_size=32, patch_size=16, layer_norm_eps=1e-6, initializer_range=0.2)
    text = BlipTextConfig(vocab_size=len(tokenizer), hidden_size=32, encoder_hidden_size=32, intermediate_size=64,
                          num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=40,
                          initializer_range=0.2, is_decoder=True, use_cache=False, pad_token_id=0, bos_token_id=None,
                          eos_token_id=None, sep_token_id=None)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = ImageRewardModel(vision, text)
    return ImageReward(model, tokenizer).save_pretrained(root / "tiny-image-reward")


def test_image_reward_end_to_end(config, tiny_image_reward_folder):
    result = run(config(*DIGITS, "verifier=image_reward", f"verifier.weights={tiny_image_reward_folder}"))
    assert result["metrics"]["n_candidates"] == 3
    assert len({round(r["search_score"], 6) for r in result["records"]}) > 1
    # The runner scored with the folder's network and its own tokenizer (verifier.tokenizer left "").
    direct = ImageReward.from_pretrained(str(tiny_image_reward_folder))(result["images"], result["prompts"])
    assert torch.allclose(direct, torch.tensor([r["final_score"] for r in result["records"]]), atol=1e-5)


def test_ensemble_of_all_three_members_end_to_end(config, tiny_image_reward_folder, tiny_clip_folder, tmp_path):
    torch.manual_seed(2)
    head = tmp_path / "head.safetensors"
    save_file(ScoreMLP(16).state_dict(), str(head))
    result = run(config(*DIGITS, "verifier=ensemble", f"verifier.clip_score.clip={tiny_clip_folder}",
                        f"verifier.aesthetic.clip={tiny_clip_folder}", f"verifier.aesthetic.weights={head}",
                        "verifier.aesthetic.input_size=16", f"verifier.image_reward.weights={tiny_image_reward_folder}",
                        "search.max_batch_size=60", "verifier.aesthetic.batch_size=60",
                        "verifier.clip_score.batch_size=60", "verifier.image_reward.batch_size=60"))
    # One ensemble call holds all 20 conditions × 3 candidates; each of the three members scores them in one pass.
    assert result["metrics"]["verifier_calls"] == 60 and result["metrics"]["verifier_forward_passes"] == 3
    # Mean rank among a condition's 3 candidates: the winner's is between 1 and 2 (rank 0 = worst).
    assert all(1.0 <= r["search_score"] <= 2.0 for r in result["records"]), result["records"]
    assert any(r["search_score"] < 2.0 for r in result["records"])  # the members disagree somewhere
    assert all(r["final_score"] == r["search_score"] for r in result["records"])  # ranks need the candidates


def test_only_image_reward_takes_a_weights_folder(config, tiny_image_reward_folder):
    """A folder passes validation for the verifier that reads one; for a verifier that reads a file it is refused
    up front, before any job starts."""
    from inference_scaling.config import ConfigError, validate

    assert validate(config(*DIGITS, "verifier=image_reward", f"verifier.weights={tiny_image_reward_folder}")) == 3
    with pytest.raises(ConfigError, match="verifier.weights: weights file .* does not exist"):
        validate(config(*DIGITS, "verifier=aesthetic", f"verifier.weights={tiny_image_reward_folder}"))
