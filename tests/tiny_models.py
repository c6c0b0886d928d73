"""Tiny randomly initialised networks built from configs, standing in for hub checkpoints in tests."""

from pathlib import Path

import pytest
import torch
from torch import nn
from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

from inference_scaling.datasets import to_uint8

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


def random_inception_weights(path: Path) -> str:
    """torch-fidelity's InceptionV3 with random weights, its BatchNorm statistics calibrated on random images (else
    every activation vanishes), saved as a state dict like the published file."""
    import torch_fidelity.feature_extractor_inceptionv3 as tf_inception

    mp = pytest.MonkeyPatch()
    mp.setattr(tf_inception, "load_state_dict_from_url", lambda *args, **kwargs: {})
    mp.setattr(tf_inception.FeatureExtractorInceptionV3, "load_state_dict", lambda self, state, *a, **k: None)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = tf_inception.FeatureExtractorInceptionV3("inception-v3-compat", ["logits_unbiased"])
        calibration = torch.rand(3, 3, 16, 16) * 2 - 1
    mp.undo()
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = None  # cumulative average over the calibration batch
            m.reset_running_stats()
    net.train()
    with torch.no_grad():
        net(to_uint8(calibration))
    torch.save(net.state_dict(), path)
    return str(path)
