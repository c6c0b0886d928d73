"""Retrain the embedded digits classifier (fixed seed; seconds on a CPU) and report held-out accuracy.

    python experiments/train_digits_classifier.py [--out inference_scaling/assets/digits_classifier.safetensors]

Trained on 80 % of the digits with light Gaussian pixel noise as augmentation; accuracy is measured on the
fixed held-out 20 % (`inference_scaling.datasets.split_digits`).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from inference_scaling import weights
from inference_scaling.datasets import split_digits
from inference_scaling.models.digits_classifier import DigitsClassifier

ASSET = Path(__file__).resolve().parents[1] / "inference_scaling" / "assets" / "digits_classifier.safetensors"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--noise", type=float, default=0.2, help="std of pixel-noise augmentation")
    parser.add_argument("--label-smoothing", type=float, default=0.1,
                        help="keeps probabilities off 1.0 so the IS-oracle and IS have headroom")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ASSET)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    (x_train, y_train), (x_test, y_test) = split_digits()
    net = DigitsClassifier()
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    start = time.perf_counter()
    for step in range(args.steps):
        idx = torch.randint(len(y_train), (args.batch,), generator=gen)
        x = x_train[idx] + args.noise * torch.randn(x_train[idx].shape, generator=gen)
        loss = torch.nn.functional.cross_entropy(net(x), y_train[idx], label_smoothing=args.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    seconds = time.perf_counter() - start
    net.eval()
    with torch.no_grad():
        accuracy = (net(x_test).argmax(-1) == y_test).float().mean().item()
    config = {"hidden": net.body[1].out_features, "features": net.head.in_features, "num_classes": net.head.out_features}
    weights.save(args.out, net, config)
    print(json.dumps({"train_seconds": round(seconds, 1), "parameters": sum(p.numel() for p in net.parameters()),
                      "held_out_accuracy": round(accuracy, 4), "held_out_images": len(y_test),
                      "file_bytes": args.out.stat().st_size, "out": str(args.out)}))


if __name__ == "__main__":
    main()
