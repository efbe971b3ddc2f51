"""The SQLite store's idle shortcut: skip the claim's write while nothing changed.

After a claim that found nothing, the store remembers, per set of queues asked for,
``(data_version, earliest pending eta)``. ``PRAGMA data_version`` changes when another
connection commits, never for the store's own connection, so every write of the store
itself must forget what was remembered, and so must a write that *began* while a claim
was running: otherwise a claim that read the levels before an enqueue on the same
connection would remember "empty" after the enqueue cleared the shortcut, and the
worker would skip every claim until another process wrote. A generation number, bumped
by each write as it starts, tells the claim whether anything started after it.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

Idle = tuple[int, float | None]  # (data_version, earliest pending eta) of an empty claim
_QueuesKey = tuple[str, ...] | None


class IdleShortcut:
    """What the last empty claim saw, per set of queues; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._generation = 0
        self._states: dict[_QueuesKey, Idle] = {}

    def write_begins(self) -> int:
        """A write of this store's connection starts: forget, and return its generation."""
        with self._lock:
            self._generation += 1
            self._states.clear()
            return self._generation

    def remember(self, generation: int, queues: Sequence[str] | None, idle: Idle | None) -> None:
        """Keep what the empty claim of ``generation`` saw, unless a write began since."""
        if idle is None:
            return
        with self._lock:
            if generation == self._generation:
                self._states[_key(queues)] = idle

    def get(self, queues: Sequence[str] | None) -> Idle | None:
        """What the last empty claim of ``queues`` saw, if nothing was written since."""
        return self._states.get(_key(queues))


def _key(queues: Sequence[str] | None) -> _QueuesKey:
    return None if queues is None else tuple(queues)
