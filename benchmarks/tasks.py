"""The task functions the benchmark runs: no-ops, and stamps that record when they start.

Workers import them by path (``"benchmarks.tasks.noop"``). ``stamp``/``astamp``
call the callback registered with :func:`expect` for their token with
``time.perf_counter()`` taken as the function starts: the wake-up latency is that
moment minus the moment the producer called ``enqueue``. :data:`COUNTDOWN`
tells when a number of Huey tasks has run (Huey has no ``process_tasks(limit=N)``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

NOOP = "benchmarks.tasks.noop"
ANOOP = "benchmarks.tasks.anoop"
STAMP = "benchmarks.tasks.stamp"
ASTAMP = "benchmarks.tasks.astamp"

_lock = threading.Lock()
_watchers: dict[str, Callable[[float], None]] = {}


def noop() -> None:
    """Do nothing (the blocking twin's task)."""


async def anoop() -> None:
    """Do nothing, as a coroutine (the async twin's task: it runs on the event loop)."""


def expect(token: str, callback: Callable[[float], None]) -> None:
    """Call ``callback(started)`` when the stamp task of ``token`` starts."""
    with _lock:
        _watchers[token] = callback


def _started(token: str, started: float) -> None:
    with _lock:
        callback = _watchers.pop(token, None)
    if callback is not None:
        callback(started)


class Started:
    """A callback for :func:`expect` that a thread can wait on."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.at = 0.0

    def __call__(self, at: float) -> None:
        self.at = at
        self._event.set()

    def wait(self, timeout: float) -> bool:
        """Whether the task started within ``timeout`` seconds."""
        return self._event.wait(timeout)


def stamp(token: str) -> None:
    """Record when this task started (blocking twin, and Huey)."""
    _started(token, time.perf_counter())


async def astamp(token: str) -> None:
    """Record when this task started (async twin)."""
    _started(token, time.perf_counter())


class Countdown:
    """A thread-safe count of finished tasks; :meth:`wait` returns once ``target`` ran."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._count = 0
        self._target = 0
        self.last = 0.0

    def arm(self, target: int) -> None:
        """Start counting again, until ``target`` tasks have run."""
        with self._lock:
            self._count = 0
            self._target = target
            self._done.clear()

    def retarget(self, target: int) -> None:
        """Count to ``target`` instead (done already if that many ran)."""
        with self._lock:
            self._target = target
            if self._count >= target:
                self.last = time.perf_counter()
                self._done.set()

    @property
    def target(self) -> int:
        """How many tasks :meth:`wait` waits for."""
        return self._target

    def tick(self) -> None:
        """One task ran."""
        with self._lock:
            self._count += 1
            if self._count >= self._target:
                self.last = time.perf_counter()
                self._done.set()

    @property
    def count(self) -> int:
        """How many tasks ran since :meth:`arm`."""
        return self._count

    def wait(self, timeout: float) -> bool:
        """Whether ``target`` tasks ran within ``timeout`` seconds."""
        return self._done.wait(timeout)


COUNTDOWN = Countdown()


def count() -> None:
    """A no-op that counts itself (Huey's drain and end-to-end task)."""
    COUNTDOWN.tick()
