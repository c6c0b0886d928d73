"""Cost of every latent backend through its adapter: seconds per NFE by batch size, VAE decode per image, and
each search's NFE throughput against plain batched sampling of the same model (`--searches`).

    python experiments/bench_backends.py                      # CPU: tiny random backends (as in the tests)
    python experiments/bench_backends.py --size real --device cuda --dtype bfloat16 --backends sit,flux \
        --batch-sizes 1,8,32,64,128 --peak-tflops 989.5     # H200 dense bf16 peak: the fraction achieved

`--size tiny` builds each backend from tiny random configs saved as the tests save them (tests/test_*.py builders).
`--size real` keeps the adapter (conditioning, packing, guidance, timestep conversion) of a tiny folder and swaps in
networks of the published size with random weights: SiT-XL/2 (675 M parameters, 4×32×32 latents, SD-VAE) and a
FLUX.1-size transformer (19 double + 38 single blocks, width 3072, 4096-token latents at 1024², 512 T5 tokens, the
FLUX VAE); their text encoders are not built (prompt embeddings are random rows of the right shape). Real size needs a
CUDA GPU. Each timing is the median of `--repeats` runs after a warm-up; search and plain sampling alternate.
Prints one JSON line per measurement.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the tiny builders the tests use

from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from inference_scaling.benchmarks import BENCHMARKS  # noqa: E402
from inference_scaling.config import register, search_cost, search_sigmas  # noqa: E402
from inference_scaling.denoiser import EmbeddedConditions  # noqa: E402
from inference_scaling.flops import gflops_per_nfe  # noqa: E402
from inference_scaling.models import load_model  # noqa: E402
from inference_scaling.nfe import DecodeCounter, NFECounter  # noqa: E402
from inference_scaling.sampling import get_solver  # noqa: E402
from inference_scaling.search import SearchTask, build_search  # noqa: E402
from inference_scaling.search.base import batches  # noqa: E402
from inference_scaling.verifiers import build_verifier  # noqa: E402

BACKENDS = ("sit", "dit", "pixart", "flux", "sd3")
CLASSES = "[1,2,3,4]"
PROMPTS = "[a red cube,two cats,a bird on a wire,a blue car]"


def tiny_folders(root: Path) -> dict[str, list[str]]:
    """Tiny random pipelines / checkpoints of every backend and the overrides that select them."""
    import diffusers
    from test_flow_t2i import FLUX_SCHEDULER, HEIGHT, T5_TOKENS, WIDTH, flux_pipeline, sd3_pipeline
    from test_sit import TINY
    from test_vp_models import PIXART_TINY, ddim, save_dit, tiny_pixart, tiny_vae
    from tiny_text import tiny_t5

    from inference_scaling.models.sit import SiT

    torch.manual_seed(0)
    torch.save(SiT(**TINY).state_dict(), root / "sit.pt")
    diffusers.AutoencoderKL(down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                            block_out_channels=(8, 8), layers_per_block=1, latent_channels=4, norm_num_groups=4,
                            sample_size=16).save_pretrained(root / "sit_vae")
    save_dit(root / "dit")
    text_encoder, tokenizer = tiny_t5(d_model=32)
    diffusers.PixArtSigmaPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=tiny_vae(),
                                  transformer=tiny_pixart(),
                                  scheduler=ddim(timestep_spacing="leading")).save_pretrained(root / "pixart")
    flux_pipeline(True, FLUX_SCHEDULER).save_pretrained(root / "flux")
    sd3_pipeline().save_pretrained(root / "sd3")
    flow = [f"model.height={HEIGHT}", f"model.width={WIDTH}", f"model.max_sequence_length={T5_TOKENS}"]
    imagenet = ["benchmark=imagenet", f"benchmark.classes={CLASSES}"]
    prompts = ["benchmark=prompts", f"benchmark.prompts={PROMPTS}"]
    return {
        "sit": ["model=sit_b2", f"model.weights={root / 'sit.pt'}", f"model.vae={root / 'sit_vae'}",
                "model.depth=2", "model.hidden_size=32", "model.num_heads=2", "model.latent_size=8", *imagenet],
        "dit": ["model=dit_xl2", f"model.weights={root / 'dit'}", *imagenet],
        "pixart": ["model=pixart_sigma", f"model.weights={root / 'pixart'}", *PIXART_TINY, *prompts],
        "flux": ["model=flux_dev", f"model.weights={root / 'flux'}", *flow, *prompts],
        "sd3": ["model=sd35_medium", f"model.weights={root / 'sd3'}", *flow, *prompts],
    }


def make_real_size(name: str, model, device: str, dtype: torch.dtype) -> None:
    """Swap a tiny adapter's networks for random ones of the published size (the adapter's own code stays)."""
    import diffusers

    from inference_scaling.models.sit import SiT

    if name == "sit":
        model.net = SiT().to(device).eval()  # SiT-XL/2 (float32 weights; the adapter autocasts to model.dtype)
        model.vae = diffusers.AutoencoderKL(down_block_types=("DownEncoderBlock2D",) * 4,
                                            up_block_types=("UpDecoderBlock2D",) * 4,
                                            block_out_channels=(128, 256, 512, 512), layers_per_block=2,
                                            latent_channels=4, sample_size=256).to(device).eval()
        model.noise_shape = (4, 32, 32)
    elif name == "flux":
        with torch.device(device):
            model.transformer = diffusers.FluxTransformer2DModel(
                patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
                num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768, guidance_embeds=True,
                axes_dims_rope=[16, 56, 56]).to(dtype).eval()
        model.vae = diffusers.AutoencoderKL(down_block_types=("DownEncoderBlock2D",) * 4,
                                            up_block_types=("UpDecoderBlock2D",) * 4,
                                            block_out_channels=(128, 256, 512, 512), layers_per_block=2,
                                            latent_channels=16, sample_size=1024, use_quant_conv=False,
                                            use_post_quant_conv=False, scaling_factor=0.3611,
                                            shift_factor=0.1159).to(device, dtype).eval()
        model.noise_shape = (16, 128, 128)
        model._ids.clear()
    else:
        raise SystemExit(f"--size real covers sit and flux, not {name}")


def real_size_rows(name: str, n: int, device: str) -> EmbeddedConditions | torch.Tensor:
    if name == "sit":
        return torch.arange(n) % 1000
    return EmbeddedConditions({"prompt_embeds": torch.randn(n, 512, 4096, device=device),
                               "pooled_prompt_embeds": torch.randn(n, 768, device=device)})


def synced(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def median_seconds(fn, device: str, repeats: int) -> tuple[float, float, float]:
    """(median, min, max) seconds of `fn()` over `repeats` runs after one warm-up run."""
    fn()
    times = []
    for _ in range(repeats):
        synced(device)
        start = time.perf_counter()
        fn()
        synced(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times), max(times)


def nfe_costs(name: str, model, rows, args) -> None:
    """Seconds per NFE (one network row) by batch size, peak memory on CUDA, the model FLOP/s achieved (and its
    fraction of `--peak-tflops` where given) with the best batch size, and VAE decode seconds per image."""
    shape = model.noise_shape
    gflops = gflops_per_nfe(model, shape, rows[:1].to(args.device), args.device)  # the project's FLOPs per NFE
    best = 0.0
    for batch in args.batch_sizes:
        x = torch.randn(batch, *shape, device=args.device)
        sigma = torch.full((batch,), 0.5, device=args.device)
        cond = rows[torch.arange(batch) % len(rows)].to(args.device)
        if args.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        with torch.no_grad():
            med, low, high = median_seconds(lambda: model(x, sigma, cond), args.device, args.repeats)
        peak = torch.cuda.max_memory_allocated() / 2**30 if args.device.startswith("cuda") else None
        tflops = gflops * batch / med / 1e3
        best = max(best, tflops)
        print(json.dumps({"backend": name, "batch": batch, "s_per_nfe": med / batch, "nfe_per_s": batch / med,
                          "spread_s": [low, high], "peak_gib": peak, "achieved_tflops": tflops}), flush=True)
    print(json.dumps({"backend": name, "gflops_per_nfe": gflops, "best_achieved_tflops": best,
                      "peak_tflops": args.peak_tflops,
                      "fraction_of_peak": best / args.peak_tflops if args.peak_tflops else None}), flush=True)
    latents = torch.randn(args.decode_batch, *shape, device=args.device)
    med, low, high = median_seconds(lambda: model.decode(latents), args.device, args.repeats)
    print(json.dumps({"backend": name, "decode_s_per_image": med / args.decode_batch,
                      "decode_batch": args.decode_batch, "spread_s": [low, high]}), flush=True)


def search_over_plain(name: str, model, cfg, rows, verifier, args, search_name: str = "random") -> None:
    """A search (noise draws, decode, verifier, bookkeeping) against plain batched solves of as many NFEs: warm-up
    of both sides, then pairs in alternating order; the search's wall time split into denoiser, noise, decode,
    verifier and the rest (medians). Decode and verifier are reported apart: `without_decode_verifier` is the
    search's NFE/s with their seconds taken out, and `loop_efficiency` its denoiser share over plain sampling's
    (measured within each run, so the machine's drifts cancel); `rows_per_call` the denoiser's batch on each side."""
    from bench_throughput import Stopwatch, timed_task

    in_denoiser, in_noise = Stopwatch(args.device), Stopwatch(args.device)
    counter, decoder = NFECounter(in_denoiser.wrap(model)), DecodeCounter(model.decode)
    denoiser = model.guided(counter, cfg.model.guidance)
    solver, sigmas = get_solver(cfg.model.solver), search_sigmas(cfg.model)
    conditions = BENCHMARKS[cfg.benchmark.name](cfg.benchmark).conditions()
    task = timed_task(SearchTask(denoiser=denoiser, solver=solver, sigmas=sigmas, cost_per_sample=search_cost(cfg.model),
                                 conds=rows, condition_ids=conditions.ids, noise_shape=model.noise_shape, seed=0,
                                 verifier=verifier, max_batch_size=args.max_batch_size, device=args.device,
                                 prompts=conditions.prompts, labels=conditions.labels, decode=decoder), in_noise)
    search = build_search(search_name)
    budget = args.candidates * task.cost_per_sample
    search(task, budget)  # warm-up, and the NFEs a run spends
    samples = counter.count // task.cost_per_sample
    flat = torch.arange(samples) % len(conditions.ids)

    def plain() -> None:
        x = torch.randn(samples, *model.noise_shape, device=args.device)
        for part in batches(samples, args.max_batch_size):
            solver(denoiser, x[part], sigmas, rows[flat[part]].to(args.device))

    plain()  # warm-up
    rates = {"plain": [], "search": []}
    in_network = {"plain": [], "search": []}  # NFEs per second inside the denoiser alone
    rows_per_call = {}
    loop_rates, loop_shares, plain_denoiser_share = [], [], []
    shares = {part: [] for part in ("denoiser", "noise", "decode", "verifier", "rest")}
    for repeat in range(args.repeats):
        order = [("plain", plain), ("search", lambda: search(task, budget))]
        for side, fn in order if repeat % 2 == 0 else order[::-1]:
            counter.count, counter.calls, decoder.seconds, verifier.cost.seconds = 0, 0, 0.0, 0.0
            in_denoiser.seconds = in_noise.seconds = 0.0
            synced(args.device)
            start = time.perf_counter()
            fn()
            synced(args.device)
            seconds = time.perf_counter() - start
            rates[side].append(counter.count / seconds)
            in_network[side].append(counter.count / in_denoiser.seconds)
            if side == "search":  # the loop alone: the search's NFE/s with its decode and verifier seconds taken out
                loop_rates.append(counter.count / (seconds - decoder.seconds - verifier.cost.seconds))
                loop_shares.append(in_denoiser.seconds / (seconds - decoder.seconds - verifier.cost.seconds))
            else:
                plain_denoiser_share.append(in_denoiser.seconds / seconds)
            rows_per_call[side] = counter.count / counter.calls
            if side == "search":
                parts = {"denoiser": in_denoiser.seconds, "noise": in_noise.seconds, "decode": decoder.seconds,
                         "verifier": verifier.cost.seconds}
                parts["rest"] = seconds - sum(parts.values())
                for part, value in parts.items():
                    shares[part].append(value / seconds)
    median = {side: statistics.median(v) for side, v in rates.items()}
    pairs = [search / plain for search, plain in zip(rates["search"], rates["plain"])]  # back-to-back runs
    loop_pairs = [search / plain for search, plain in zip(loop_rates, rates["plain"])]
    print(json.dumps({"backend": name, "search": search_name, "conditions": len(conditions.ids),
                      "budget_candidates": args.candidates, "nfe_per_candidate": task.cost_per_sample,
                      "plain_nfe_per_s": round(median["plain"], 1), "search_nfe_per_s": round(median["search"], 1),
                      "ratio_search_over_plain": round(median["search"] / median["plain"], 3),
                      "pair_ratio_median": round(statistics.median(pairs), 3),
                      "pair_ratio_range": [round(min(pairs), 3), round(max(pairs), 3)],
                      "plain_range": [round(min(rates["plain"]), 1), round(max(rates["plain"]), 1)],
                      "search_range": [round(min(rates["search"]), 1), round(max(rates["search"]), 1)],
                      # decode and verifier reported apart (their shares below): the loop around the denoiser
                      "without_decode_verifier": {"ratio": round(statistics.median(loop_rates) / median["plain"], 3),
                                                  "pair_median": round(statistics.median(loop_pairs), 3),
                                                  "pair_range": [round(min(loop_pairs), 3), round(max(loop_pairs), 3)]},
                      # ratio without decode and verifier ≈ loop_efficiency × in_denoiser_ratio
                      # (experiments/bench_throughput.py's docstring)
                      "loop_efficiency": round(statistics.median(loop_shares)
                                               / statistics.median(plain_denoiser_share), 3),
                      "in_denoiser_ratio": round(statistics.median(in_network["search"])
                                                 / statistics.median(in_network["plain"]), 3),
                      "rows_per_call": {side: round(v, 1) for side, v in rows_per_call.items()},
                      "search_seconds_share": {k: round(statistics.median(v), 3) for k, v in shares.items()},
                      "plain_denoiser_share": round(statistics.median(plain_denoiser_share), 3)}),
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=("tiny", "real"), default="tiny")
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--batch-sizes", default="1,8,32")
    parser.add_argument("--decode-batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--search-on", default="sit", help="backends whose search/plain ratio is measured")
    parser.add_argument("--candidates", type=int, default=16, help="the budget, in candidates of the search sampler")
    parser.add_argument("--per-class", type=int, default=8,
                        help="conditions per class or prompt: 8 fill the search's batches of 32")
    parser.add_argument("--searches", default="random", help="the algorithms measured, e.g. random,zero_order,paths")
    parser.add_argument("--search-steps", type=int, default=4)
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--peak-tflops", type=float, default=0.0,
                        help="the device's dense peak for --dtype (H200 bf16: 989.5) to report the achieved fraction")
    args = parser.parse_args()
    args.batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    if args.size == "real" and not torch.cuda.is_available():
        raise SystemExit("error: --size real needs a CUDA GPU (random networks of the published sizes)")
    register()
    with tempfile.TemporaryDirectory() as tmp, initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        folders = tiny_folders(Path(tmp))
        clip = Path(tmp) / "clip"
        from tiny_models import tiny_clip

        net, tokenizer = tiny_clip(layers=1)
        net.save_pretrained(clip)
        tokenizer.save_pretrained(clip)
        for name in args.backends.split(","):
            overrides = [*folders[name], f"model.device={args.device}", f"model.dtype={args.dtype}",
                         f"model.search_steps={args.search_steps}", f"benchmark.per_class={args.per_class}",
                         "logger=none", "progress=false"]
            cfg = OmegaConf.to_object(compose(config_name="config", overrides=overrides))
            model = load_model(cfg.model)
            rows = model.encode(BENCHMARKS[cfg.benchmark.name](cfg.benchmark).conditions())
            model.free_encoders()
            if args.size == "real":
                make_real_size(name, model, args.device, model.dtype)
                rows = real_size_rows(name, max(args.batch_sizes), args.device)
            nfe_costs(name, model, rows, args)
            if name in args.search_on.split(","):
                kind = "clip_zeroshot" if cfg.benchmark.name == "imagenet" else "clip_score"
                verifier_cfg = OmegaConf.to_object(compose(config_name="config", overrides=[
                    *overrides, f"verifier={kind}", f"verifier.clip={clip}"])).verifier
                for search_name in args.searches.split(","):
                    search_over_plain(name, model, cfg, rows, build_verifier(verifier_cfg, args.device), args,
                                      search_name)


if __name__ == "__main__":
    main()
