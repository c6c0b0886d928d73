"""GFLOPs per NFE of the paper's full-size networks, counted on the meta device (no weights, no compute).

    python experiments/model_flops.py

SiT-B/2, L/2, XL/2 at 256 px (latents 32×32×4, one class label) as inference_scaling.models.sit builds them, and
FLUX.1-dev's transformer (`flux_dev`: diffusers' FluxTransformer2DModel with FLUX.1-dev's architecture) at 1024 px (4,096 image
tokens, 512 T5 tokens). Counted as inference_scaling.flops counts a job's model (torch's FlopCounterMode, 2 FLOPs per
multiply-add). These are the numbers the experiment configs' GPU costs (README, "One command per figure") use.
"""

from __future__ import annotations

import json

import torch
from torch.utils.flop_counter import FlopCounterMode

from inference_scaling.models.sit import SiT

SIT = {"sit_b2": dict(depth=12, hidden_size=768, num_heads=12), "sit_l2": dict(depth=24, hidden_size=1024, num_heads=16),
       "sit_xl2": dict(depth=28, hidden_size=1152, num_heads=16)}


def count(module, *args, **kwargs) -> float:
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        module(*args, **kwargs)
    return counter.get_total_flops() / 1e9


def full_size_gflops() -> dict[str, dict]:
    """Parameters and GFLOPs per NFE of each full-size network, keyed by its model config's name."""
    out = {}
    with torch.device("meta"):
        for name, arch in SIT.items():
            net = SiT(**arch, patch_size=2, latent_size=32, in_channels=4, learn_sigma=True, num_classes=1000)
            out[name] = {"parameters": sum(p.numel() for p in net.parameters()),
                         "gflops_per_nfe": count(net, torch.zeros(1, 4, 32, 32), torch.zeros(1), torch.zeros(1, dtype=torch.long))}
        from diffusers import FluxTransformer2DModel

        flux = FluxTransformer2DModel(patch_size=1, in_channels=64, num_layers=19, num_single_layers=38,
                                      attention_head_dim=128, num_attention_heads=24, joint_attention_dim=4096,
                                      pooled_projection_dim=768, guidance_embeds=True, axes_dims_rope=[16, 56, 56])
        tokens, text = 4096, 512
        out["flux_dev"] = {
            "parameters": sum(p.numel() for p in flux.parameters()),
            "gflops_per_nfe": count(flux, hidden_states=torch.zeros(1, tokens, 64),
                                    encoder_hidden_states=torch.zeros(1, text, 4096),
                                    pooled_projections=torch.zeros(1, 768), timestep=torch.zeros(1),
                                    img_ids=torch.zeros(tokens, 3), txt_ids=torch.zeros(text, 3),
                                    guidance=torch.zeros(1))}
    return out


def main() -> None:
    print(json.dumps(full_size_gflops(), indent=1))


if __name__ == "__main__":
    main()
