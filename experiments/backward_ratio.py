"""What one backward pass through a model costs, in forward NFEs: the price gradient search pays per backward row.

    OMP_NUM_THREADS=1 python experiments/backward_ratio.py [--batch 16 256 1024] [--repeats 30] [--device cpu]
                                                           [--models digits scenes sit_tiny] [--json FILE]
    OMP_NUM_THREADS=1 python experiments/backward_ratio.py --memory digits scenes sit_tiny sit_xl2
    OMP_NUM_THREADS=1 python experiments/backward_ratio.py --searches --repeats 7

For each model and batch size, the median over `--repeats` timed calls (after warm-up calls) of
  t_f   one network forward under torch.no_grad (what a search pays for a forward NFE),
  t_fg  the same forward with the graph kept (the input requires grad),
  t_b   the backward of that forward with respect to the input only (torch.autograd.grad; no weight gradients,
        as gradient search asks none),
and the ratios
  backward/forward      t_b / t_f,
  backward_nfe          (t_fg + t_b − t_f) / t_f: what a gradient row costs beyond the forward NFE it is counted as,
                        in forward NFEs; the overhead of keeping the graph is charged to the backward, so
                        forward NFEs + backward_nfe × backward NFEs is the whole cost in forward-NFE units.
A second table does the same for a whole search solve (the model's default search sampler, every step kept in one
graph, the backward through all of it): backward_nfe of the solve, per network evaluation. That is the figure
`search.backward_nfe` stands for; its default (conf/search/gradient.yaml) is this script's median for the embedded
models on one CPU thread. Models: digits and scenes (the committed weights), sit_tiny (a 2-block, width-32 SiT with
random weights; the transformer's own ratio in miniature), sit_b2 (SiT-B/2 at full size, random weights: use a GPU).
Timings on a shared machine are indicative; the ratio is what matters and is steadier than either time.
`--memory` instead measures what a gradient costs in memory: the bytes autograd keeps per row for one evaluation
(every tensor saved for backward, parameters left out), and that times the 99 evaluations of a 50-step Heun solve.
`--searches` checks the price end to end: gradient and random search at the same priced budget (300 conditions,
digits at 120 and scenes at 280 priced NFEs), wall seconds as medians of alternating runs; with an honest price the
two take about the same time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from inference_scaling.models.digits import load_flow as load_digits
from inference_scaling.models.scenes import load as load_scenes
from inference_scaling.models.sit import SiT
from inference_scaling.sampling import heun, linear_sigmas, solver_nfe

SIT_TINY = dict(depth=2, hidden_size=32, num_heads=2, patch_size=2, latent_size=8, in_channels=4, learn_sigma=True,
                num_classes=1000)
SIT_B2 = dict(depth=12, hidden_size=768, num_heads=12, patch_size=2, latent_size=32, in_channels=4, learn_sigma=True,
              num_classes=1000)
SIT_XL2 = dict(SIT_B2, depth=28, hidden_size=1152, num_heads=16)
SIT_SIZES = {"sit_tiny": SIT_TINY, "sit_b2": SIT_B2, "sit_xl2": SIT_XL2}
SEARCH_STEPS = {"digits": 2, "scenes": 4, "sit_tiny": 4, "sit_b2": 4, "sit_xl2": 4}  # the default search sampler (Heun)


def build(name: str, device: str):
    """(velocity function v(x, σ, cond), state shape, condition rows of batch size B) for one model."""
    if name in ("digits", "scenes"):
        net = (load_digits if name == "digits" else load_scenes)(device=device)
        fields = net.fields

        def conds(b: int) -> torch.Tensor:
            g = torch.Generator().manual_seed(1)
            rows = torch.stack([torch.randint(0, n, (b,), generator=g) for n in fields], dim=1)
            return (rows.squeeze(1) if len(fields) == 1 else rows).to(device)

        return net, net.image_shape, conds
    torch.manual_seed(0)
    arch = SIT_SIZES[name]
    net = SiT(**arch).to(device).eval()
    shape = (arch["in_channels"], arch["latent_size"], arch["latent_size"])

    def velocity(x, sigma, y):
        return -net(x, 1.0 - sigma, y)

    return velocity, shape, lambda b: torch.arange(b, device=device) % 1000


def timer(device: str):
    cuda = device.startswith("cuda")

    def timed(fn):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = fn()
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - start, out

    return timed


def median_times(step, repeats: int, warmup: int) -> list[float]:
    """Per quantity, the median over `repeats` calls of `step()` (which returns a tuple of seconds)."""
    for _ in range(warmup):
        step()
    runs = [step() for _ in range(repeats)]
    return [statistics.median(r[k] for r in runs) for k in range(len(runs[0]))]


def network_ratio(velocity, shape, conds, batch: int, device: str, repeats: int) -> dict:
    timed = timer(device)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, *shape, generator=g).to(device)
    sigma = torch.full((batch,), 0.5, device=device)
    cond = conds(batch)
    upstream = torch.randn(batch, *shape, generator=g).to(device)

    def step():
        with torch.no_grad():
            t_f, _ = timed(lambda: velocity(x, sigma, cond))
        leaf = x.clone().requires_grad_(True)
        with torch.enable_grad():
            t_fg, v = timed(lambda: velocity(leaf, sigma, cond))
            t_b, _ = timed(lambda: torch.autograd.grad(v, leaf, upstream))
        return t_f, t_fg, t_b

    t_f, t_fg, t_b = median_times(step, repeats, warmup=3)
    return {"t_f_ms": 1e3 * t_f, "t_fg_ms": 1e3 * t_fg, "t_b_ms": 1e3 * t_b, "backward_over_forward": t_b / t_f,
            "backward_nfe": (t_fg + t_b - t_f) / t_f}


def solve_ratio(velocity, shape, conds, batch: int, steps: int, device: str, repeats: int) -> dict:
    """The same for a whole Heun solve of `steps` steps: every evaluation in one graph, the backward through all."""
    timed = timer(device)
    x = torch.randn(batch, *shape, generator=torch.Generator().manual_seed(0)).to(device)
    cond = conds(batch)
    sigmas = linear_sigmas(steps)
    evals = solver_nfe("heun", sigmas)

    def step():
        t_f, _ = timed(lambda: heun(velocity, x, sigmas, cond))
        leaf = x.clone().requires_grad_(True)
        with torch.enable_grad():
            t_fg, out = timed(lambda: heun.__wrapped__(velocity, leaf, sigmas, cond))
            t_b, _ = timed(lambda: torch.autograd.grad(out.square().sum(), leaf))
        return t_f, t_fg, t_b

    t_f, t_fg, t_b = median_times(step, repeats, warmup=2)
    return {"steps": steps, "evaluations": evals, "t_f_ms": 1e3 * t_f, "t_fg_ms": 1e3 * t_fg, "t_b_ms": 1e3 * t_b,
            "backward_over_forward": t_b / t_f, "backward_nfe": (t_fg + t_b - t_f) / t_f}


def activation_bytes(velocity, shape, conds, device: str, batch: int = 2) -> float:
    """Bytes autograd keeps for the backward of one evaluation, per row: every tensor saved for backward, counted
    once per storage, leaving out the network's parameters (they are held anyway)."""
    params = set()
    for fn in (velocity, getattr(velocity, "__closure__", None) or ()):
        module = fn if isinstance(fn, torch.nn.Module) else getattr(fn, "cell_contents", None)
        if isinstance(module, torch.nn.Module):
            params |= {p.untyped_storage().data_ptr() for p in module.parameters()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor):
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    x = torch.randn(batch, *shape, device=device, requires_grad=True)
    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        velocity(x, torch.full((batch,), 0.5, device=device), conds(batch))
    return sum(seen.values()) / batch


def search_seconds(name: str, budget: int, conditions: int, repeats: int, device: str) -> dict:
    """Wall seconds of gradient search and random search on the same task at the same priced budget (median over
    `repeats` runs in alternating order, after one warm-up run of each): equal when the price is honest."""
    from inference_scaling.nfe import NFECounter, priced_nfe
    from inference_scaling.search.base import SearchTask
    from inference_scaling.search.gradient import GradientSearch
    from inference_scaling.search.random import RandomSearch
    from inference_scaling.verifiers import build_verifier

    velocity, shape, conds = build(name, device)
    sigmas = linear_sigmas(SEARCH_STEPS[name])
    verifier = build_verifier({"digits": "classifier_prob", "scenes": "scene_classifier"}[name], device=device)
    searches = {"gradient": GradientSearch(), "random": RandomSearch()}
    spent, runs = {}, {key: [] for key in searches}
    order = list(searches)
    for r in range(repeats + 1):
        for key in order if r % 2 == 0 else order[::-1]:
            counter = NFECounter(velocity)
            task = SearchTask(denoiser=counter, solver=heun, sigmas=sigmas, cost_per_sample=solver_nfe("heun", sigmas),
                              conds=conds(conditions).cpu(), condition_ids=torch.arange(conditions),
                              noise_shape=tuple(shape), seed=0, verifier=verifier, max_batch_size=1024, device=device)
            seconds, _ = timer(device)(lambda: searches[key](task, budget))
            if r:
                runs[key].append(seconds)
            spent[key] = (counter.count / conditions, counter.backward_count / conditions)
    out = {"model": name, "budget": budget, "conditions": conditions}
    for key, (forward, backward) in spent.items():
        out[key] = {"forward_nfe": forward, "backward_nfe": backward,
                    "priced_nfe": priced_nfe(forward, backward, searches["gradient"].backward_nfe),
                    "seconds": statistics.median(runs[key])}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["digits", "scenes", "sit_tiny"],
                        choices=["digits", "scenes", "sit_tiny", "sit_b2"])
    parser.add_argument("--batch", nargs="+", type=int, default=[16, 256, 1024])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads on the CPU")
    parser.add_argument("--json", default="", help="also write the rows to this file")
    parser.add_argument("--memory", nargs="*", default=[],
                        choices=["digits", "scenes", "sit_tiny", "sit_b2", "sit_xl2"],
                        help="only measure the activation memory a backward keeps, for these models (sit_xl2 at full "
                             "size with random weights: about 3 GB of weights on the CPU)")
    parser.add_argument("--searches", action="store_true",
                        help="only time gradient against random search at equal priced budgets (digits, scenes)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.searches:
        print(f"median of {args.repeats} alternating runs; priced NFEs per condition at search.backward_nfe's default")
        print("| model | budget | conditions | search | forward NFEs | backward NFEs | priced NFEs | seconds |")
        print("|---|---|---|---|---|---|---|---|")
        for name, budget in [("digits", 120), ("scenes", 280)]:
            r = search_seconds(name, budget, 300, args.repeats, args.device)
            for key in ("random", "gradient"):
                x = r[key]
                print(f"| {name} | {budget} | {r['conditions']} | {key} | {x['forward_nfe']:g} | {x['backward_nfe']:g} "
                      f"| {x['priced_nfe']:g} | {x['seconds']:.3f} |")
        return
    if args.memory:
        print("| model | activations kept per row per evaluation | per row, 50-step Heun solve (99 evaluations) |")
        print("|---|---|---|")
        for name in args.memory:
            per_eval = activation_bytes(*build(name, args.device), args.device)
            print(f"| {name} | {per_eval / 2**20:.3f} MiB | {99 * per_eval / 2**30:.2f} GiB |")
        return
    rows = []
    for name in args.models:
        velocity, shape, conds = build(name, args.device)
        for batch in args.batch:
            rows.append({"model": name, "batch": batch, "part": "network",
                         **network_ratio(velocity, shape, conds, batch, args.device, args.repeats)})
            rows.append({"model": name, "batch": batch, "part": f"heun-{SEARCH_STEPS[name]} solve",
                         **solve_ratio(velocity, shape, conds, batch, SEARCH_STEPS[name], args.device, args.repeats)})
    print(f"device {args.device}, {args.threads} thread(s), median of {args.repeats} (ms per call)")
    print("| model | batch | part | forward (no grad) | forward (graph) | backward | backward/forward | backward_nfe |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['batch']} | {r['part']} | {r['t_f_ms']:.3f} | {r['t_fg_ms']:.3f} | "
              f"{r['t_b_ms']:.3f} | {r['backward_over_forward']:.2f} | {r['backward_nfe']:.2f} |")
    embedded = [r["backward_nfe"] for r in rows if r["model"] in ("digits", "scenes") and r["part"] != "network"]
    if embedded:
        print(f"median backward_nfe of the embedded models' search solves: {statistics.median(embedded):.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
