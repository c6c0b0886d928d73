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


def tiny_clip(seed: int = 0, layers: int = 2, projection: int = 16) -> tuple[CLIPModel, CLIPTokenizer]:
    """A CLIP of width 32 and projection 16 (or `projection`) on 32×32 images, seeded without touching the global
    stream."""
    tokenizer = tiny_clip_tokenizer()
    config = CLIPConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
                         num_attention_heads=2, max_position_embeddings=77, bos_token_id=0, eos_token_id=1,
                         pad_token_id=1),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=layers, num_attention_heads=2,
                           image_size=32, patch_size=8),
        projection_dim=projection)
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


def smoke_models(folder: Path) -> Path:
    """The tiny random stand-ins the figure commands' smoke runs read (conf/smoke/*.yaml, from
    $INFERENCE_SCALING_SMOKE): a SiT in the official layout with an SD-style VAE, a CLIP folder, InceptionV3 weights
    and a reference batch with its statistics, a DINOv2 ViT-S/14 backbone with a 1,000-class linear head, a
    FLUX.1-dev-like pipeline, an aesthetic head, and T2I-CompBench's BLIP VQA, OWLv2 and DPT."""
    import numpy as np
    import timm
    from diffusers import AutoencoderKL
    from safetensors.torch import save_file
    from test_flow_t2i import FLUX_SCHEDULER, flux_pipeline
    from test_sit import TINY
    from test_t2i_compbench_eval import make_blip_vqa, make_dpt, make_owlv2
    from test_t2i_verifiers import mlp_state

    from inference_scaling.evaluation.imagenet import InceptionEvaluator
    from inference_scaling.models.sit import SiT
    from inference_scaling.verifiers.fid_oracle import feature_statistics

    folder.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        torch.save(SiT(**TINY).state_dict(), folder / "sit.pt")
        AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                      up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 8), layers_per_block=1,
                      latent_channels=4, norm_num_groups=4, sample_size=16).save_pretrained(folder / "vae")
        backbone = timm.create_model("vit_small_patch14_dinov2", pretrained=False, img_size=224, num_classes=0)
        save_file({k: v.contiguous() for k, v in backbone.state_dict().items()},
                  str(folder / "dino_backbone.safetensors"))
        torch.save({"weight": torch.randn(1000, 768) / 768 ** 0.5, "bias": torch.zeros(1000)},
                   folder / "dino_head.pth")
        reference = torch.randint(0, 256, (6, 3, 16, 16), dtype=torch.uint8)
    clip, tokenizer = tiny_clip(layers=1, projection=768)  # ViT-L/14's projection: the aesthetic head's input
    clip.save_pretrained(folder / "clip")
    tokenizer.save_pretrained(folder / "clip")
    inception = random_inception_weights(folder / "inception.pth")
    pool, _ = InceptionEvaluator(inception, batch_size=6)(reference)
    mu, sigma = feature_statistics(pool)
    np.savez(folder / "reference.npz", mu=mu.numpy(), sigma=sigma.numpy(), arr_0=reference.permute(0, 2, 3, 1).numpy())
    flux_pipeline(True, FLUX_SCHEDULER).save_pretrained(folder / "flux")
    save_file(mlp_state(768, seed=3), str(folder / "aesthetic_head.safetensors"))
    for name, make in [("blip_vqa", make_blip_vqa), ("owlv2", make_owlv2), ("dpt", make_dpt)]:
        (folder / name).mkdir()
        make(folder / name)
    return folder
