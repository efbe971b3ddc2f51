"""The pool's batching rules (omniq.batching): adaptive prefetch and when to write."""

from __future__ import annotations

from omniq import WorkerPool
from omniq.batching import MAX_DELAY, MAX_FACTOR, Batching
from omniq.storage import MemoryStorage


def test_prefetch_starts_at_concurrency_and_grows_for_short_tasks() -> None:
    batching = Batching(concurrency=4, prefetch=None)
    assert batching.prefetch() == 4  # nothing known yet
    for _ in range(50):
        batching.finished(0.0001, now=0.0)
    assert batching.prefetch() == MAX_FACTOR * 4


def test_prefetch_stays_at_concurrency_for_slow_tasks() -> None:
    batching = Batching(concurrency=4, prefetch=None)
    for _ in range(50):
        batching.finished(0.5, now=0.0)
    assert batching.prefetch() == 4


def test_a_prefetch_given_by_the_user_is_kept() -> None:
    for fixed in (0, 3):
        batching = Batching(concurrency=4, prefetch=fixed)
        for _ in range(50):
            batching.finished(0.0001, now=0.0)
        assert batching.prefetch() == fixed


def test_outcomes_wait_only_while_tasks_queue_for_a_slot() -> None:
    batching = Batching(concurrency=2, prefetch=None)
    batching.finished(0.0001, now=0.0)
    assert batching.delay(unwritten=1, ready=0, now=0.0) is None  # a slot would idle
    assert batching.delay(unwritten=1, ready=3, now=0.0) == MAX_DELAY
    assert batching.delay(unwritten=1, ready=3, now=MAX_DELAY / 2) == MAX_DELAY / 2


def test_outcomes_are_written_when_the_batch_is_full_or_the_oldest_waited_enough() -> None:
    batching = Batching(concurrency=2, prefetch=2)
    batching.finished(0.0001, now=100.0)
    assert batching.delay(unwritten=4, ready=1, now=100.0) is None  # concurrency + prefetch
    assert batching.delay(unwritten=1, ready=1, now=100.0 + MAX_DELAY) is None
    batching.written()
    assert batching.delay(unwritten=1, ready=1, now=200.0) is None  # nothing unwritten known


def test_long_tasks_never_wait_for_a_batch() -> None:
    batching = Batching(concurrency=2, prefetch=None)
    batching.finished(1.0, now=100.0)
    assert batching.delay(unwritten=1, ready=5, now=100.0) is None


def test_an_unknown_duration_leaves_the_average_alone() -> None:
    batching = Batching(concurrency=2, prefetch=None)
    batching.finished(None, now=100.0)
    assert batching.mean_duration is None and batching.prefetch() == 2


def test_a_pool_reports_its_current_prefetch() -> None:
    adaptive = WorkerPool(MemoryStorage(), concurrency=3)
    assert adaptive.prefetch == 3  # nothing run yet
    assert WorkerPool(MemoryStorage(), concurrency=3, prefetch=0).prefetch == 0
