"""File storage: one JSON file per task, and the claim is an ``os.rename``.

Layout under the base directory (directories 0700, files 0600)::

    layout                                   the layout version: 2
    pending/{queue}/{rank}-{eta}-{seq}-{id}.json
                                             rank = 100 - priority; eta (µs) and seq
                                             (enqueue order) in 20 digits: name order
                                             is claim order, so a claim reads names
    running/{queue}/{id}.{token}~{worker}.json
                                             the claim renamed it here; mtime = lease
    done/{status}/{queue}/{id}.json          completed, failed or cancelled
    keys/{sha256(unique key)}                the task holding a unique key
    quarantine/                              unreadable entries, set aside and logged

A task is in exactly one of these files. A claim renames the first due pending
file (highest priority, then earliest eta, then enqueue order, over the queues
asked for) into ``running/`` under a name holding a fresh attempt token and the
worker's name: the rename that succeeds wins, and every other claimant moves on
to the next name. The running file keeps the bytes it had while pending; the
attempt (token, lease, start, worker, one more attempt) lives in its name and
mtime. So a heartbeat is a ``utime`` and a stale attempt can never touch the file
again: its name is gone.

Every other change writes the new record(s) to hidden temporary files next to
the task's file, then renames the task's file to a hidden intent marker: the
fence and the commit at once (``omniq._filestore.tree``). Unique keys are key
files created atomically and locked while their add is in flight
(``omniq._filestore.keys``). See ``docs/file-backend.md``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from omniq._async.storage.base import AsyncBaseStorage
from omniq._concurrency import AsyncThreadGuard, arun_blocking
from omniq._filestore import names
from omniq._filestore.index import REFRESH_NS, PendingIndex
from omniq._filestore.moves import Disk
from omniq._wakeup import FinishedCallback, channel_for
from omniq.exceptions import StorageError
from omniq.records import STATUSES, StateRecord, TaskRecord, Transition

_ACTIVE = frozenset(("pending", "running"))
_MAX_HELD = 100_000  # running files remembered by this process (beyond: looked up)


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
        self._held: dict[tuple[str, str], Path] = {}  # running files of attempts claimed here
        self._guard = AsyncThreadGuard()
        self._opened = False
        self._last_seq = 0
        self._wakeup = channel_for(self.path / "wakeup")  # cross-process wake-ups

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"

    async def open(self) -> None:
        """Create or migrate the layout, finish changes a crash interrupted, list pending/."""
        if self._opened:
            return
        try:
            await arun_blocking(self._disk.prepare)
        except OSError as error:
            raise StorageError(f"cannot open file storage {self.path}: {error}") from error
        self._opened = True
        await self._refresh(True, None)

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
                if path.parent.parent == self._disk.pending:
                    self._index.insert(path.parent.name, path.name)

    async def _refresh(self, eager: bool, queues: Sequence[str] | None) -> bool:
        """List pending/ directories again if the index may be out of date; True if it did."""
        with self._guard:
            top = self._index.top
            known = self._index.snapshots(self._index.scope(None) if queues is None else queues)
        scan = await arun_blocking(self._disk.scan, top, known, eager, queues)
        tidy: list[tuple[str, list[str], list[str]]] = []
        with self._guard:
            if scan.top is not None:
                self._index.top = (scan.top.mtime_ns, scan.top.listed_ns)
            for queue, listing in scan.queues.items():
                garbage, intents = self._index.merge(queue, listing)
                if garbage or intents:
                    tidy.append((queue, garbage, intents))
        placed = list(scan.placed)
        for queue, garbage, intents in tidy:
            placed += await arun_blocking(self._disk.tidy_pending, queue, garbage, intents)
        self._note(placed)
        return scan.top is not None or bool(scan.queues)

    async def add(self, records: Sequence[TaskRecord]) -> list[str]:
        """Write each task to pending/; a batch commits with one intent marker.

        A record whose unique key a pending or running task holds is not stored:
        its holder's id stands for it (also between the records of one call).
        """
        if not records:
            return []
        self._check(records)
        await self._ready()
        _, ids = await self._publish(records, None)
        return ids

    def _check(self, records: Sequence[TaskRecord]) -> None:
        for record in records:
            if not names.valid_id(record.id):
                raise ValueError(f"task id {record.id!r} cannot be used as a file name")
            if not names.valid_queue(record.queue):
                raise ValueError(f"queue {record.queue!r} cannot be used as a directory name")

    async def _publish(
        self, records: Sequence[TaskRecord], advance: tuple[str, str, float] | None
    ) -> tuple[bool, list[str]]:
        """Add ``records`` (with ``advance``: as :meth:`advance_state` does); say who stands.

        The first record with a unique key stands for the later ones of this call;
        the disk settles the keys other tasks hold.
        """
        first: dict[str, int] = {}  # unique key -> position of the record that stands for it
        chosen: list[int] = []
        for position, record in enumerate(records):
            key = record.unique_key if record.status in _ACTIVE else None
            if key is None or key not in first:
                chosen.append(position)
                if key is not None:
                    first[key] = position
        items = list(zip([records[p] for p in chosen], self._next_seqs(len(chosen)), strict=True))
        if advance is None:
            done = True
            stood, placed = await arun_blocking(self._disk.add, items)
        else:
            done, stood, placed = await arun_blocking(self._disk.advance_state, *advance, items)
            if not done:
                return False, []
        ids = [record.id for record in records]
        for position, task_id in zip(chosen, stood, strict=True):
            ids[position] = task_id
        for position, record in enumerate(records):
            key = record.unique_key if record.status in _ACTIVE else None
            if key is not None and first[key] != position:
                ids[position] = ids[first[key]]
        self._note(placed)
        if placed:
            self._wakeup.notify_due()
        return done, ids

    async def claim(
        self,
        now: float,
        lease_until: float,
        limit: int,
        queues: Sequence[str] | None = None,
        worker: str | None = None,
    ) -> list[TaskRecord]:
        """Rename the first due pending files of ``queues`` into running/, up to ``limit``."""
        await self._ready()
        scope = None if queues is None else [q for q in queues if names.valid_queue(q)]
        token = names.new_token(now)
        cutoff = names.due_key(now)
        with self._guard:
            has_due = self._index.has_due(cutoff, scope)
            recent = time.time_ns() - self._index.oldest_listing(scope) < REFRESH_NS
        if not (has_due and recent):  # else the listing is young enough to trust
            await self._refresh(not has_due, scope)
        claimed: list[TaskRecord] = []
        lost_races = False
        refreshes = 0
        while len(claimed) < limit:
            with self._guard:
                chosen = self._index.take_due(cutoff, limit - len(claimed), scope)
            if not chosen:
                # Others took what this index knew of: look again, a bounded number of times.
                if not lost_races or refreshes == 2 or not await self._refresh(True, scope):
                    break
                lost_races = False
                refreshes += 1
                continue
            won, returned = await arun_blocking(
                self._disk.claim, chosen, token, now, lease_until, worker
            )
            with self._guard:
                if len(self._held) > _MAX_HELD:
                    self._held.clear()  # attempts never reported here; found by name if needed
                for record, path in won:
                    self._held[record.id, token] = path
                for queue, name in returned:
                    self._index.insert(queue, name)
            claimed.extend(record for record, _ in won)
            if returned:
                break  # taken again now, it would be put back again: the next claim has it
            lost_races = lost_races or len(won) < len(chosen)
        return claimed

    def _hint(self, task_id: str, token: str) -> Path | None:
        with self._guard:
            return self._held.pop((task_id, token), None)

    async def finish(self, task_id: str, token: str, transition: Transition) -> bool:
        """Fence on the running file's name, then place the outcome (and the successor)."""
        await self._ready()
        fresh, successor_seq = self._next_seqs(2)

        def make(current: TaskRecord, seq: int | None) -> list[tuple[TaskRecord, int]]:
            limit = transition.expired_before
            if limit is not None and (current.lease_until is None or current.lease_until >= limit):
                raise _LeaseRenewed  # a recovery that came too late: the holder is alive
            items = [(names.finished_record(current, transition), fresh if seq is None else seq)]
            if transition.successor is not None:
                items.append((transition.successor, successor_seq))
            return items

        hint = self._hint(task_id, token)
        try:
            placed = await arun_blocking(self._disk.leave_running, task_id, token, hint, make)
        except _LeaseRenewed:
            if hint is not None:
                with self._guard:
                    self._held[task_id, token] = hint
            return False
        if placed is None:
            return False
        self._note(placed)
        self._wakeup.notify_settled([(task_id, token, transition)], [True])
        return True

    async def release(
        self, task_id: str, token: str, now: float, history: str | None = None
    ) -> bool:
        """Put an unfinished attempt back in pending/, due now, without spending it."""
        await self._ready()
        (fresh,) = self._next_seqs(1)

        def make(current: TaskRecord, seq: int | None) -> list[tuple[TaskRecord, int]]:
            return [(names.released_record(current, now, history), fresh if seq is None else seq)]

        hint = self._hint(task_id, token)
        placed = await arun_blocking(self._disk.leave_running, task_id, token, hint, make)
        if placed is None:
            return False
        self._note(placed)
        self._wakeup.notify_due()
        return True

    async def heartbeat(self, leases: Sequence[tuple[str, str]], lease_until: float) -> list[str]:
        """Move the lease (the running file's mtime) of each attempt still held."""
        await self._ready()
        with self._guard:
            hints = {lease: self._held[lease] for lease in leases if lease in self._held}
        lost = await arun_blocking(self._disk.heartbeat, list(leases), hints, lease_until)
        if lost:
            gone = set(lost)
            with self._guard:
                for task_id, token in leases:
                    if task_id in gone:
                        self._held.pop((task_id, token), None)
        return lost

    async def expired(self, now: float, limit: int) -> list[TaskRecord]:
        """Running files whose lease ran out (running/ holds only the tasks in flight)."""
        await self._ready()
        return await arun_blocking(self._disk.expired, now, limit)

    async def _pending_name(
        self, task_id: str, again: bool
    ) -> tuple[tuple[str, str] | None, tuple[str, str] | None]:
        """``(queue, name)`` of ``task_id`` in pending/, and of an intent of it, listing again
        if unsure."""
        with self._guard:
            entry = self._index.by_id.get(task_id)
        if entry is None or again:
            await self._refresh(True, None)
            with self._guard:
                entry = self._index.by_id.get(task_id)
        with self._guard:
            for queue in self._index.scope(None):
                intent = self._index.intent_of(queue, task_id)
                if intent is not None:
                    return entry, (queue, intent)
        return entry, None

    async def get(self, task_id: str) -> TaskRecord | None:
        """Look in done/, then running/, then pending/ (through the index), a few rounds.

        A task can move while it is looked for; another round finds it in its new place.
        """
        if not names.valid_id(task_id):
            return None
        await self._ready()
        for round_ in range(3):
            record, moving = await arun_blocking(self._disk.find_settled, task_id)
            if record is not None:
                return record
            entry, intent = await self._pending_name(task_id, again=round_ > 0 or moving)
            if intent is not None:
                marker = self._disk.pending_dir(intent[0]) / intent[1]
                self._note(await arun_blocking(self._disk.roll_forward, marker, 0))
                continue
            if entry is not None:
                record = await arun_blocking(self._disk.read_pending, *entry, task_id)
                if record is not None:
                    return record
                with self._guard:
                    self._index.discard(*entry)
        return None

    async def next_eta(self, queues: Sequence[str] | None = None) -> float | None:
        """The earliest eta this process knows of in pending/ (no file is read)."""
        with self._guard:
            return self._index.first_eta(None if queues is None else list(queues))

    async def list_tasks(
        self, status: str | None, limit: int, offset: int = 0, queue: str | None = None
    ) -> list[TaskRecord]:
        """Tasks, most recently changed first, optionally of one status and queue (reads one
        page)."""
        statuses = STATUSES if status is None else (status,)
        if any(name not in STATUSES for name in statuses):
            return []
        if queue is not None and not names.valid_queue(queue):
            return []
        await self._ready()
        return await arun_blocking(self._disk.list_page, statuses, limit, offset, queue)

    async def count_by_queue(self) -> dict[str, dict[str, int]]:
        """Tasks per queue and status, counted from file names (no file is read)."""
        await self._ready()
        return await arun_blocking(self._disk.count_by_queue)

    async def requeue(self, task_id: str, now: float) -> bool:
        """Move a FAILED or CANCELLED task back to pending/, due now, with a fresh budget.

        False also when another pending or running task holds its unique key now.
        """
        if not names.valid_id(task_id):
            return False
        await self._ready()
        (seq,) = self._next_seqs(1)
        placed = await arun_blocking(self._disk.requeue, task_id, now, seq)
        if placed is None:
            return False
        self._note(placed)
        self._wakeup.notify_due()
        return True

    async def purge(self, before: float, statuses: Sequence[str], limit: int | None = None) -> int:
        """Delete final tasks of ``statuses`` (others are ignored) finished before ``before``."""
        final = [status for status in names.FINAL if status in statuses]
        if not final:
            return 0
        await self._ready()
        return await arun_blocking(self._disk.purge, before, final, limit)

    async def cancel(self, task_id: str, now: float) -> bool:
        """Fence on the pending file's name (a claim may win instead), then write it to done/."""
        if not names.valid_id(task_id):
            return False
        await self._ready()
        (fresh,) = self._next_seqs(1)
        for round_ in range(3):
            entry, _ = await self._pending_name(task_id, again=round_ > 0)
            if entry is None:
                return False
            with self._guard:
                self._index.discard(*entry)
            placed = await arun_blocking(self._disk.cancel, *entry, task_id, now, fresh)
            if placed is not None:
                self._wakeup.notify_finished([task_id])
                return True
        return False

    async def put_state(self, kind: str, name: str, data: str, now: float) -> None:
        """Create or replace a named record's data (its mark is kept), in one rename."""
        await self._ready()
        await arun_blocking(self._disk.put_state, kind, name, data, now)

    async def get_state(self, kind: str, name: str) -> StateRecord | None:
        """The named record, or ``None``."""
        await self._ready()
        return await arun_blocking(self._disk.get_state, kind, name)

    async def list_state(self, kind: str) -> list[StateRecord]:
        """Every record of ``kind``, by name."""
        await self._ready()
        return await arun_blocking(self._disk.list_state, kind)

    async def delete_state(self, kind: str, name: str) -> bool:
        """Delete a named record."""
        await self._ready()
        return await arun_blocking(self._disk.delete_state, kind, name)

    async def advance_state(
        self, kind: str, name: str, mark: float, records: Sequence[TaskRecord]
    ) -> bool:
        """Move the mark forward and add the records: one commit, under the kind's lock."""
        self._check(records)
        await self._ready()
        advanced, _ = await self._publish(records, (kind, name, mark))
        return advanced
