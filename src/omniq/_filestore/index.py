"""What one process knows of ``pending/``: the names of each queue, in claim order.

One sorted list per (queue, priority) level; a claim merges the heads of the
levels of the queues it serves, the way the memory store merges its heaps. Names
compare as (priority, eta, enqueue order) in every queue, so the smallest due
head is the next task. Names another process removed stay until a claim trips
over them (the rename fails and the claim moves on); names another process added
appear at the next listing of their queue's directory. No file is opened to keep it.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from omniq._filestore import names

# A listing is trusted while the directory's mtime is unchanged, unless that mtime
# is so close to the listing that a later change could share its timestamp.
_RACY_NS = 2_500_000_000
_MAX_AGE_NS = 10_000_000_000  # list again at least this often, whatever the mtime says
REFRESH_NS = 1_000_000_000  # with due tasks in hand, look for others' new ones this often

Snapshot = tuple[int | None, int]  # (the directory's mtime, when it was listed)


class Listing(NamedTuple):
    """The names of one directory, and its mtime just before they were read."""

    mtime_ns: int
    listed_ns: int
    names: list[str]


def stale(snapshot: Snapshot, mtime_ns: int, now_ns: int, eager: bool) -> bool:
    """Whether a listing taken at ``snapshot`` may miss files, given the mtime seen now."""
    known_mtime, listed_ns = snapshot
    if known_mtime is None:
        return True
    quiet = mtime_ns == known_mtime and known_mtime <= listed_ns - _RACY_NS
    if quiet and now_ns - listed_ns < _MAX_AGE_NS:
        return False
    return eager or now_ns - listed_ns >= REFRESH_NS


class QueueIndex:
    """The names of one ``pending/{queue}/`` directory, one sorted list per priority."""

    def __init__(self) -> None:
        self.levels: dict[str, list[str]] = {}  # rank -> sorted names (may hold stale ones)
        self.present: set[str] = set()
        self.intents: dict[str, str] = {}  # task id -> intent marker seen here
        self.recent: dict[str, int] = {}  # names added here -> when (a listing may predate them)
        self.mtime_ns: int | None = None
        self.listed_ns = 0

    def add(self, name: str) -> None:
        self.present.add(name)
        bisect.insort(self.levels.setdefault(name[names.RANK_AT], []), name)

    def head(self, rank: str) -> str | None:
        """The first name of a level still present, dropping the stale ones before it."""
        level = self.levels[rank]
        index = 0
        while index < len(level) and level[index] not in self.present:
            index += 1
        del level[:index]
        return level[0] if level else None

    def heads(self) -> list[str]:
        found: list[str] = []
        for rank in list(self.levels):
            head = self.head(rank)
            if head is None:
                del self.levels[rank]
            else:
                found.append(head)
        return found


class PendingIndex:
    """Every queue's :class:`QueueIndex`, the id of each pending task, and pending/ itself."""

    def __init__(self) -> None:
        self.queues: dict[str, QueueIndex] = {}
        self.by_id: dict[str, tuple[str, str]] = {}  # task id -> (queue, name)
        self.top: Snapshot = (None, 0)  # pending/ itself: its queue directories

    def _queue(self, queue: str) -> QueueIndex:
        found = self.queues.get(queue)
        if found is None:
            found = self.queues[queue] = QueueIndex()
        return found

    def scope(self, queues: Sequence[str] | None) -> list[str]:
        """The known queues among ``queues`` (``None``: every known queue)."""
        if queues is None:
            return list(self.queues)
        return [queue for queue in queues if queue in self.queues]

    def snapshots(self, queues: Iterable[str]) -> dict[str, Snapshot]:
        found: dict[str, Snapshot] = {}
        for queue in queues:
            known = self.queues.get(queue)
            found[queue] = (None, 0) if known is None else (known.mtime_ns, known.listed_ns)
        return found

    def oldest_listing(self, queues: Sequence[str] | None) -> int:
        chosen = self.scope(queues)
        if not chosen or (queues is None and self.top[0] is None):
            return 0
        return min(self.queues[queue].listed_ns for queue in chosen)

    def merge(self, queue: str, listing: Listing) -> tuple[list[str], list[str]]:
        """Take in a fresh listing of a queue; return the garbage names and intent markers."""
        index = self._queue(queue)
        if listing.listed_ns < index.listed_ns:
            return [], []  # an older listing finished after a newer one: keep the newer
        current: set[str] = set()
        intents: list[str] = []
        for name in listing.names:
            if name.startswith("."):
                if name.startswith(names.INTENT):
                    intents.append(name)
            else:
                current.add(name)
        for name, added_ns in index.recent.items():
            if added_ns >= listing.listed_ns:
                current.add(name)  # published here after the listing began
        index.recent = {n: t for n, t in index.recent.items() if t >= listing.listed_ns}
        for name in index.present - current:
            task_id = names.pending_id(name)
            if self.by_id.get(task_id) == (queue, name):
                del self.by_id[task_id]
        garbage: list[str] = []
        new: list[str] = []
        for name in current - index.present:
            match = names.PENDING.fullmatch(name)
            if match is None:
                garbage.append(name)
                continue
            self.by_id[match["id"]] = (queue, name)
            new.append(name)
        current.difference_update(garbage)
        index.present = current
        total = sum(len(level) for level in index.levels.values())
        if total > 2 * len(current) + 64 or len(new) > 32:
            index.levels = {}
            for name in sorted(current):
                index.levels.setdefault(name[names.RANK_AT], []).append(name)
        else:
            for name in new:
                bisect.insort(index.levels.setdefault(name[names.RANK_AT], []), name)
        index.intents = {n.split("~")[2]: n for n in intents if n.count("~") == 3}
        index.mtime_ns, index.listed_ns = listing.mtime_ns, listing.listed_ns
        return garbage, intents

    def insert(self, queue: str, name: str) -> None:
        index = self._queue(queue)
        if name in index.present:
            return
        index.add(name)
        self.by_id[names.pending_id(name)] = (queue, name)
        index.recent[name] = time.time_ns()

    def discard(self, queue: str, name: str) -> None:
        index = self.queues.get(queue)
        if index is None:
            return
        index.present.discard(name)
        index.recent.pop(name, None)
        task_id = names.pending_id(name)
        if self.by_id.get(task_id) == (queue, name):
            del self.by_id[task_id]

    def intent_of(self, queue: str, task_id: str) -> str | None:
        index = self.queues.get(queue)
        return None if index is None else index.intents.get(task_id)

    def _due_heads(self, due_key: str, queues: Sequence[str] | None) -> list[tuple[str, str]]:
        return [
            (name, queue)
            for queue in self.scope(queues)
            for name in self.queues[queue].heads()
            if name[names.ETA_AT] <= due_key
        ]

    def has_due(self, due_key: str, queues: Sequence[str] | None) -> bool:
        return bool(self._due_heads(due_key, queues))

    def first_eta(self, queues: Sequence[str] | None) -> float | None:
        heads = [name for queue in self.scope(queues) for name in self.queues[queue].heads()]
        return min((names.eta_of(name) for name in heads), default=None)

    def take_due(
        self, due_key: str, count: int, queues: Sequence[str] | None
    ) -> list[tuple[str, str]]:
        """Remove and return up to ``count`` due ``(queue, name)``, in claim order."""
        taken: list[tuple[str, str]] = []
        while len(taken) < count:
            heads = self._due_heads(due_key, queues)
            if not heads:
                break
            name, queue = min(heads)
            self.discard(queue, name)
            taken.append((queue, name))
        return taken
