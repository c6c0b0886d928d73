"""Tiny randomly initialised networks built from configs, standing in for hub checkpoints in tests."""

import torch
from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

CHARACTERS = "abcdefghijklmnopqrstuvwxyz0123456789.,"


def tiny_clip_tokenizer() -> CLIPTokenizer:
    """A character-level CLIP tokenizer built in memory (no vocab files)."""
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in CHARACTERS:
        vocab[ch] = len(vocab)
        vocab[ch + "</w>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[])


def tiny_clip(seed: int = 0, layers: int = 2) -> tuple[CLIPModel, CLIPTokenizer]:
    """A CLIP of width 32 and projection 16 on 32×32 images, seeded without touching the global stream."""
    tokenizer = tiny_clip_tokenizer()
    config = CLIPConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
                         num_attention_heads=2, max_position_embeddings=77, bos_token_id=0, eos_token_id=1,
                         pad_token_id=1),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=layers, num_attention_heads=2,
                           image_size=32, patch_size=8),
        projection_dim=16)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return CLIPModel(config).eval(), tokenizer
