"""Tiny text encoders and tokenizers built in memory (no vocab files, no hub), for the text-to-image backends."""

import torch
from tiny_models import tiny_clip_tokenizer
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, T5Config, T5EncoderModel, T5TokenizerFast

LETTERS = "abcdefghijklmnopqrstuvwxyz"


def tiny_t5_tokenizer() -> T5TokenizerFast:
    """A character-level T5 (Unigram) tokenizer: pad 0, eos 1, unk 2, '▁x' word starts and single characters."""
    words = ["<pad>", "</s>", "<unk>"] + ["▁" + c for c in LETTERS] + list(LETTERS + "0123456789.,")
    return T5TokenizerFast(vocab=[(w, -1.0) for w in words], extra_ids=0)


def tiny_t5(d_model: int = 32, seed: int = 0) -> tuple[T5EncoderModel, T5TokenizerFast]:
    tokenizer = tiny_t5_tokenizer()
    config = T5Config(vocab_size=len(tokenizer), d_model=d_model, d_kv=8, d_ff=37, num_layers=1, num_heads=4,
                      relative_attention_num_buckets=8, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return T5EncoderModel(config).eval(), tokenizer


def tiny_clip_text(hidden: int = 32, projection: int | None = None, seed: int = 0):
    """A one-layer CLIP text encoder (with a projection head when `projection` is set) and its tokenizer."""
    tokenizer = tiny_clip_tokenizer()
    config = CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=37, num_hidden_layers=1,
                            num_attention_heads=4, max_position_embeddings=77, bos_token_id=0, eos_token_id=1,
                            pad_token_id=1, projection_dim=projection or hidden, hidden_act="gelu")
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = CLIPTextModelWithProjection(config) if projection else CLIPTextModel(config)
    return model.eval(), tokenizer
