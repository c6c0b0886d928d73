"""Noises drawn ahead in a background thread (`SearchTask.prefetch`, `noise.NoiseAhead`): the same values, used by
every search, and off by default on the CPU."""

import pytest
import torch

from inference_scaling.noise import AHEAD, NoiseAhead, _torch_noise, candidate_noise, prefetch_noise
from inference_scaling.search import build_search
from inference_scaling.verifiers import build_verifier
from test_search_algorithms import make_task

pytestmark = pytest.mark.usefixtures("one_thread")


def test_a_noise_drawn_ahead_is_the_noise_drawn_inline_and_is_taken_once():
    conds, idx = torch.arange(5), torch.tensor([0, 3, 1, 7, 2])
    hits = AHEAD.hits
    prefetch_noise(3, conds, idx, (1, 8, 8))
    conds[0], idx[0] = 99, 99  # the caller reuses its tensors: the request was copied
    assert torch.equal(candidate_noise(3, torch.arange(5), torch.tensor([0, 3, 1, 7, 2]), (1, 8, 8)),
                       _torch_noise(3, torch.arange(5), torch.tensor([0, 3, 1, 7, 2]), (1, 8, 8)))
    assert AHEAD.hits == hits + 1
    candidate_noise(3, torch.arange(5), torch.tensor([0, 3, 1, 7, 2]), (1, 8, 8))  # taken: drawn inline again
    assert AHEAD.hits == hits + 1
    prefetch_noise(3, torch.arange(5), torch.zeros(5, dtype=torch.long), (4,), generator="counter")
    assert not AHEAD.pending  # the counter generator is batched on the device: never drawn ahead


def test_other_seeds_shapes_and_indices_do_not_take_a_noise_drawn_ahead():
    ahead = NoiseAhead(depth=2)
    ahead.submit(1, torch.arange(3), torch.zeros(3, dtype=torch.long), (2, 2))
    for seed, conds, idx, shape in [(2, torch.arange(3), torch.zeros(3, dtype=torch.long), (2, 2)),
                                    (1, torch.arange(3), torch.ones(3, dtype=torch.long), (2, 2)),
                                    (1, torch.arange(3), torch.zeros(3, dtype=torch.long), (4,))]:
        assert ahead.take(seed, conds, idx, shape) is None
    assert ahead.take(1, torch.arange(3), torch.zeros(3, dtype=torch.long), (2, 2)) is not None
    for k in range(4):  # at most `depth` held: the oldest are dropped
        ahead.submit(0, torch.arange(3), torch.full((3,), k), (2,))
    assert len(ahead.pending) == 2
    assert ahead.take(0, torch.arange(3), torch.full((3,), 0), (2,)) is None
    assert ahead.take(0, torch.arange(3), torch.full((3,), 3), (2,)) is not None


def test_a_forked_process_never_waits_on_its_parents_worker():
    """A child forked with noises pending holds futures that only the parent's worker thread would finish: it draws
    them itself instead of waiting forever."""
    import threading
    from concurrent.futures import Future

    ahead = NoiseAhead()
    key = ahead.key(0, torch.arange(2), torch.zeros(2, dtype=torch.long), (2,))
    ahead.pending[key] = Future()  # never finished: the worker that would run it is not in this process
    ahead.pid = -1
    taken = []
    waiter = threading.Thread(target=lambda: taken.append(ahead.take(0, torch.arange(2), torch.zeros(2, dtype=torch.long),
                                                                     (2,))), daemon=True)
    waiter.start()
    waiter.join(timeout=10)
    assert not waiter.is_alive(), "take() waits on a future no thread of this process will finish"
    assert taken == [None] and not ahead.pending


def test_a_forked_process_gets_its_own_worker():
    ahead = NoiseAhead()
    ahead.submit(0, torch.arange(2), torch.zeros(2, dtype=torch.long), (2,))
    pool = ahead.pool
    ahead.pid = -1  # as in a child forked after the worker started (it has the pool object but not its thread)
    ahead.submit(0, torch.arange(2), torch.ones(2, dtype=torch.long), (2,))
    assert ahead.pool is not pool and len(ahead.pending) == 1
    assert torch.equal(ahead.take(0, torch.arange(2), torch.ones(2, dtype=torch.long), (2,)),
                       _torch_noise(0, torch.arange(2), torch.ones(2, dtype=torch.long), (2,)))


class SetLevel:
    """The classifier's scores, declared set-level: random search then solves condition-major flat batches."""

    set_level = True
    name = "set_level"

    def __init__(self):
        self.inner = build_verifier("classifier_prob")

    def __call__(self, x, cond, groups=None):
        return self.inner(x, cond)


@pytest.mark.parametrize("name, budget, verifier", [
    ("random", 30, "classifier_prob"), ("random", 12, "set_level"), ("adaptive", 30, "classifier_prob"),
    ("zero_order", 39, "classifier_prob"), ("paths", 40, "classifier_prob"), ("fk_steering", 40, "classifier_prob"),
    ("evolutionary", 60, "classifier_prob")])
def test_every_search_takes_noises_drawn_ahead_and_selects_the_same(flow, name, budget, verifier):
    """With noises drawn ahead the search takes them (hits) and chooses exactly what it chooses without."""
    results, hits = {}, {}
    for ahead in (False, True):
        # batches of 8 rows: several batches per candidate index (random) and per round, so there is a next one
        task, _ = make_task(flow, SetLevel() if verifier == "set_level" else build_verifier(verifier), per_class=2,
                            max_batch_size=8)
        task.noise_ahead = ahead
        before = AHEAD.hits
        results[ahead] = build_search(name)(task, budget)
        hits[ahead] = AHEAD.hits - before
    assert hits[False] == 0 and hits[True] > 0
    assert torch.equal(results[True].chosen, results[False].chosen)
    assert torch.equal(results[True].images, results[False].images)
    assert torch.equal(results[True].candidate_scores.nan_to_num(-9), results[False].candidate_scores.nan_to_num(-9))


def test_noises_are_drawn_ahead_by_default_only_off_the_cpu(flow, verifier):
    task, _ = make_task(flow, verifier)
    assert task.noise_ahead is None and task.device == "cpu"
    before = AHEAD.hits
    build_search("random")(task, 12)
    assert AHEAD.hits == before and not AHEAD.pending
    task.device = "meta"  # any device off the host: a request is drawn ahead (on the host) when named
    task.prefetch(torch.arange(3), torch.zeros(3, dtype=torch.long))
    assert len(AHEAD.pending) == 1
    AHEAD.take(task.seed, task.condition_ids[:3], torch.zeros(3, dtype=torch.long), task.noise_shape)
