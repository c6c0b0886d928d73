"""The model-size study's figure and table (experiments/scenes_model_sizes.sh): accuracy against denoising GFLOPs.

    python experiments/plot_model_sizes.py OUT_DIR

Reads every finished job below OUT_DIR (`inference_scaling.reporting.curves.collect`: its metrics.json, label and
bootstrap intervals) and writes into OUT_DIR:
  model_sizes.png  checker accuracy against GFLOPs per condition (GFLOPs per NFE × (search + final NFEs)), one colour
                   per model, one marker and line style per line kind (no search / each verifier), 95 % bands;
  model_sizes.md   the table: model, parameters, GFLOPs/NFE, line, NFEs, GFLOPs per condition, accuracy [95 % CI].
A job's model is its config's model.name; its parameters are counted from its model.weights file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from omegaconf import OmegaConf

from inference_scaling.models.flow_mlp import load_flow
from inference_scaling.reporting.curves import collect

MARKERS = ["o", "s", "^", "D", "v"]
STYLES = ["--", "-", ":", "-.", (0, (1, 1))]


def model_rows(folder: Path) -> list[dict]:
    """collect()'s rows with `model`, `parameters` and `kind` (the label without its "<model>: " prefix)."""
    rows, parameters = collect(folder), {}
    for row in rows:
        model = OmegaConf.load(folder / row["job"] / "config.yaml").model
        if model.weights not in parameters:
            parameters[model.weights] = sum(p.numel() for p in load_flow(model.weights).parameters())
        row.update(model=model.name, parameters=parameters[model.weights],
                   kind=row["line"].removeprefix(f"{model.name}: "))
    return sorted(rows, key=lambda r: (r["parameters"], r["kind"], r["gflops_per_condition"]))


def ci(row: dict, key: str) -> str:
    lo, hi = row.get(f"{key}_lo"), row.get(f"{key}_hi")
    return f"{row[key]:.3f}" + (f" [{lo:.2f}, {hi:.2f}]" if lo is not None and hi is not None else "")


def table(rows: list[dict]) -> str:
    lines = ["| model | parameters | GFLOPs/NFE | line | NFEs per sample (search + final) | GFLOPs per sample "
             "| accuracy [95 % CI] | count acc. | relation acc. |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        nfes = r["nfe_search_per_condition"] + r["nfe_final_per_condition"]
        lines.append(f"| {r['model']} | {r['parameters']:,} | {r['gflops_per_nfe']:.5f} | {r['kind']} | {nfes:g} "
                     f"| {r['gflops_per_condition']:.4f} | {ci(r, 'accuracy')} | {r['count_accuracy']:.3f} "
                     f"| {r['relation_accuracy']:.3f} |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(r["model"] for r in rows))  # by parameters
    kinds = list(dict.fromkeys(sorted(r["kind"] for r in rows)))
    colours = plt.get_cmap("viridis")([0.0, 0.45, 0.85] if len(models) == 3 else
                                      [k / max(len(models) - 1, 1) for k in range(len(models))])
    fig, ax = plt.subplots(figsize=(10, 4.8))
    for m, model in enumerate(models):
        for k, kind in enumerate(kinds):
            mine = [r for r in rows if r["model"] == model and r["kind"] == kind]
            if not mine:
                continue
            xs = [r["gflops_per_condition"] for r in mine]
            ax.plot(xs, [r["accuracy"] for r in mine], color=colours[m], marker=MARKERS[k % len(MARKERS)],
                    linestyle=STYLES[k % len(STYLES)], label=f"{model} ({mine[0]['parameters'] / 1e6:.2f} M): {kind}")
            if all(r.get("accuracy_lo") is not None for r in mine):
                ax.fill_between(xs, [r["accuracy_lo"] for r in mine], [r["accuracy_hi"] for r in mine],
                                color=colours[m], alpha=0.1, linewidth=0)
    ax.set_xscale("log")
    ax.set_xlabel("GFLOPs per sample (denoising: search + final)")
    ax.set_ylabel("checker accuracy")
    ax.set_title("scenes: model size × search")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="model (parameters): line")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    args = parser.parse_args()
    rows = [r for r in model_rows(args.folder) if r.get("gflops_per_condition") is not None]
    if not rows:
        sys.exit(f"error: no finished job with gflops_per_condition below {str(args.folder)!r}")
    text = table(rows)
    (args.folder / "model_sizes.md").write_text(text)
    plot(rows, args.folder / "model_sizes.png")
    print(text, end="")
    print(f"wrote {args.folder / 'model_sizes.png'}, {args.folder / 'model_sizes.md'}")


if __name__ == "__main__":
    main()
