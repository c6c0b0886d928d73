"""The Hydra job: build the configured model, verifier and search, run chunk by chunk, evaluate, record.

A job's conditions are processed in chunks (`inference_scaling.store`): each chunk is searched, rendered, scored
and written to its own file before the next starts, so memory is bounded by the chunk and batch sizes and a job
that is killed resumes after its last complete chunk. Evaluation then streams the selected images back from the
chunk files. Library code below this module computes; this module (with `reporting`) is the only place that logs.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

import torch

from inference_scaling.benchmarks import BENCHMARKS, Conditions
from inference_scaling.config import Config, final_sigmas, metric_configs, search_cost, search_sigmas, validate
from inference_scaling.flops import gflops_per_nfe
from inference_scaling.models import load_model
from inference_scaling.nfe import DecodeCounter, NFECounter, priced_nfe
from inference_scaling.noise import candidate_noise
from inference_scaling.reuse import StreamCache
from inference_scaling.sampling import get_solver
from inference_scaling.search import SearchTask, build_search
from inference_scaling.search.base import batches, is_failed
from inference_scaling.store import ChunkStore, ImageSet, Plan, fingerprint, load_selected, make_plan
from inference_scaling.verifiers import VERIFIERS, build_verifier

SAMPLES_SHOWN = 100  # images in samples.png
# Metrics that measure this machine, not the result: they differ between a run and its resumed twin.
TIMING = ("search_seconds", "verifier_seconds", "decoder_seconds_search", "condition_encode_seconds", "eval_seconds",
          "search_nfe_per_second")
# What a job of a sweep computed itself rather than reused (`inference_scaling.reuse`): it depends on which jobs
# ran before it, not on its result.
REUSE_DEPENDENT = ("nfe_search_computed_per_condition", "candidates_reused", "verifier_forward_passes")


def job_plan(cfg: Config, n_total: int) -> Plan:
    """The chunks of this job: one chunk for verifiers that score the whole selected set at once (the FID-oracle)."""
    whole = getattr(VERIFIERS[cfg.verifier.name], "needs_all_conditions", False)
    return make_plan(n_total, n_total if whole else cfg.benchmark.chunk_size, cfg.benchmark.shard, fingerprint(cfg))


def run(cfg: Config, out: Optional[Path] = None, cache_root: Optional[Path] = None,
        on_chunk: Optional[Callable[[int, int], None]] = None) -> dict:
    """Search, render and evaluate one job into `out`, continuing after its last complete chunk; returns results
    (metrics, per-condition records, lineage, the first SAMPLES_SHOWN images). `out=None` runs in a temporary
    folder and returns every selected image. `cache_root`: the folder whose candidate streams random search shares
    (a sweep's folder; see `inference_scaling.reuse`). `on_chunk(done, total)` after each chunk."""
    if out is None:
        with tempfile.TemporaryDirectory(prefix="inference-scaling-job-") as folder:
            result = run(cfg, Path(folder), cache_root, on_chunk)
            result["images"] = load_selected(Path(folder))
            return result
    validate(cfg)
    benchmark = BENCHMARKS[cfg.benchmark.name](cfg.benchmark)
    conditions = benchmark.conditions()
    plan = job_plan(cfg, len(conditions.ids))
    store = ChunkStore(out)
    pending = store.open(plan)
    if pending:
        _run_chunks(cfg, conditions, plan, store, pending, cache_root, on_chunk)
    return finish(cfg, conditions, plan, store)


def _reuse_key(cfg: Config) -> str:
    return fingerprint(cfg, ignore=("budget",))


def _run_chunks(cfg: Config, conditions: Conditions, plan: Plan, store: ChunkStore, pending: list[int],
                cache_root: Optional[Path], on_chunk) -> None:
    model = load_model(cfg.model)
    encode_start = time.perf_counter()
    for k in pending:  # every prompt through the text encoders once; chunks then look their embeddings up
        model.encode(conditions.take(plan.positions(k)))
    encode_seconds = time.perf_counter() - encode_start
    model.free_encoders()
    verifier = build_verifier(cfg.verifier, device=cfg.model.device)
    metric_verifiers = {label: build_verifier(metric, device=cfg.model.device)
                        for label, metric in metric_configs(cfg.benchmark).items()}
    search = build_search(cfg.search, progress=cfg.progress)
    counter = NFECounter(model)
    decoder = DecodeCounter(model.decode)
    base = dict(denoiser=model.guided(counter, cfg.model.guidance), solver=get_solver(cfg.model.solver),
                sigmas=search_sigmas(cfg.model), cost_per_sample=search_cost(cfg.model),
                noise_shape=model.noise_shape, seed=cfg.seed, noise_generator=cfg.noise,
                max_batch_size=cfg.search.max_batch_size, sde_scale=cfg.model.sde_scale,
                device=cfg.model.device, decode=decoder if model.decodes else model.decode)
    streams = None
    if cfg.reuse and cache_root is not None and hasattr(search, "stream_type"):
        streams = StreamCache(cache_root, _reuse_key(cfg))
    gflops = None
    for done, k in enumerate(pending, 1):
        positions = plan.positions(k)
        chunk = conditions.take(positions)
        task = SearchTask(conds=model.encode(chunk), condition_ids=chunk.ids, prompts=chunk.prompts,
                          labels=chunk.labels, verifier=verifier, **base)
        if gflops is None:  # one forward outside the NFE counter, before the search
            gflops = gflops_per_nfe(model, model.noise_shape, task.conds[:1].to(cfg.model.device), cfg.model.device)
        spending = _search_chunk(cfg, model, search, task, counter, decoder, verifier, metric_verifiers, streams, k)
        spending["gflops_per_nfe"] = gflops
        if chunk.categories is not None:
            for record, category in zip(spending["records"], chunk.categories):
                record["category"] = category
        spending["condition_encode_seconds"] = encode_seconds if done == 1 else 0.0
        records, lineage, images = spending.pop("records"), spending.pop("lineage"), spending.pop("images")
        if lineage is not None:  # rows as global condition positions, as in a single-chunk run
            for entry in lineage:
                entry["row"] = int(positions[entry["row"]])
        store.write(k, images, positions, records, lineage, spending, plan.fingerprint)
        if on_chunk is not None:
            on_chunk(len(plan.chunks) - len(pending) + done, len(plan.chunks))


def _search_chunk(cfg: Config, model, search, task: SearchTask, counter: NFECounter, decoder: DecodeCounter,
                  verifier, metric_verifiers: dict, streams: Optional[StreamCache], k: int) -> dict:
    """Search one chunk, render its choices with the final sampler, score them: its records and spending."""
    n_cond = len(task.condition_ids)
    counter.count = counter.backward_count = 0
    decoder.calls = decoder.images = 0
    decoder.seconds = 0.0
    cost_before = verifier.cost.as_dict()
    start = time.perf_counter()
    reused = 0
    if streams is not None and search.streams(task):
        n = search.plan(task, cfg.budget.nfe)
        have = streams.load(k, search.stream_type) or search.stream_type.empty(n_cond)
        stream = search.extend(task, have, n)
        streams.save(k, stream)
        result = search.select(stream, n)
        reused = min(have.scores.shape[1], result.n_candidates)  # candidates per condition an earlier job computed
    else:
        result = search(task, cfg.budget.nfe)
    search_seconds = time.perf_counter() - start
    computed = counter.count
    # The NFEs the selection stands for: a reused candidate was paid for once, by the job that computed it.
    selected = result.n_candidates * task.cost_per_sample * n_cond if reused else computed
    # Backward passes through the network (gradient search), priced at the search's declared forward-NFE ratio.
    backward = counter.backward_count
    assert not backward or hasattr(search, "backward_nfe"), f"{type(search).__name__} ran backward passes unpriced"
    priced = priced_nfe(selected, backward, getattr(search, "backward_nfe", 0.0))
    assert priced <= cfg.budget.nfe * n_cond * (1 + 1e-9), \
        f"search spent {priced / n_cond} priced NFEs per condition, budget {cfg.budget.nfe}"
    search_decode = decoder.as_dict()
    cost = {key: value - cost_before[key] for key, value in verifier.cost.as_dict().items()}

    # The paper renders the chosen noise with the (more expensive) final sampler.
    states = result.images
    counter.count = counter.backward_count = 0
    rows = torch.arange(n_cond)
    if cfg.model.final_steps != cfg.model.search_steps:
        final_task = SearchTask(**{**task.__dict__, "sigmas": final_sigmas(cfg.model)})
        if result.lineage is not None:  # the chosen sample is a path of noises, not one initial noise
            states = search.replay(final_task, result.lineage).cpu()
        else:
            states = final_task.solve(final_task.noise(rows, result.chosen), rows, result.chosen).cpu()
    nfe_final, backward_final = counter.count, counter.backward_count
    images = torch.cat([model.decode(states[part].to(cfg.model.device)).cpu()
                        for part in batches(n_cond, cfg.search.max_batch_size)]) if model.decodes else states
    on_device = images.to(cfg.model.device)  # what the verifier and the metric verifiers score
    if getattr(verifier, "needs_x0", False) or getattr(verifier, "set_level", False):
        # The score needs the trajectory, or is relative to the other candidates: keep the search's own score.
        final_scores = result.scores
    else:
        final_scores = task.score_images(on_device, rows)
    metric_scores = {label: SearchTask(**{**task.__dict__, "verifier": scorer}).score_images(on_device, rows)
                     for label, scorer in metric_verifiers.items()}
    drawn = result.candidates_per_condition  # where conditions spend unequally: each one's candidates, NFE share
    records = [
        {"condition_id": int(task.condition_ids[c]), "prompt": task.prompts[c], "chosen_index": int(result.chosen[c]),
         "search_score": float(result.scores[c]), "final_score": float(final_scores[c]),
         "all_candidates_failed": bool(result.failed[c]),
         "n_candidates": result.n_candidates if drawn is None else int(drawn[c]),
         "nfe_search": selected / n_cond if drawn is None else selected * int(drawn[c]) / int(drawn.sum()),
         "nfe_final": nfe_final / n_cond,
         **{f"metric_{label}": float(scores[c]) for label, scores in metric_scores.items()}}
        for c in range(n_cond)
    ]
    if final_scores is not result.scores and hasattr(verifier, "last_records"):
        # A verifier that reports per image (the LLM grader: ok / cached / failed: reason) on the chosen samples.
        for record, status in zip(records, verifier.last_records):
            record["verifier_status"] = status["status"]
    return {"records": records, "lineage": result.lineage, "images": images, "conditions": n_cond,
            "nfe_search": selected, "nfe_search_computed": computed, "nfe_final": nfe_final,
            "nfe_backward_search": backward, "nfe_priced_search": priced, "nfe_backward_final": backward_final,
            "candidates_reused": reused * n_cond, "n_candidates": result.n_candidates,
            "verifier_calls": result.verifier_calls, "verifier_forward_passes": cost["calls"],
            "verifier_seconds": cost["seconds"], "verifier_failed": cost["failed"], "search_seconds": search_seconds,
            "decoder_calls_search": search_decode["calls"], "decoded_images_search": search_decode["images"],
            "decoder_seconds_search": search_decode["seconds"],
            **({"verifier_x0_sigma": float(task.sigmas[task.x0_step(verifier.sigma)])}
               if getattr(verifier, "needs_x0", False) else {})}


def finish(cfg: Config, conditions: Conditions, plan: Plan, store: ChunkStore) -> dict:
    """Evaluate a job whose chunks are all written: metrics over its selected images (streamed from the chunk
    files), spending summed over its chunks, its records in condition order."""
    metas = [store.metadata(k) for k in plan.chunks]
    stale = [k for k, meta in zip(plan.chunks, metas) if meta["fingerprint"] != plan.fingerprint]
    assert not stale, f"chunks {stale} of {store.out} belong to another config"
    records = [record for meta in metas for record in meta["records"]]
    lineage = [entry for meta in metas for entry in (meta["lineage"] or [])] or None
    spent = [meta["spending"] for meta in metas]
    per_job = ("n_candidates", "verifier_x0_sigma", "gflops_per_nfe")  # the same in every chunk
    total = {key: sum(s[key] for s in spent) for key in spent[0] if key not in per_job}
    n_cond = total["conditions"]
    images = ImageSet(store, plan.chunks, [len(plan.positions(k)) for k in plan.chunks])
    job_conditions = conditions.take(plan.all_positions)

    eval_start = time.perf_counter()
    benchmark = BENCHMARKS[cfg.benchmark.name](cfg.benchmark)
    if hasattr(benchmark, "per_condition"):  # each condition's evaluation, for intervals over conditions
        per_condition = benchmark.per_condition(images, job_conditions, device=cfg.model.device)
        metrics = benchmark.evaluate(images, job_conditions, device=cfg.model.device, per_condition=per_condition)
        for name, values in per_condition.items():
            for record, value in zip(records, values.tolist()):
                record[f"eval_{name}"] = value
    else:
        per_condition = {}
        metrics = benchmark.evaluate(images, job_conditions, device=cfg.model.device)
    column = lambda key: torch.tensor([r[key] for r in records], dtype=torch.float32)  # noqa: E731
    for label in metric_configs(cfg.benchmark):  # evaluation metrics apart from the verifier
        metrics[f"metric_{label}"] = real_mean(column(f"metric_{label}"))  # as the verifier's: failed images left out
    if "category" in records[0]:  # the verifier's score and every metric per category, failed images left out
        categories = [r["category"] for r in records]
        for name, key in [("verifier_score", "final_score"),
                          *((f"metric_{label}", f"metric_{label}") for label in metric_configs(cfg.benchmark)),
                          *((name, f"eval_{name}") for name in per_condition)]:
            scores = column(key)
            for category in dict.fromkeys(categories):
                mine = torch.tensor([c == category for c in categories])
                metrics[f"{name}/{category}"] = real_mean(scores[mine])
    nfe_search = total["nfe_search"] / n_cond
    metrics.update(
        verifier_score=real_mean(column("final_score")),
        search_verifier_score=real_mean(column("search_score")),
        conditions_all_failed=sum(r["all_candidates_failed"] for r in records),
        nfe=cfg.budget.nfe,
        nfe_search_per_condition=nfe_search,
        nfe_search_computed_per_condition=total["nfe_search_computed"] / n_cond,
        candidates_reused=total["candidates_reused"],
        nfe_final_per_condition=total["nfe_final"] / n_cond,
        # Backward passes through the network (gradient search) and the search's NFEs with them priced in.
        nfe_backward_search_per_condition=total["nfe_backward_search"] / n_cond,
        nfe_priced_search_per_condition=total["nfe_priced_search"] / n_cond,
        nfe_backward_final_per_condition=total["nfe_backward_final"] / n_cond,
        gflops_per_nfe=spent[0]["gflops_per_nfe"],
        gflops_per_condition=spent[0]["gflops_per_nfe"] * (total["nfe_search"] + total["nfe_final"]) / n_cond,
        n_candidates=spent[0]["n_candidates"],
        n_conditions=n_cond,
        n_chunks=len(plan.chunks),
        **({"shard": cfg.benchmark.shard} if cfg.benchmark.shard else {}),
        verifier_calls=total["verifier_calls"],
        verifier_forward_passes=total["verifier_forward_passes"],
        verifier_seconds=total["verifier_seconds"],
        verifier_failed=total["verifier_failed"],
        **({"verifier_x0_sigma": spent[0]["verifier_x0_sigma"], "verifier_x0_extra_nfe": 0}
           if "verifier_x0_sigma" in spent[0] else {}),
        search_seconds=total["search_seconds"],
        search_nfe_per_second=counter_rate(total["nfe_search_computed"], total["search_seconds"]),
        decoder_calls_search=total["decoder_calls_search"],
        decoded_images_search=total["decoded_images_search"],
        decoder_seconds_search=total["decoder_seconds_search"],
        condition_encode_seconds=total["condition_encode_seconds"],
        eval_seconds=time.perf_counter() - eval_start,
    )
    shown = min(SAMPLES_SHOWN, len(records))
    return {"metrics": metrics, "records": records, "images": images.first(shown),
            "prompts": [r["prompt"] for r in records[:shown]], "lineage": lineage}


def real_mean(scores: torch.Tensor) -> float:
    """Mean of the real (finite) scores; NaN where none is real."""
    return scores[~is_failed(scores)].mean().item()


def counter_rate(nfes: float, seconds: float) -> float:
    return nfes / seconds if seconds > 0 else float("nan")


def replay(cfg: Config, condition_position: int, chosen_index: int) -> torch.Tensor:
    """Re-render a recorded choice from (seed, condition id, index) alone, with the final sampler; returns the
    decoded image."""
    model = load_model(cfg.model)
    conditions = BENCHMARKS[cfg.benchmark.name](cfg.benchmark).conditions()
    rows = model.encode(conditions)[[condition_position]]
    noise = candidate_noise(cfg.seed, conditions.ids[[condition_position]], torch.tensor([chosen_index]),
                            model.noise_shape, cfg.noise, cfg.model.device)
    task = SearchTask(denoiser=model.guided(model, cfg.model.guidance), solver=get_solver(cfg.model.solver),
                      sigmas=final_sigmas(cfg.model), cost_per_sample=0, conds=rows,
                      condition_ids=conditions.ids[[condition_position]], noise_shape=model.noise_shape, seed=cfg.seed,
                      noise_generator=cfg.noise, verifier=None, max_batch_size=1, device=cfg.model.device,
                      sde_scale=cfg.model.sde_scale)
    return model.decode(task.solve(noise, torch.zeros(1, dtype=torch.long), torch.tensor([chosen_index]))).cpu()
