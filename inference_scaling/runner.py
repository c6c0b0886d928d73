"""The Hydra job: build the configured model, verifier and search, run, evaluate, record.

Library code below this module computes; this module (with `reporting`) is the only place that logs.
"""

from __future__ import annotations

import time

import torch

from inference_scaling.benchmarks import BENCHMARKS, Conditions
from inference_scaling.config import Config, final_sigmas, metric_configs, search_cost, search_sigmas, validate
from inference_scaling.models import load_model
from inference_scaling.nfe import DecodeCounter, NFECounter
from inference_scaling.noise import candidate_noise
from inference_scaling.sampling import get_solver
from inference_scaling.search import SearchTask, build_search
from inference_scaling.search.base import batches, is_failed
from inference_scaling.verifiers import build_verifier


def run(cfg: Config) -> dict:
    """Search, render and evaluate one job; returns results (metrics, per-condition records, images)."""
    validate(cfg)
    benchmark = BENCHMARKS[cfg.benchmark.name](cfg.benchmark)
    conditions: Conditions = benchmark.conditions()
    model = load_model(cfg.model)
    encode_start = time.perf_counter()
    model_conds = model.encode(conditions)
    encode_seconds = time.perf_counter() - encode_start
    model.free_encoders()
    verifier = build_verifier(cfg.verifier, device=cfg.model.device)
    search = build_search(cfg.search, progress=cfg.progress)

    counter = NFECounter(model)
    decoder = DecodeCounter(model.decode)
    task = SearchTask(
        denoiser=model.guided(counter, cfg.model.guidance), solver=get_solver(cfg.model.solver),
        sigmas=search_sigmas(cfg.model), cost_per_sample=search_cost(cfg.model), conds=model_conds,
        condition_ids=conditions.ids, noise_shape=model.noise_shape, seed=cfg.seed, verifier=verifier,
        max_batch_size=cfg.search.max_batch_size, device=cfg.model.device, prompts=conditions.prompts,
        labels=conditions.labels, decode=decoder if model.decodes else model.decode,
    )
    start = time.perf_counter()
    result = search(task, cfg.budget.nfe)
    search_seconds = time.perf_counter() - start
    n_cond = len(conditions.ids)
    nfe_search = counter.count / n_cond
    assert nfe_search <= cfg.budget.nfe, f"search spent {nfe_search} NFEs per condition, budget {cfg.budget.nfe}"

    search_decode = decoder.as_dict()

    # The paper renders the chosen noise with the (more expensive) final sampler.
    states = result.images
    counter.count = 0
    all_rows = torch.arange(n_cond)
    if cfg.model.final_steps != cfg.model.search_steps:
        final_task = SearchTask(**{**task.__dict__, "sigmas": final_sigmas(cfg.model)})
        if result.lineage is not None:  # the chosen sample is a path of noises, not one initial noise
            states = search.replay(final_task, result.lineage).cpu()
        else:
            states = final_task.solve(final_task.noise(all_rows, result.chosen), all_rows).cpu()
    nfe_final = counter.count / n_cond
    images = torch.cat([model.decode(states[part].to(cfg.model.device)).cpu()
                        for part in batches(n_cond, cfg.search.max_batch_size)]) if model.decodes else states
    search_cost_record = verifier.cost.as_dict()
    on_device = images.to(cfg.model.device)  # what the verifier and the metric verifiers score
    if getattr(verifier, "needs_x0", False) or getattr(verifier, "set_level", False):
        # The score needs the trajectory, or is relative to the other candidates: keep the search's own score.
        final_scores = result.scores
    else:
        final_scores = task.score_images(on_device, all_rows)

    eval_start = time.perf_counter()
    metrics = benchmark.evaluate(images, conditions)
    metric_scores = {}
    for label, metric_cfg in metric_configs(cfg.benchmark).items():  # evaluation metrics apart from the verifier
        scorer = SearchTask(**{**task.__dict__, "verifier": build_verifier(metric_cfg, device=cfg.model.device)})
        metric_scores[label] = scorer.score_images(on_device, all_rows)
        metrics[f"metric_{label}"] = real_mean(metric_scores[label])  # as the verifier's: failed images left out
    metrics.update(
        verifier_score=real_mean(final_scores),
        search_verifier_score=real_mean(result.scores),
        conditions_all_failed=int(result.failed.sum()),
        nfe=cfg.budget.nfe,
        nfe_search_per_condition=nfe_search,
        nfe_final_per_condition=nfe_final,
        n_candidates=result.n_candidates,
        n_conditions=n_cond,
        verifier_calls=result.verifier_calls,
        verifier_forward_passes=search_cost_record["calls"],
        verifier_seconds=search_cost_record["seconds"],
        verifier_failed=search_cost_record["failed"],
        **({"verifier_x0_sigma": float(task.sigmas[task.x0_step(verifier.sigma)]), "verifier_x0_extra_nfe": 0}
           if getattr(verifier, "needs_x0", False) else {}),
        search_seconds=search_seconds,
        search_nfe_per_second=counter_rate(nfe_search * n_cond, search_seconds),
        decoder_calls_search=search_decode["calls"],
        decoded_images_search=search_decode["images"],
        decoder_seconds_search=search_decode["seconds"],
        condition_encode_seconds=encode_seconds,
        eval_seconds=time.perf_counter() - eval_start,
    )
    records = [
        {"condition_id": int(conditions.ids[c]), "prompt": conditions.prompts[c], "chosen_index": int(result.chosen[c]),
         "search_score": float(result.scores[c]), "final_score": float(final_scores[c]),
         "all_candidates_failed": bool(result.failed[c]), "n_candidates": result.n_candidates,
         "nfe_search": nfe_search, "nfe_final": nfe_final,
         **{f"metric_{label}": float(scores[c]) for label, scores in metric_scores.items()}}
        for c in range(n_cond)
    ]
    if final_scores is not result.scores and hasattr(verifier, "last_records"):
        # A verifier that reports per image (the LLM grader: ok / cached / failed: reason) on the chosen samples.
        for record, status in zip(records, verifier.last_records):
            record["verifier_status"] = status["status"]
    return {"metrics": metrics, "records": records, "images": images, "prompts": conditions.prompts,
            "lineage": result.lineage}


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
                            model.noise_shape).to(cfg.model.device)
    task = SearchTask(denoiser=model.guided(model, cfg.model.guidance), solver=get_solver(cfg.model.solver),
                      sigmas=final_sigmas(cfg.model), cost_per_sample=0, conds=rows, condition_ids=torch.zeros(1),
                      noise_shape=model.noise_shape, seed=cfg.seed, verifier=None, max_batch_size=1,
                      device=cfg.model.device)
    return model.decode(task.solve(noise, torch.zeros(1, dtype=torch.long))).cpu()
