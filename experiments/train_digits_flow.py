"""Retrain the embedded digits flow model (fixed seed; about two minutes on 2 CPU cores).

    python experiments/train_digits_flow.py [--steps 6000] [--out inference_scaling/assets/digits_flow.safetensors]

Flow matching (experiments/flow_matching.py) on all 1,797 digits, labels dropped to the null class 10 % of
the time; the EMA of the weights is saved.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from flow_matching import train_flow

from inference_scaling import weights
from inference_scaling.datasets import load_digits
from inference_scaling.models import digits

ASSET = Path(__file__).resolve().parents[1] / "inference_scaling" / "assets" / "digits_flow.safetensors"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ASSET)
    args = parser.parse_args()
    images, labels = load_digits()

    def sample(batch: int, gen: torch.Generator):
        idx = torch.randint(len(labels), (batch,), generator=gen)
        return images[idx], labels[idx]

    start = time.perf_counter()
    torch.manual_seed(args.seed)  # the initial weights
    net = train_flow(digits.new_model(), sample, args.steps, args.batch, args.lr, args.seed)
    seconds = time.perf_counter() - start
    weights.save(args.out, net, net.config())
    print(json.dumps({"train_seconds": round(seconds, 1), "parameters": sum(p.numel() for p in net.parameters()),
                      "file_bytes": args.out.stat().st_size, "out": str(args.out)}))


if __name__ == "__main__":
    main()
