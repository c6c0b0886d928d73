"""Train the scenes benchmark's flow model (fixed seed; a few minutes on 2 CPU cores).

    python experiments/train_scenes_flow.py [--steps 6000] [--pool 60000] [--width 256 --hidden 512 --depth 3]
                                            [--float16] [--out PATH]

Flow matching (experiments/flow_matching.py) on a pool of procedurally generated scenes, class-balanced over
the 12 (count, relation) conditions, generated once with a fixed seed; conditions dropped to the null
tokens 10 % of the time. Writes inference_scaling/assets/scenes_flow.safetensors; the defaults reproduce it.
The model-size study's small and large models are the same recipe at other sizes:

    python experiments/train_scenes_flow.py --width 128 --hidden 256 --depth 2 \
        --out inference_scaling/assets/scenes_flow_small.safetensors
    python experiments/train_scenes_flow.py --width 480 --hidden 960 --depth 3 --float16 \
        --out inference_scaling/assets/scenes_flow_large.safetensors   # float16: the file stays under 10 MiB
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from flow_matching import train_flow

from inference_scaling import scenes, weights
from inference_scaling.models.scenes import new_flow

ASSET = Path(__file__).resolve().parents[1] / "inference_scaling" / "assets" / "scenes_flow.safetensors"
DATA_SEED = 1_000  # training scenes; evaluation references use other seeds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--pool", type=int, default=60_000, help="training scenes generated up front")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--width", type=int, default=256, help="FlowMLP width (the residual stream)")
    parser.add_argument("--hidden", type=int, default=512, help="FlowMLP hidden units per block")
    parser.add_argument("--depth", type=int, default=3, help="FlowMLP residual blocks")
    parser.add_argument("--out", type=Path, default=ASSET)
    parser.add_argument("--float16", action="store_true", help="store the weights in float16 (half the file; they "
                                                               "load as float32)")
    args = parser.parse_args()
    start = time.perf_counter()
    conditions = scenes.balanced_conditions(args.pool // 12)
    images = scenes.generate(conditions, DATA_SEED)
    generate_seconds = time.perf_counter() - start

    def sample(batch: int, gen: torch.Generator):
        idx = torch.randint(len(conditions), (batch,), generator=gen)
        return images[idx], conditions[idx]

    torch.manual_seed(args.seed)  # the initial weights
    net = train_flow(new_flow(args.width, args.hidden, args.depth), sample, args.steps, args.batch, args.lr, args.seed)
    seconds = time.perf_counter() - start
    weights.save(args.out, net, net.config(), torch.float16 if args.float16 else None)
    print(json.dumps({"train_seconds": round(seconds, 1), "data_seconds": round(generate_seconds, 1),
                      "parameters": sum(p.numel() for p in net.parameters()),
                      "config": net.config(), "file_bytes": args.out.stat().st_size,
                      "out": str(args.out)}))


if __name__ == "__main__":
    main()
