"""File storage: one JSON file per task, and the claim is an ``os.rename``.

Layout under the base directory (directories 0700, files 0600)::

    pending/{eta}-{seq}-{id}.json   eta in microseconds and seq, both 20 digits: name order
                                    is claim order, so a claim reads names, not files
    running/{id}.{token}.json       the claim renamed it here; the file's mtime is the lease
    done/{status}/{id}.json         status: completed, failed or cancelled
    quarantine/                     unreadable files, set aside and logged

A task is in exactly one of these files. A claim renames the oldest due pending
file into ``running/`` under a name holding a fresh attempt token: the rename
that succeeds wins, and every other claimant moves on to the next name. The
running file keeps the bytes it had while pending; the attempt (token, lease,
start, one more attempt) lives in its name and mtime. So a heartbeat is a
``utime`` and a stale attempt can never touch the file again: its name is gone.

Every other change writes the new record(s) to hidden temporary files next to
the task's file (flushed and fsynced), then renames the task's file to a hidden
intent marker ``.intent~{nonce}~{id}~{count}``. That rename is both the fence
(it fails if another attempt, a recovery or a cancel moved the file first) and
the commit: from then on anyone may finish the move of the temporaries to their
places (roll-forward, also after a crash). See ``docs/file-backend.md``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from omniq._async.storage.base import AsyncBaseStorage
from omniq._concurrency import AsyncThreadGuard, arun_blocking
from omniq._filestore import (
    FINAL_STATUSES,
    REFRESH_NS,
    Disk,
    PendingIndex,
    due_key,
    finished_record,
    new_token,
    released_record,
    valid_id,
)
from omniq._wakeup import FinishedCallback, channel_for
from omniq.exceptions import StorageError
from omniq.records import TaskRecord, Transition


class _LeaseRenewed(Exception):
    """Raised inside a finish to abandon it: the lease was renewed after all."""


class AsyncFileStorage(AsyncBaseStorage):
    """Tasks as JSON files under one directory, shared by threads and processes.

    ``path`` is the base directory (created 0700). ``durability="full"`` fsyncs
    every file and directory change before acknowledging it, so an acknowledged
    change survives an OS crash; ``"fast"`` skips fsync and survives a crash of
    the process only.
    """

    def __init__(self, path: str | os.PathLike[str], *, durability: str = "full") -> None:
        if durability not in ("full", "fast"):
            raise ValueError(f"unknown durability {durability!r}; choose 'full' or 'fast'")
        self.path = Path(path).expanduser()
        self.durability = durability
        self._disk = Disk(self.path, fsync=durability == "full")
        self._index = PendingIndex()
        self._guard = AsyncThreadGuard()
        self._opened = False
        self._last_seq = 0
        self._wakeup = channel_for(self.path / "wakeup")  # cross-process wake-ups

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"

    async def open(self) -> None:
        """Create the directories, finish changes a crash interrupted, list pending/."""
        if self._opened:
            return
        try:
            listing = await arun_blocking(self._disk.prepare)
        except OSError as error:
            raise StorageError(f"cannot open file storage {self.path}: {error}") from error
        with self._guard:
            self._index.merge(listing)
            self._opened = True

    async def close(self) -> None:
        """Nothing to release: every operation opens and closes its own files."""
        self._opened = False

    def subscribe(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when any process makes a task pending (see ``omniq._wakeup``)."""
        self._wakeup.subscribe(callback)

    def unsubscribe(self, callback: Callable[[], None]) -> None:
        """Stop calling ``callback``."""
        self._wakeup.unsubscribe(callback)

    def subscribe_finished(self, callback: FinishedCallback) -> bool:
        """Call ``callback(task_ids)`` when tasks finish in any process; False: poll."""
        return self._wakeup.subscribe_finished(callback)

    def unsubscribe_finished(self, callback: FinishedCallback) -> None:
        """Stop calling ``callback``."""
        self._wakeup.unsubscribe_finished(callback)

    async def _ready(self) -> None:
        if not self._opened:
            await self.open()

    def _next_seqs(self, count: int) -> list[int]:
        # Enqueue order across processes: wall-clock nanoseconds, made strictly
        # increasing within this storage object.
        seqs: list[int] = []
        with self._guard:
            for _ in range(count):
                self._last_seq = max(time.time_ns(), self._last_seq + 1)
                seqs.append(self._last_seq)
        return seqs

    def _note(self, placed: Sequence[Path]) -> None:
        with self._guard:
            for path in placed:
                if path.parent == self._disk.pending:
                    self._index.insert(path.name)

    async def _refresh(self, eager: bool) -> bool:
        """List pending/ again if the index may be out of date; True if it did."""
        with self._guard:
            snapshot = self._index.snapshot()
        listing = await arun_blocking(self._disk.scan, snapshot, eager)
        if listing is None:
            return False
        with self._guard:
            garbage, intents = self._index.merge(listing)
        if garbage or intents:
            self._note(await arun_blocking(self._disk.tidy_pending, garbage, intents))
        return True

    async def add(self, records: Sequence[TaskRecord]) -> None:
        """Write each task to pending/; a batch commits with one intent marker."""
        if not records:
            return
        for record in records:
            if not valid_id(record.id):
                raise ValueError(f"task id {record.id!r} cannot be used as a file name")
        await self._ready()
        items = list(zip(records, self._next_seqs(len(records)), strict=True))
        self._note(await arun_blocking(self._disk.add, items))
        self._wakeup.notify_due()

    async def claim(self, now: float, lease_until: float, limit: int) -> list[TaskRecord]:
        """Rename the oldest due pending files into running/, up to ``limit``."""
        await self._ready()
        token = new_token(now)
        cutoff = due_key(now)
        with self._guard:
            has_due = self._index.has_due(cutoff)
            recent = time.time_ns() - self._index.listed_ns < REFRESH_NS
        if not (has_due and recent):  # else the listing is young enough to trust
            await self._refresh(eager=not has_due)
        claimed: list[TaskRecord] = []
        lost_races = False
        refreshes = 0
        while len(claimed) < limit:
            with self._guard:
                names = self._index.take_due(cutoff, limit - len(claimed))
            if not names:
                # Others took what this index knew of: look again, a bounded number of times.
                if not lost_races or refreshes == 2 or not await self._refresh(eager=True):
                    break
                lost_races = False
                refreshes += 1
                continue
            won = await arun_blocking(self._disk.claim, names, token, lease_until)
            claimed.extend(won)
            lost_races = lost_races or len(won) < len(names)
        return claimed

    async def finish(self, task_id: str, token: str, transition: Transition) -> bool:
        """Fence on the running file's name, then place the outcome (and the successor)."""
        await self._ready()
        fresh, successor_seq = self._next_seqs(2)

        def make(current: TaskRecord, seq: int | None) -> list[tuple[TaskRecord, int]]:
            limit = transition.expired_before
            if limit is not None and (current.lease_until is None or current.lease_until >= limit):
                raise _LeaseRenewed  # a recovery that came too late: the holder is alive
            items = [(finished_record(current, transition), fresh if seq is None else seq)]
            if transition.successor is not None:
                items.append((transition.successor, successor_seq))
            return items

        try:
            placed = await arun_blocking(self._disk.leave_running, task_id, token, make)
        except _LeaseRenewed:
            return False
        if placed is None:
            return False
        self._note(placed)
        self._wakeup.notify_settled([(task_id, token, transition)], [True])
        return True

    async def release(self, task_id: str, token: str, now: float) -> bool:
        """Put an unfinished attempt back in pending/, due now, without spending it."""
        await self._ready()
        (fresh,) = self._next_seqs(1)

        def make(current: TaskRecord, seq: int | None) -> list[tuple[TaskRecord, int]]:
            return [(released_record(current, now), fresh if seq is None else seq)]

        placed = await arun_blocking(self._disk.leave_running, task_id, token, make)
        if placed is None:
            return False
        self._note(placed)
        self._wakeup.notify_due()
        return True

    async def heartbeat(self, leases: Sequence[tuple[str, str]], lease_until: float) -> list[str]:
        """Move the lease (the running file's mtime) of each attempt still held."""
        await self._ready()
        return await arun_blocking(self._disk.heartbeat, list(leases), lease_until)

    async def expired(self, now: float, limit: int) -> list[TaskRecord]:
        """Running files whose lease ran out (running/ holds only the tasks in flight)."""
        await self._ready()
        return await arun_blocking(self._disk.expired, now, limit)

    async def _pending_name(self, task_id: str, again: bool) -> tuple[str | None, str | None]:
        """The pending name of ``task_id`` (and an intent of it), listing again if unsure."""
        with self._guard:
            name = self._index.by_id.get(task_id)
        if name is None or again:
            await self._refresh(eager=True)
            with self._guard:
                name = self._index.by_id.get(task_id)
        with self._guard:
            return name, self._index.intents.get(task_id)

    async def get(self, task_id: str) -> TaskRecord | None:
        """Look in done/, then running/, then pending/ (through the index), a few rounds.

        A task can move while it is looked for; another round finds it in its new place.
        """
        if not valid_id(task_id):
            return None
        await self._ready()
        for round_ in range(3):
            record, moving = await arun_blocking(self._disk.find_settled, task_id)
            if record is not None:
                return record
            name, intent = await self._pending_name(task_id, again=round_ > 0 or moving)
            if intent is not None:
                marker = self._disk.pending / intent
                self._note(await arun_blocking(self._disk.roll_forward, marker, 0))
                continue
            if name is not None:
                record = await arun_blocking(self._disk.read_pending, name, task_id)
                if record is not None:
                    return record
                with self._guard:
                    self._index.discard(name)
        return None

    async def next_eta(self) -> float | None:
        """The earliest eta this process knows of in pending/ (no file is read)."""
        with self._guard:
            return self._index.first_eta()

    async def list_tasks(self, status: str | None, limit: int, offset: int = 0) -> list[TaskRecord]:
        """Tasks, most recently changed first, optionally of one status (reads one page)."""
        statuses = ("pending", "running", *FINAL_STATUSES) if status is None else (status,)
        if any(name not in ("pending", "running", *FINAL_STATUSES) for name in statuses):
            return []
        await self._ready()
        return await arun_blocking(self._disk.list_page, statuses, limit, offset)

    async def count_by_status(self) -> dict[str, int]:
        """Tasks per status, counted from file names (no file is read)."""
        await self._ready()
        return await arun_blocking(self._disk.count)

    async def requeue(self, task_id: str, now: float) -> bool:
        """Move a FAILED or CANCELLED task back to pending/, due now, with a fresh budget."""
        if not valid_id(task_id):
            return False
        await self._ready()
        (seq,) = self._next_seqs(1)
        placed = await arun_blocking(self._disk.requeue, task_id, now, seq)
        if placed is None:
            return False
        self._note(placed)
        self._wakeup.notify_due()
        return True

    async def purge(self, before: float, statuses: Sequence[str]) -> int:
        """Delete final tasks of ``statuses`` (others are ignored) finished before ``before``."""
        final = [status for status in FINAL_STATUSES if status in statuses]
        if not final:
            return 0
        await self._ready()
        return await arun_blocking(self._disk.purge, before, final)

    async def cancel(self, task_id: str, now: float) -> bool:
        """Fence on the pending file's name (a claim may win instead), then write it to done/."""
        if not valid_id(task_id):
            return False
        await self._ready()
        (fresh,) = self._next_seqs(1)
        for round_ in range(3):
            name, _ = await self._pending_name(task_id, again=round_ > 0)
            if name is None:
                return False
            with self._guard:
                self._index.discard(name)
            placed = await arun_blocking(self._disk.cancel, name, task_id, now, fresh)
            if placed is not None:
                self._wakeup.notify_finished([task_id])
                return True
        return False
