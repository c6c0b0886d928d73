"""One command per figure of Ma et al. (2025): run its sweeps, then draw it.

    inference-scaling-figure NAME OUT [--smoke] [--x nfe|gflops] [Hydra overrides for every job...]
    inference-scaling-figure --list

Each figure is a list of lines; a line is a Hydra experiment config (`conf/experiment/<line>.yaml`, selectable
by hand as `+experiment=<line>`) that fixes the model, verifier, search and its sweep (`hydra.sweeper.params`).
The command runs every line as one multirun into `OUT/<line>` (each in its own process, one after another; a
rerun skips the jobs that finished and resumes the others after their last chunk), then writes the figure into
OUT: the scaling curves (`inference_scaling.reporting.curves`: scaling.png/.csv/.md) or the verifier × metric table
(`inference_scaling.reporting.table`: table.md/.csv/.png); where the jobs log to W&B, all of them share one group
and the figure is logged to it (the group's run "report"). `--smoke` runs each line's `<line>_smoke` twin instead:
the same chain with few conditions and small budgets, for tiny random models given as overrides (the test suite
runs every figure so).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from inference_scaling.reporting import curves, table


@dataclass(frozen=True)
class Figure:
    title: str
    lines: tuple[str, ...]  # experiment configs, one multirun each
    report: str = "curves"  # curves | table
    x: str = "nfe"  # the curves' x axis (curves.X_AXES)
    per_category: str = ""  # table columns: this metric per category (`<metric>/<category>`) instead of metric_*


FIGURES = {
    "fig1": Figure("Figures 1 and 3: ImageNet FID and IS against NFEs, more denoising steps against random search "
                   "with the IS- and FID-oracles (SiT-XL/2)", ("fig1_steps", "fig1_random_is", "fig1_random_fid")),
    "fig4": Figure("Figures 4 and 5: supervised (CLIP zero-shot, DINO linear head) and self-supervised (DINO) "
                   "verifiers at guidance 1.0, 1.35, 1.5 (SiT-XL/2)",
                   ("fig4_clip_zeroshot", "fig4_dino_linear", "fig5_ssl_dino")),
    "fig6": Figure("Figure 6: zero-order search and search over paths with the DINO verifier at several N (SiT-XL/2)",
                   ("fig6_zero_order", "fig6_paths")),
    "fig11": Figure("Figure 11: SiT-B/2, L/2, XL/2 with and without search against total denoising GFLOPs",
                    ("fig11_no_search", "fig11_search"), x="gflops"),
    "table2": Figure("Table 2: FLUX.1-dev on DrawBench, verifier × {random, zero-order, paths} at 2,880 search "
                     "NFEs, scored by Aesthetic, CLIPScore, ImageReward and the LLM grader",
                     ("table2_no_search", "table2_search"), report="table"),
    "table1": Figure("Table 1: FLUX.1-dev on T2I-CompBench at 1,920 search NFEs, per category",
                     ("table1_no_search", "table1_search"), report="table", per_category="compbench"),
}


class FigureError(RuntimeError):
    """A line's multirun that failed: the figure is not drawn."""


def line_command(line: str, out: Path, overrides: list[str]) -> list[str]:
    """The multirun of one line: its experiment config into OUT/<line>, then the caller's overrides."""
    return [sys.executable, "-m", "inference_scaling", "-m", f"+experiment={line}",
            f"hydra.sweep.dir={out / line}", *overrides]


def launch(command: list[str]) -> int:
    """Run one line's multirun in its own process (the accelerator's memory is freed between lines)."""
    return subprocess.call(command)


def logs_to_wandb(overrides: list[str], smoke: bool) -> bool:
    """Whether the jobs log to W&B (the default logger), so the figure goes to their group too."""
    return not smoke and not any(o.lstrip("+") in ("logger=none", "logger.backend=none") for o in overrides)


def run_figure(name: str, out: Path, overrides: list[str], smoke: bool = False, x: str | None = None,
               wandb_mode: str = "offline") -> Path:
    """Run every line of figure `name` into `out` and draw it; the path of the figure's image. Where the jobs log to
    W&B, all lines' jobs share the study's group and the figure is logged to it as the run "report"."""
    figure = FIGURES[name]
    out.mkdir(parents=True, exist_ok=True)
    wandb = ["--wandb", "--wandb-mode", wandb_mode] if logs_to_wandb(overrides, smoke) else []
    if wandb:
        from inference_scaling.reporting.wandb_logger import study_group

        study_group(out)  # fixed in OUT/.wandb_group before the first job: every line's jobs join it
    for line in figure.lines:
        experiment = f"{line}_smoke" if smoke else line
        code = launch(line_command(experiment, out, overrides))
        if code != 0:
            raise FigureError(f"the multirun of line {experiment} exited with {code}; its jobs are in {out / experiment}"
                              f" (a rerun of the same command resumes them)")
    if figure.report == "table":
        table.main([str(out), *(["--per-category", figure.per_category] if figure.per_category else []), *wandb])
        return out / "table.png"
    curves.main([str(out), "--x", x or figure.x, *wandb])
    return out / "scaling.png"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="inference-scaling-figure",
                                     description="Run the sweeps of one of the paper's figures, then draw it.")
    parser.add_argument("name", nargs="?", choices=list(FIGURES), help="the figure")
    parser.add_argument("out", nargs="?", type=Path, help="the study folder: one multirun folder per line")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every job, e.g. model.device=cuda:auto")
    parser.add_argument("--smoke", action="store_true", help="run each line's <line>_smoke twin (few conditions, "
                                                             "small budgets; give tiny models as overrides)")
    parser.add_argument("--x", choices=list(curves.X_AXES), default=None, help="the curves' x axis (default: the "
                                                                              "figure's)")
    parser.add_argument("--wandb-mode", choices=["offline", "online", "disabled"], default="offline",
                        help="the figure's W&B run (where the jobs log to W&B: not with logger=none or --smoke)")
    parser.add_argument("--list", action="store_true", help="list the figures and their lines")
    args = parser.parse_intermixed_args(argv)  # options may come between the overrides
    if args.list:
        for name, figure in FIGURES.items():
            print(f"{name}: {figure.title}\n    lines: {', '.join(figure.lines)}")
        return
    if args.name is None or args.out is None:
        parser.error(f"give a figure ({', '.join(FIGURES)}) and a study folder, or --list")
    try:
        drawn = run_figure(args.name, args.out, args.overrides, args.smoke, args.x, args.wandb_mode)
    except FigureError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    print(f"{args.name}: {drawn}")


if __name__ == "__main__":
    main()
