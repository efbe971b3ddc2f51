"""Back off on repeated failures, and say so loudly without flooding the log.

Shared by every loop that calls a store over and over (a pool's dispatcher, its
duties): the first failure is logged at once as an ERROR, repeats are summarised
at most every :data:`SUMMARY_EVERY` seconds, and the recovery is logged too. The
delay grows exponentially with full jitter up to a cap, so a failing store is not
hammered in a hot loop, and the first success resets it, so a store that comes
back is used at once.
"""

from __future__ import annotations

import random
import time

from omniq import logging as omniq_logging

SUMMARY_EVERY = 30.0  # seconds between two summaries of a failure that goes on


class Backoff:
    """Capped exponential delays after consecutive failures (jittered), reset by success.

    ``first`` is the upper bound of the first delay, ``cap`` of every delay.
    """

    def __init__(self, first: float = 0.05, cap: float = 10.0) -> None:
        self.first = first
        self.cap = cap
        self.failures = 0

    def failed(self) -> float:
        """Count one more failure; return how long to wait before trying again."""
        self.failures += 1
        bound = min(self.cap, self.first * 2 ** min(self.failures - 1, 32))
        return random.uniform(bound / 2, bound)  # jitter: failing workers spread out

    def succeeded(self) -> int:
        """Reset; return how many failures there had been in a row."""
        failures, self.failures = self.failures, 0
        return failures


class FailureReport:
    """Logs a failing operation: the first error, then a summary now and then, then the end.

    ``operation`` names what failed (``"claim"``, ``"prune"``); ``extra`` goes on
    every record (e.g. ``worker=``).
    """

    def __init__(self, operation: str, **extra: str) -> None:
        self.operation = operation
        self.extra = extra
        self._since = 0.0
        self._last_summary = 0.0
        self._count = 0
        self._last_error = ""

    def failed(self, error: BaseException, retry_in: float) -> None:
        """Record one failure (logged at once if it is the first of a run)."""
        now = time.monotonic()
        self._count += 1
        self._last_error = f"{type(error).__name__}: {error}"
        if self._count == 1:
            self._since = self._last_summary = now
            omniq_logging.log_storage_error(
                self.operation, f"{self._last_error} (retrying in {retry_in:.2f}s)", **self.extra
            )
        elif now - self._last_summary >= SUMMARY_EVERY:
            self._last_summary = now
            omniq_logging.log_storage_error(
                self.operation,
                f"still failing: {self._count} errors in {now - self._since:.0f}s, the last "
                f"{self._last_error} (retrying in {retry_in:.2f}s)",
                **self.extra,
            )

    def succeeded(self) -> None:
        """Note a success; log the recovery if a run of failures ends here."""
        if self._count:
            took = time.monotonic() - self._since
            omniq_logging.get_logger().warning(
                f"{self.operation} works again after {self._count} failed attempt(s) "
                f"over {took:.1f}s"
            )
            self._count = 0
