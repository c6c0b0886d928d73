"""Reference statistics (mu, sigma) for the FID-oracle, written as an .npz (torch-fidelity / pytorch-fid layout).

    python -m inference_scaling.evaluation.reference_stats OUT.npz --digits
        all 1,797 scikit-learn digits in the digits classifier's 'hidden' features (128-d);
    python -m inference_scaling.evaluation.reference_stats OUT.npz --folder DIR [--size 256] [--weights PTH]
        the images in DIR (png/jpg/jpeg; with --deep also in subfolders) in InceptionV3's 2048-d pool features via
        torch-fidelity, e.g. ImageNet training images resized and centre-cropped to 256 (--size) as ADM's reference
        batches are; without --size, all images must share one size.

The file is written to a temporary name in the same folder and renamed, so a reader never sees half a file.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from torch import Tensor

from inference_scaling.models.digits_classifier import DEFAULT_WEIGHTS
from inference_scaling.verifiers.fid_oracle import digits_reference, feature_statistics
from inference_scaling.verifiers.inception_is import load_inception


def save_reference(path: Path, mu: Tensor, sigma: Tensor) -> None:
    """Write mu (D,) and sigma (D, D) as float64 arrays to `path` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, mu=mu.double().cpu().numpy(), sigma=sigma.double().cpu().numpy())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def folder_reference(folder: str, weights: str = "", size: int = 0, deep: bool = False, device: str = "cpu",
                     batch_size: int = 64) -> tuple[Tensor, Tensor]:
    """Statistics of the images in `folder` in torch-fidelity's InceptionV3 2048-d features (its FID layer);
    `size` > 0 resizes the shorter side to `size` and centre-crops (torch-fidelity's samples_resize_and_crop)."""
    from torch_fidelity.utils import get_featuresdict_from_dataset, prepare_input_from_id

    if not Path(folder).is_dir():
        raise FileNotFoundError(f"image folder {folder!r} does not exist")
    dataset = prepare_input_from_id(1, input1=folder, samples_find_deep=deep, samples_resize_and_crop=size,
                                    verbose=False)
    net = load_inception(weights, ("2048",), device)
    features = get_featuresdict_from_dataset(dataset, net, batch_size, cuda=device.startswith("cuda"),
                                             save_cpu_ram=True, verbose=False)["2048"]
    return feature_statistics(features)


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m inference_scaling.evaluation.reference_stats",
                                     description="Write FID reference statistics (mu, sigma) to an .npz.")
    parser.add_argument("out", type=Path, help="output .npz")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--digits", action="store_true", help="all 1,797 digits, digits-classifier features")
    source.add_argument("--folder", help="a folder of images, InceptionV3 2048-d features")
    parser.add_argument("--weights", default="", help="feature network weights (default: digits classifier "
                        f"{DEFAULT_WEIGHTS} / torch-fidelity's Inception, downloaded once)")
    parser.add_argument("--size", type=int, default=0, help="--folder: resize and centre-crop to this size")
    parser.add_argument("--deep", action="store_true", help="--folder: also read subfolders")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args(argv)
    if args.digits:
        mu, sigma = digits_reference(args.weights or DEFAULT_WEIGHTS)
    else:
        mu, sigma = folder_reference(args.folder, args.weights, args.size, args.deep, args.device, args.batch_size)
    save_reference(args.out, mu, sigma)
    print(f"wrote {args.out}: mu {tuple(mu.shape)}, sigma {tuple(sigma.shape)}")


if __name__ == "__main__":
    main()
