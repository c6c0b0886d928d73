"""Gradient search: ascend a differentiable verifier's score with respect to the initial noise, back-propagating
through the sampler: first-order search, the counterpart of zero-order search (issue 18 cites the paper's Figure
14 for the comparison); ReNO (Eyring et al. 2024) optimises the noise of one-step models this way, with a norm
regulariser where this search keeps the norm exactly.

    1. Start from candidate 0's noise x_0 (the noise random search's first candidate and zero-order's pivot are).
    2. Solve x_k to a sample with the search sampler, keeping the graph; score it with the verifier.
    3. Back-propagate the score through the verifier and every solver step to g_k = ∂score/∂x_k.
    4. Step on the Gaussian shell: x_{k+1} is the point at distance lr·‖x_k‖ from x_k on the sphere of radius
       ‖x_k‖, towards the part of g_k orthogonal to x_k (a normalised Riemannian ascent step; the same map as
       zero-order's `neighbour`, with the gradient as the direction). The norm never changes, so every iterate
       keeps candidate 0's norm (≈ √d), where the model's training noise lies; nothing is renormalised or
       regularised. A row whose gradient has no tangent part (zero, or not finite: a failed score) stays put.
    5. Repeat 2-4 for K steps, then solve and score x_K (a forward without backward), and keep the best-scoring
       iterate (scored on its own forward solve; the first best among equal scores, so x_0 where nothing helps).

Because the step has a fixed length, the ascent does not depend on the gradient's scale: ascending p and log p is
the same walk (∇p = p·∇log p), so a saturated probability does not stall it. `lr` is the relative step on the
shell, as zero-order's λ is its relative distance. Default lr = 0.1: of 0.05 / 0.1 / 0.3 / 0.6 it gave the
highest verifier score on scenes (scene_classifier) and within 0.01 of the best on digits (classifier_prob, where
0.3 is best); a larger step fools a learned verifier sooner (the checker's accuracy falls faster).

Price. Each of the K gradient steps costs a forward solve (cost_per_sample forward NFEs, counted as NFEs: a
forward under grad is still a forward) and its backward (cost_per_sample backward rows, counted apart by the
NFECounter). A backward row is priced at `backward_nfe` forward NFEs, a ratio measured on the model
(experiments/backward_ratio.py), so K steps cost cost_per_sample·(1 + K·(1 + backward_nfe)) priced NFEs per
condition, and the budget (budget.nfe, in priced NFEs) buys the largest K that fits.

Memory. A block of B conditions keeps the activations of every network evaluation of its solve until the
backward: (NFEs of one solve) × B × (activations of one evaluation). Measured (`experiments/backward_ratio.py
--memory`, float32): 0.03 MiB per row and evaluation for the embedded MLPs, 1.9 GiB for SiT-XL/2 at 256×256, so
a 50-step Heun solve (99 evaluations) would keep ~185 GiB per sample: real models need few search steps, bfloat16
and gradient checkpointing, none of which this search does. (The model adapter must also keep the graph: SiT's
and the VAE's adapters run under torch.no_grad, so a gradient through them is refused, not silently wrong.)
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor
from tqdm.auto import tqdm

from inference_scaling.nfe import BudgetError, NotDifferentiableError, check_budget, priced_nfe
from inference_scaling.search.base import (SearchResult, SearchTask, batches, comparable, keep_best, lineage_rows,
                                           no_best, refuse_set_level)
from inference_scaling.search.zero_order import neighbour
from inference_scaling.verifiers.base import is_differentiable

# The NFE-equivalent of one backward row on the embedded models (median of their search solves' backward_nfe on
# one CPU thread, `OMP_NUM_THREADS=1 python experiments/backward_ratio.py`); real models measure their own.
DEFAULT_BACKWARD_NFE = 0.75


def differentiable_verifiers() -> list[str]:
    """The registered verifiers that declare a differentiable score."""
    from inference_scaling.verifiers import VERIFIERS  # the registry, imported late: verifiers do not import search

    return sorted(name for name, cls in VERIFIERS.items() if is_differentiable(cls))


def refuse_non_differentiable(verifier, name: str = "") -> None:
    """One line naming a verifier whose score is not differentiable in the image, and the ones that are."""
    if not is_differentiable(verifier):
        name = name or getattr(verifier, "name", type(verifier).__name__)
        raise ValueError(f"search=gradient back-propagates through the verifier, but verifier={name} does not "
                         f"declare a differentiable score; use one of: {', '.join(differentiable_verifiers())}")


def shell_step(x: Tensor, grad: Tensor, lr: float) -> Tensor:
    """Each row of x moved a distance lr·‖x‖ on its sphere of radius ‖x‖ towards the tangent part of its gradient
    row; a row whose gradient is not finite, or has no tangent part above float32 rounding (below 1e-6 of the
    gradient's norm: zero, or radial), stays where it is."""
    p, g = x.flatten(1).double(), grad.flatten(1).double()
    p_hat = p / p.norm(dim=1, keepdim=True)
    tangent = g - (g * p_hat).sum(dim=1, keepdim=True) * p_hat
    size = tangent.norm(dim=1)
    moves = torch.isfinite(size) & (size > 1e-6 * g.norm(dim=1)) & (size > 0)
    out = x.clone()
    if moves.any():
        out[moves] = neighbour(x[moves], grad[moves], lr)
    return out


def verifier_conditions(task: SearchTask, rows: Tensor, device) -> object:
    """What the verifier reads for the conditions at `rows` (as `SearchTask.score_images` gives it)."""
    if getattr(task.verifier, "takes_prompts", False):
        return [task.prompts[r] for r in rows.tolist()]
    return (task.conds if task.labels is None else task.labels)[rows].to(device)


def evaluate(task: SearchTask, x: Tensor, rows: Tensor, sigmas: Tensor,
             gradient: bool) -> tuple[Tensor, Tensor, Optional[Tensor]]:
    """Solve noises x (one block, at most max_batch_size rows) on `sigmas` and score the samples: (samples, CPU
    scores, ∂score/∂x or None). With `gradient` the solve keeps its graph (the undecorated solver under
    torch.enable_grad) and the score is back-propagated through the verifier and every solver step to x."""
    conds = task.conds[rows].to(task.device)
    if not gradient:
        final = task.solver(task.denoiser, task.enter(x, 1.0)[0], sigmas, conds)
        return final, task.score(final, rows), None
    solver = getattr(task.solver, "__wrapped__", task.solver)  # torch.no_grad's decorator keeps the function there
    with torch.enable_grad():
        leaf = x.detach().requires_grad_(True)
        final = solver(task.denoiser, task.enter(leaf, 1.0)[0], sigmas, conds)
        images = task.decode(final)
        score = task.verifier.differentiable_score(images, verifier_conditions(task, rows, images.device))
        if not score.requires_grad:
            raise NotDifferentiableError(f"verifier {task.verifier.name!r}'s score kept no graph back to the noise "
                                         f"(a decoder or solver under torch.no_grad); gradient search needs both "
                                         f"differentiable")
        (grad,) = torch.autograd.grad(score.sum(), leaf)
    return final.detach(), score.detach().float().cpu(), grad


class GradientSearch:
    """K steps of normalised gradient ascent on the Gaussian shell from candidate 0; K comes from the priced budget.

    Iterate k of a condition is its k-th point of the walk (0 = candidate 0's noise); `candidate_scores` is
    (C, 1 + K) in iterate order and `chosen` the winning iterate. Its noise is no candidate noise, so each
    condition's lineage records what recomputes it: the initial noise index, K, lr, the winning iterate, and the
    search grid and solver the gradients were taken on (`replay`).
    """

    passes_x0 = False  # self-supervised verifiers are not differentiable here: they are refused before this matters
    needs_differentiable = True  # the verifier must declare `differentiable` (refused in one line otherwise)

    def __init__(self, lr: float = 0.1, backward_nfe: float = DEFAULT_BACKWARD_NFE, progress: bool = False):
        if not (math.isfinite(lr) and 0.0 < lr <= 2.0):
            raise ValueError(f"search.lr={lr} must be in (0, 2] (relative step on the Gaussian shell)")
        if not (math.isfinite(backward_nfe) and backward_nfe >= 0.0):
            raise ValueError(f"search.backward_nfe={backward_nfe} must be a finite number >= 0 (forward NFEs one "
                             f"backward row costs; measure it with experiments/backward_ratio.py)")
        self.lr = lr
        self.backward_nfe = backward_nfe
        self.progress = progress

    def step_cost(self, task: SearchTask) -> float:
        """Priced NFEs per condition of one gradient step: a forward solve and its backward."""
        return priced_nfe(task.cost_per_sample, task.cost_per_sample, self.backward_nfe)

    def nfe(self, task: SearchTask, k: int) -> float:
        """Priced NFEs per condition of K steps: K forward+backward solves and the last iterate's forward."""
        return priced_nfe((k + 1) * task.cost_per_sample, k * task.cost_per_sample, self.backward_nfe)

    def plan(self, task: SearchTask, budget: int) -> int:
        """K, the most gradient steps whose priced NFEs fit the budget; refuses a budget that buys none."""
        check_budget(budget, task.cost_per_sample)
        k = max(0, int((budget - task.cost_per_sample) // self.step_cost(task)))
        while self.nfe(task, k + 1) <= budget:  # floor division of floats may fall one short
            k += 1
        while k > 0 and self.nfe(task, k) > budget:
            k -= 1
        if k < 1:
            need = math.ceil(self.nfe(task, 1) - 1e-9)
            raise BudgetError(
                f"budget.nfe={budget} buys no gradient step: one step is a forward solve and its backward, "
                f"{task.cost_per_sample} + {self.backward_nfe:g}×{task.cost_per_sample} = {self.step_cost(task):g} "
                f"priced NFEs, and the last iterate's solve {task.cost_per_sample} more; use budget.nfe >= {need}")
        return k

    iterations = plan

    def __call__(self, task: SearchTask, budget: int) -> SearchResult:
        refuse_set_level(task, "gradient search")
        refuse_non_differentiable(task.verifier)
        K = self.plan(task, budget)
        c = len(task.condition_ids)
        everyone = torch.arange(c)
        x = task.noise(everyone, torch.zeros(c, dtype=torch.long))  # iterate 0: candidate 0's noise
        scores = torch.empty(c, K + 1)
        best, images = no_best(c), None
        for k in tqdm(range(K + 1), desc="gradient search", disable=not self.progress, leave=False):
            for part in batches(c, task.max_batch_size):
                rows = everyone[part]
                final, s, grad = evaluate(task, x[part], rows, task.sigmas, gradient=k < K)
                scores[rows, k] = s
                final = final.cpu()
                if images is None:
                    images = torch.zeros(c, *final.shape[1:], dtype=final.dtype)
                keep_best(best, images, rows, s, final)
                if k < K:
                    x[part] = shell_step(x[part], grad, self.lr)
        chosen = comparable(scores).argmax(dim=1)  # the first best: the iterate keep_best kept
        grid = [float(s) for s in task.sigmas]
        lineage = [{"algorithm": "gradient", "row": row, "condition_id": int(task.condition_ids[row]), "initial": 0,
                    "gradient_steps": K, "lr": self.lr, "iterate": int(chosen[row]), "search_sigmas": grid,
                    "solver": task.solver.__name__} for row in range(c)]
        return SearchResult(images=images, chosen=chosen, scores=scores.gather(1, chosen[:, None]).squeeze(1),
                            candidate_scores=scores, n_candidates=K + 1, verifier_calls=c * (K + 1),
                            lineage=lineage)

    @staticmethod
    def iterates(task: SearchTask, lineage: list[dict]) -> Tensor:
        """The winning iterate of each lineage entry, recomputed from its initial noise: the walk retaken on the
        recorded search grid (with the task's denoiser, solver and verifier), every entry stepped in the same
        blocks of max_batch_size rows as the search stepped them, up to the latest winning iterate. On the CPU in
        float32 a whole chunk's lineage reproduces the search's iterates bit for bit; a subset (other blocks) agrees
        to float rounding."""
        rows = lineage_rows(task, lineage)
        first = lineage[0]
        assert all(e["lr"] == first["lr"] and e["search_sigmas"] == first["search_sigmas"] for e in lineage), \
            "entries replayed together share their step and grid"
        assert task.solver.__name__ == first["solver"], f"the walk was taken with {first['solver']}"
        sigmas = torch.tensor(first["search_sigmas"], dtype=torch.float64)
        x = task.noise(rows, torch.tensor([e["initial"] for e in lineage]))
        target = torch.tensor([e["iterate"] for e in lineage])
        out = x.clone()
        for k in range(1, int(target.max()) + 1):
            for part in batches(len(rows), task.max_batch_size):
                _, _, grad = evaluate(task, x[part], rows[part], sigmas, gradient=True)
                x[part] = shell_step(x[part], grad, first["lr"])
            done = (target == k).to(x.device)
            out[done] = x[done]
        return out

    @staticmethod
    def replay(task: SearchTask, lineage: list[dict]) -> Tensor:
        """Re-render chosen samples: their winning iterates (`iterates`), solved on the task's grid. A task with
        another grid (the final sampler) renders the same noises with it; the walk itself is retaken on the
        recorded search grid, so replaying costs the walk's forward and backward NFEs again (counted)."""
        rows = lineage_rows(task, lineage)
        return task.solve(GradientSearch.iterates(task, lineage), rows)
