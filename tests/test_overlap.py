"""Remote verifiers (an API) are scored beside the denoiser: the next batch is solved while one is being scored,
and the search selects exactly what it selects when every batch is scored inline."""

import threading

import pytest
import torch

from inference_scaling.denoiser import GuidedDenoiser
from inference_scaling.nfe import NFECounter
from inference_scaling.sampling import heun, linear_sigmas, solver_nfe
from inference_scaling.search import SearchTask, build_search
from inference_scaling.search.base import ScoringQueue
from inference_scaling.verifiers.base import VerifierCost
from inference_scaling.verifiers.llm_grader import LLMGrader

pytestmark = pytest.mark.usefixtures("one_thread")


class SlowVerifier:
    """A deterministic score (−mean x²) that, when remote, holds each call open until the denoiser has run
    meanwhile (or 0.3 s have passed: the last batch of a round has no solve after it), counting the calls during
    which it did."""

    name = "slow"

    def __init__(self, remote: bool):
        self.remote = remote
        self.cost = VerifierCost()
        self.in_flight = threading.Event()
        self.denoised_meanwhile = threading.Event()
        self.overlapped = 0
        self.calls = 0

    def __call__(self, images, cond):
        self.calls += 1
        self.denoised_meanwhile.clear()
        self.in_flight.set()
        if self.remote:
            self.overlapped += self.denoised_meanwhile.wait(timeout=0.3)
        self.in_flight.clear()
        return -images.flatten(1).pow(2).mean(dim=1)


class Watch:
    def __init__(self, network, verifier):
        self.network, self.verifier = network, verifier

    def __call__(self, x, sigma, cond):
        if self.verifier.in_flight.is_set():
            self.verifier.denoised_meanwhile.set()
        return self.network(x, sigma, cond)


def run(flow, name, remote):
    verifier = SlowVerifier(remote)
    sigmas = linear_sigmas(2)
    labels = torch.arange(10).repeat(2)
    task = SearchTask(denoiser=GuidedDenoiser(NFECounter(Watch(flow, verifier)), 1.0, torch.tensor([10])),
                      solver=heun, sigmas=sigmas, cost_per_sample=solver_nfe("heun", sigmas), conds=labels,
                      condition_ids=torch.arange(20), noise_shape=(1, 8, 8), seed=0, verifier=verifier,
                      max_batch_size=8)
    assert task.overlap == remote
    return build_search(name)(task, 60), verifier


@pytest.mark.parametrize("name", ["random", "zero_order", "evolutionary", "paths", "adaptive"])
def test_a_remote_verifier_overlaps_the_denoiser_and_the_search_selects_the_same(flow, name):
    inline, _ = run(flow, name, remote=False)
    overlapped, remote_verifier = run(flow, name, remote=True)
    # Calls that had a solve running beside them: adaptive search drains its queue after each round (3 batches of 8
    # here), so at most 2 of 3 can; a third is what a loaded 2-core machine keeps (inline scoring has none).
    assert remote_verifier.overlapped >= remote_verifier.calls // 3
    assert torch.equal(inline.chosen, overlapped.chosen)
    assert torch.equal(inline.images, overlapped.images)
    assert torch.equal(inline.candidate_scores, overlapped.candidate_scores)
    assert inline.lineage == overlapped.lineage


def test_a_failed_remote_call_is_raised_in_the_caller():
    class Failing(SlowVerifier):
        def __call__(self, images, cond):
            raise ConnectionError("grader unreachable")

    task = SearchTask(denoiser=None, solver=heun, sigmas=linear_sigmas(2), cost_per_sample=3,
                      conds=torch.arange(2), condition_ids=torch.arange(2), noise_shape=(1, 8, 8), seed=0,
                      verifier=Failing(remote=True), max_batch_size=8)
    with pytest.raises(ConnectionError, match="grader unreachable"):
        with ScoringQueue(task) as queue:
            queue.submit(torch.zeros(2, 1, 8, 8), torch.arange(2), lambda x, s: None)


def test_the_llm_grader_is_remote():
    assert LLMGrader.remote is True
