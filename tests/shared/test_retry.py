"""The retry budget and backoff schedule (pure functions)."""

from __future__ import annotations

import random

import pytest

from omniq import retry


@pytest.mark.parametrize(
    ("attempts", "max_retries", "expected"),
    [(1, 3, True), (2, 3, True), (3, 3, False), (4, 3, False), (1, 1, False), (1, 0, False)],
)
def test_should_retry_is_attempts_below_budget(
    attempts: int, max_retries: int, expected: bool
) -> None:
    assert retry.should_retry(attempts, max_retries) is expected


def test_base_delays_double_up_to_the_cap() -> None:
    assert [retry.base_delay(n) for n in range(1, 10)] == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    assert retry.base_delay(10_000) == 60


def test_jittered_delay_stays_within_25_percent() -> None:
    rng = random.Random(7)
    for attempts in range(1, 12):
        low, high = retry.delay_bounds(attempts)
        assert low == pytest.approx(retry.base_delay(attempts) * 0.75)
        assert high == pytest.approx(retry.base_delay(attempts) * 1.25)
        samples = [retry.retry_delay(attempts, rng) for _ in range(500)]
        assert all(low <= sample <= high for sample in samples)
        # the jitter really spreads the delays (not a constant factor)
        assert max(samples) - min(samples) > (high - low) * 0.5
