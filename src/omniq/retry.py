"""The retry budget and the backoff schedule, as pure functions.

The contract, binding for every backend and both twins:

* ``attempts`` counts claims: it goes up by one, atomically, on every
  PENDING -> RUNNING transition.
* After a failure the queue retries iff ``attempts < max_retries``, so
  ``max_retries=3`` means exactly three executions in total.
* The delay before retry *n* (``n = attempts`` of the failed run) is
  ``min(2 ** (n - 1), 60)`` seconds with +/-25 % jitter: 1, 2, 4, 8, 16, 32, 60, 60...
"""

from __future__ import annotations

import random

BASE_DELAY = 1.0
MAX_DELAY = 60.0
JITTER = 0.25
DEFAULT_MAX_RETRIES = 3


def should_retry(attempts: int, max_retries: int) -> bool:
    """Whether a task that failed on its ``attempts``-th execution runs again."""
    return attempts < max_retries


def base_delay(attempts: int) -> float:
    """The delay before the next run, without jitter, after ``attempts`` executions."""
    exponent = max(attempts, 1) - 1
    # min() on the exponent first: 2 ** 10_000 would be a huge int for nothing.
    return min(BASE_DELAY * 2.0 ** min(exponent, 16), MAX_DELAY)


def retry_delay(attempts: int, rng: random.Random | None = None) -> float:
    """The jittered delay in seconds before the next run, after ``attempts`` executions."""
    delay = base_delay(attempts)
    spread = (rng or _rng).uniform(-JITTER, JITTER)
    return delay * (1.0 + spread)


def delay_bounds(attempts: int) -> tuple[float, float]:
    """The smallest and largest delay :func:`retry_delay` can return."""
    delay = base_delay(attempts)
    return delay * (1.0 - JITTER), delay * (1.0 + JITTER)


_rng = random.Random()
