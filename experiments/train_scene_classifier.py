"""Train the scenes benchmark's learned verifier on clean generated scenes; report held-out accuracy.

    python experiments/train_scene_classifier.py [--steps 4000]

Trained only on clean scenes (no noise augmentation), as a supervised verifier trained on real data is;
accuracy is measured on held-out scenes from another seed. Writes
inference_scaling/assets/scene_classifier.safetensors.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from inference_scaling import scenes, weights
from inference_scaling.models.scenes import SceneClassifier

ASSET = Path(__file__).resolve().parents[1] / "inference_scaling" / "assets" / "scene_classifier.safetensors"
TRAIN_SEED, TEST_SEED = 2_000, 3_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--train", type=int, default=36_000)
    parser.add_argument("--test", type=int, default=3_600)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ASSET)
    args = parser.parse_args()
    start = time.perf_counter()
    c_train = scenes.balanced_conditions(args.train // 12)
    x_train = scenes.generate(c_train, TRAIN_SEED)
    c_test = scenes.balanced_conditions(args.test // 12)
    x_test = scenes.generate(c_test, TEST_SEED)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    net = SceneClassifier()
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    for step in range(args.steps):
        idx = torch.randint(len(c_train), (args.batch,), generator=gen)
        count_logits, relation_logits = net(x_train[idx])
        loss = F.cross_entropy(count_logits, c_train[idx, 0]) + F.cross_entropy(relation_logits, c_train[idx, 1])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    seconds = time.perf_counter() - start
    net.eval()
    with torch.no_grad():
        count_logits, relation_logits = net(x_test)
    count_acc = (count_logits.argmax(-1) == c_test[:, 0]).float().mean().item()
    relation_acc = (relation_logits.argmax(-1) == c_test[:, 1]).float().mean().item()
    both = ((count_logits.argmax(-1) == c_test[:, 0]) & (relation_logits.argmax(-1) == c_test[:, 1])).float().mean().item()
    weights.save(args.out, net, {"hidden": net.body[1].out_features, "features": net.count_head.in_features})
    print(json.dumps({"train_seconds": round(seconds, 1), "parameters": sum(p.numel() for p in net.parameters()),
                      "held_out_count_accuracy": round(count_acc, 4), "held_out_relation_accuracy": round(relation_acc, 4),
                      "held_out_both_accuracy": round(both, 4), "held_out_images": len(c_test),
                      "file_bytes": args.out.stat().st_size, "out": str(args.out)}))


if __name__ == "__main__":
    main()
