"""Retrain the embedded digits flow model (fixed seed; a few minutes on 2 CPU cores).

    python experiments/train_digits_flow.py [--steps 6000] [--out inference_scaling/assets/digits_flow.safetensors]

Flow matching on the linear interpolant x_σ = (1 − σ)·x0 + σ·ε with target v = ε − x0, σ ~ U(0, 1),
labels dropped to the null class 10 % of the time (for classifier-free guidance), AdamW with cosine decay,
an EMA of the weights is what gets saved. Trains on all 1,797 digits.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import torch

from inference_scaling import weights
from inference_scaling.datasets import load_digits
from inference_scaling.models.digits import NULL_CLASS, DigitsFlow

ASSET = Path(__file__).resolve().parents[1] / "inference_scaling" / "assets" / "digits_flow.safetensors"


def train(steps: int, batch: int, lr: float, seed: int, p_uncond: float = 0.1, ema_decay: float = 0.999):
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    images, labels = load_digits()
    net = DigitsFlow()
    ema = copy.deepcopy(net).requires_grad_(False)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.05)
    for step in range(steps):
        idx = torch.randint(len(labels), (batch,), generator=gen)
        x0, y = images[idx], labels[idx].clone()
        y[torch.rand(batch, generator=gen) < p_uncond] = NULL_CLASS
        eps = torch.randn(x0.shape, generator=gen)
        sigma = torch.rand(batch, generator=gen)
        x = (1 - sigma.view(-1, 1, 1, 1)) * x0 + sigma.view(-1, 1, 1, 1) * eps
        loss = (net(x, sigma, y) - (eps - x0)).square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            for p_ema, p in zip(ema.parameters(), net.parameters()):
                p_ema.lerp_(p, 1 - ema_decay)
        if step % 1000 == 0 or step == steps - 1:
            print(f"step {step:5d}  loss {loss.item():.4f}", flush=True)
    return ema


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ASSET)
    args = parser.parse_args()
    start = time.perf_counter()
    net = train(args.steps, args.batch, args.lr, args.seed)
    seconds = time.perf_counter() - start
    config = {"width": net.inp.out_features, "hidden": net.blocks[0].mlp[0].out_features,
              "depth": len(net.blocks), "emb_dim": net.emb_dim}
    weights.save(args.out, net, config)
    n_params = sum(p.numel() for p in net.parameters())
    print(json.dumps({"train_seconds": round(seconds, 1), "parameters": n_params,
                      "file_bytes": args.out.stat().st_size, "out": str(args.out)}))


if __name__ == "__main__":
    main()
