"""A job's record on disk, written so that a crash never leaves a half-written file.

Each file goes to a temporary name and is renamed into place; `metrics.json` is written last and marks a
finished job (the report command reads only folders that have it).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path

import torch

METRICS = "metrics.json"


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def strict_json(value):
    """`value` with every non-finite float (NaN, ±inf) as None, so that it dumps as strict JSON (null)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value


def csv_cell(value):
    """A results.csv cell: every non-finite float (a failed score: NaN, ±inf) is written as `nan`."""
    return "nan" if isinstance(value, float) and not math.isfinite(value) else value


def image_grid_png(images: torch.Tensor, path: Path, labels: list[str] | None = None, columns: int = 10,
                   max_images: int = 100) -> None:
    """A grid of the first `max_images` images (model space [-1, 1]) with their condition as caption."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images = images[:max_images].cpu().float()
    rows = (len(images) + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 0.9, rows * 1.0), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < len(images):
            pixels = ((images[k].clamp(-1, 1) + 1) / 2).permute(1, 2, 0).squeeze(-1).numpy()  # RGB wants [0, 1]
            ax.imshow(pixels, cmap="gray", vmin=0, vmax=1)
            if labels is not None:
                ax.set_title(labels[k], fontsize=6)
    fig.tight_layout(pad=0.2)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    _atomic_write(path, buffer.getvalue())


def write_job(out: Path, config_yaml: str, result: dict, save_images: bool) -> None:
    """config.yaml, results.csv (one row per condition), lineage.jsonl (per condition, what replays the chosen
    sample, for algorithms that record it), samples.png (the first images), then metrics.json. The selected
    images themselves are the job's chunk files (`inference_scaling.store.load_selected`)."""
    out.mkdir(parents=True, exist_ok=True)
    _atomic_write(out / "config.yaml", config_yaml.encode())
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(result["records"][0]))
    writer.writeheader()
    writer.writerows({k: csv_cell(v) for k, v in record.items()} for record in result["records"])
    _atomic_write(out / "results.csv", text.getvalue().encode())
    if result.get("lineage") is not None:
        lines = (json.dumps({"condition_id": r["condition_id"], **entry}) for r, entry in zip(result["records"], result["lineage"]))
        _atomic_write(out / "lineage.jsonl", ("\n".join(lines) + "\n").encode())
    if save_images:
        image_grid_png(result["images"], out / "samples.png", result["prompts"])
    _atomic_write(out / METRICS, json.dumps(strict_json(result["metrics"]), indent=2, allow_nan=False).encode())
