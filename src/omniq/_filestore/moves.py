"""The file store's changes: enqueue, claim, finish, cancel, requeue, heartbeat, recovery.

A claim renames a pending file into ``running/{queue}/`` under a name holding a
fresh attempt token and the claiming worker: the rename that succeeds wins, and
the file keeps its bytes (the attempt lives in its name and mtime). Every other
change goes through :meth:`Tree.commit`, and carries the task's unique key along
(:mod:`omniq._filestore.keys`): taken before an add or a requeue is published,
handed to an interval task's next run, freed when the task reaches a final state.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import stat
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from omniq import logging as omniq_logging
from omniq._filestore import names
from omniq._filestore.index import Listing, Snapshot, stale
from omniq._filestore.inspect import Inspect
from omniq._filestore.keys import Holder, KeyHandle, Keys
from omniq._filestore.layout import Layout
from omniq._filestore.names import CorruptFile
from omniq._filestore.tree import INTENT_GRACE_NS, entries
from omniq.records import StateRecord, TaskRecord

Make = Callable[[TaskRecord, "int | None"], list[tuple[TaskRecord, int]]]
_UTIME_NOFOLLOW = os.utime in os.supports_follow_symlinks
_ACTIVE = frozenset(("pending", "running"))


class Scan(NamedTuple):
    """What a look at ``pending/`` found: its queues, the queue listings, files placed."""

    top: Listing | None
    queues: dict[str, Listing]
    placed: list[Path]


def set_mtime(path: Path, stamp_ns: int) -> None:
    """Set the mtime (and atime) of ``path`` itself: a link's target is never touched."""
    if _UTIME_NOFOLLOW:
        os.utime(path, ns=(stamp_ns, stamp_ns), follow_symlinks=False)
    else:
        os.utime(path, ns=(stamp_ns, stamp_ns))


class Disk(Layout, Inspect):
    """The blocking file operations of one store. Safe from any thread."""

    def __init__(self, root: Path, fsync: bool) -> None:
        super().__init__(root, fsync)
        self.unique = Keys(self)

    # ---------------------------------------------------------------- pending/

    def scan(
        self,
        top: Snapshot,
        known: Mapping[str, Snapshot],
        eager: bool,
        queues: Sequence[str] | None,
    ) -> Scan:
        """List what of ``pending/`` may have changed since the snapshots were taken.

        ``pending/`` itself is looked at for every scope, so committed batches whose
        owner died are rolled forward; its queue directories widen the scope only
        when it is every queue (``queues`` is None).
        """
        now_ns = time.time_ns()
        placed: list[Path] = []
        listed_top = None
        scope = list(known) if queues is None else list(queues)
        mtime_ns = os.stat(self.pending).st_mtime_ns
        if stale(top, mtime_ns, now_ns, eager):
            listed_ns = time.time_ns()
            found = entries(self.pending)
            placed += self.roll_forward_all(self.pending, found, INTENT_GRACE_NS)
            placed += self.migrate_v1_pending(found)
            directories = self.queue_dirs(self.pending)
            listed_top = Listing(mtime_ns, listed_ns, directories)
            if queues is None:
                scope = list(dict.fromkeys([*scope, *directories]))
        listings: dict[str, Listing] = {}
        for queue in scope:
            directory = self.pending_dir(queue)
            try:
                mtime_ns = os.lstat(directory).st_mtime_ns
            except FileNotFoundError:
                continue
            if stale(known.get(queue, (None, 0)), mtime_ns, now_ns, eager):
                listed_ns = time.time_ns()
                listings[queue] = Listing(mtime_ns, listed_ns, entries(directory))
        return Scan(listed_top, listings, placed)

    def tidy_pending(
        self, queue: str, garbage: Sequence[str], intents: Sequence[str]
    ) -> list[Path]:
        """Set aside garbage names and roll old intents forward in ``pending/{queue}/``."""
        directory = self.pending_dir(queue)
        for name in garbage:
            self.set_aside(directory / name, "not a task file name", corrupt=False)
        return self.roll_forward_all(directory, intents, INTENT_GRACE_NS)

    def add(self, items: Sequence[tuple[TaskRecord, int]]) -> tuple[list[str], list[Path]]:
        """Store new tasks, all of them or (on error) none; a held unique key stores nothing.

        Returns, per item, the id standing for it (its own or its key's holder),
        and the files placed. The key files are taken first and stay locked until
        the tasks are published.
        """
        return self._publish(items, "batch", None)

    def advance_state(
        self, kind: str, name: str, mark: float, items: Sequence[tuple[TaskRecord, int]]
    ) -> tuple[bool, list[str], list[Path]]:
        """Move a state record's mark forward to ``mark`` and add ``items``, in one commit.

        Under the kind's lock, so of several callers advancing to one mark exactly
        one commits; nothing changes unless the record exists with its mark behind.
        """
        with self.state_lock(kind):
            advanced = self.advanced(kind, name, mark)
            if advanced is None:
                return False, [], []
            ids, placed = self._publish(items, "state", advanced)
            return True, ids, placed

    def _publish(
        self, items: Sequence[tuple[TaskRecord, int]], tag: str, state: StateRecord | None
    ) -> tuple[list[str], list[Path]]:
        ids: list[str] = []
        stored: list[tuple[TaskRecord, int]] = []
        handles: list[KeyHandle] = []
        try:
            for record, seq in items:
                if record.unique_key is not None and record.status in _ACTIVE:
                    holder = Holder(record.id, record.queue, names.pending_name(record, seq))
                    got = self.unique.acquire(record.unique_key, holder)
                    if isinstance(got, str):
                        ids.append(got)
                        continue
                    handles.append(got)
                ids.append(record.id)
                stored.append((record, seq))
            placed: list[Path] | None = []
            if stored or state is not None:
                placed = self.commit(self.pending, None, tag, stored, state)
            assert placed is not None
        except BaseException:
            for handle in handles:
                with contextlib.suppress(OSError):  # keep the error that got us here
                    self.unique.drop(handle)
            raise
        finally:
            for handle in handles:
                handle.close()
        return ids, placed

    # ---------------------------------------------------------------- claims

    def claim(
        self,
        chosen: Sequence[tuple[str, str]],
        token: str,
        now: float,
        lease_until: float,
        worker: str | None,
    ) -> tuple[list[tuple[TaskRecord, Path]], list[tuple[str, str]]]:
        """Rename each ``(queue, name)`` into running/; read only the files won.

        Returns what was claimed, and the names put back: due in the microsecond of
        ``now`` by their name, but, by their exact eta, a moment after ``now``.
        """
        lease_ns = int(lease_until * 1_000_000_000)
        claimed: list[tuple[TaskRecord, Path]] = []
        returned: list[tuple[str, str]] = []
        touched: set[Path] = set()
        for queue, name in chosen:
            task_id = names.pending_id(name)
            src = self.pending_dir(queue) / name
            running = self.ensure_dir(self.running_dir(queue))
            dst = running / names.running_name(task_id, token, worker)
            try:
                # The lease goes on before the rename too, so the file never shows
                # up in running/ looking expired.
                set_mtime(src, lease_ns)
                os.rename(src, dst)
            except FileNotFoundError:
                continue  # another claimant (or a cancel) won this one
            touched.update((src.parent, running))
            try:
                record, _, info = names.load(dst, task_id)
                # The exact eta decides: the name's microsecond is rounded, and in float
                # arithmetic even a name "surely" due can hold an eta a moment after now.
                if not record.eta <= now:
                    os.rename(dst, src)  # not due yet after all: back in its place
                    returned.append((queue, name))
                    continue
                if info.st_mtime_ns != lease_ns:  # a losing claimant's utime came last
                    set_mtime(dst, lease_ns)
            except FileNotFoundError:
                continue
            except CorruptFile as error:  # a FIFO, link or directory too: never followed
                self.set_aside_unreadable(dst, error)
                continue
            claimed.append((names.as_running(record, token, lease_ns, worker), dst))
        self.sync_dirs(*touched)
        return claimed, returned

    # ---------------------------------------------------------------- attempts

    def leave_running(
        self, task_id: str, token: str, hint: Path | None, make: Make
    ) -> list[Path] | None:
        """Move a running attempt on (finish, retry, release); None if it is not held.

        ``hint`` is the running file, when this process claimed the attempt.
        """
        if not names.valid_id(task_id) or not names.valid_token(token):
            return None
        path = (
            hint
            if hint is not None
            else self.find_running({(task_id, token)}).get((task_id, token))
        )
        match = None if path is None else names.RUNNING.fullmatch(path.name)
        if path is None or match is None:
            return None
        try:
            record, seq, info = names.load(path, task_id)
        except FileNotFoundError:
            return None
        except CorruptFile as error:
            self.set_aside_unreadable(path, error)
            return None
        current = names.as_running(record, token, info.st_mtime_ns, names.worker_of(match))
        return self._move(path, task_id, current, make(current, seq))

    def _move(
        self, path: Path, task_id: str, current: TaskRecord, items: list[tuple[TaskRecord, int]]
    ) -> list[Path] | None:
        """Commit ``items`` in place of ``path``; free or hand on the task's unique key."""
        key = current.unique_key
        if key is None or items[0][0].status not in names.FINAL_SET:
            return self.commit(path.parent, path, task_id, items)
        held: KeyHandle | None = None  # the key file, locked, still naming this task
        taken: KeyHandle | None = None  # a key file taken for the next run
        successor = items[1][0] if len(items) > 1 else None
        next_holder = None
        if successor is not None and successor.unique_key == key:
            next_holder = Holder(
                successor.id, successor.queue, names.pending_name(successor, items[1][1])
            )
            held = self.unique.hold(key, task_id)
            if held is None:
                got = self.unique.acquire(key, next_holder)
                if isinstance(got, str):  # another task holds it now: the next run goes without
                    items = [
                        items[0],
                        (dataclasses.replace(successor, unique_key=None), items[1][1]),
                    ]
                    next_holder = None
                else:
                    taken = got
        try:
            placed = self.commit(path.parent, path, task_id, items)
            if placed is None:
                if taken is not None:
                    self.unique.drop(taken)
                return None
            try:
                if held is not None and next_holder is not None:
                    held = self.unique.replace(held, next_holder)
                elif taken is None:
                    self.unique.release(key, task_id)
            except OSError as error:  # committed all the same: the key file is stale now
                omniq_logging.log_storage_error("unique key", f"{key!r} of {task_id}: {error}")
            return placed
        finally:
            for handle in (held, taken):
                if handle is not None:
                    handle.close()

    def heartbeat(
        self,
        leases: Sequence[tuple[str, str]],
        hints: Mapping[tuple[str, str], Path],
        lease_until: float,
    ) -> list[str]:
        """Move the mtime (the lease) of each held running file; return the ids not held."""
        lease_ns = int(lease_until * 1_000_000_000)
        wanted = [(i, t) for i, t in leases if names.valid_id(i) and names.valid_token(t)]
        missing = {lease for lease in wanted if lease not in hints}
        found = self.find_running(missing) if missing else {}
        lost: list[str] = []
        for task_id, token in leases:
            path = hints.get((task_id, token)) or found.get((task_id, token))
            if path is None:
                lost.append(task_id)
                continue
            try:
                set_mtime(path, lease_ns)
            except FileNotFoundError:
                lost.append(task_id)
        return lost

    def expired(self, now: float, limit: int) -> list[TaskRecord]:
        """Running files whose mtime (lease) is before ``now``; tidies running/ on the way.

        One entry never stops the scan: whatever is not a running task file is set
        aside, and an error on one entry is logged and the scan goes on.
        """
        found: list[TaskRecord] = []
        for queue in self.queue_dirs(self.running):
            directory = self.running_dir(queue)
            listing = entries(directory)
            self.drop_dead_temps(directory, listing)
            for name in listing:
                try:
                    record = self._expired_one(directory, name, now)
                except OSError as error:
                    omniq_logging.log_storage_error("recover", f"{directory / name}: {error}")
                    continue
                if record is not None:
                    found.append(record)
        found.sort(key=lambda record: record.lease_until or 0.0)
        return found[:limit]

    def _expired_one(self, directory: Path, name: str, now: float) -> TaskRecord | None:
        path = directory / name
        if name.startswith(names.INTENT):
            self.roll_forward(path, INTENT_GRACE_NS)
            return None
        if name.startswith("."):
            return None
        match = names.RUNNING.fullmatch(name)
        if match is None:
            self.set_aside(path, "not a task file name", corrupt=False)
            return None
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            return None
        if not stat.S_ISREG(info.st_mode):
            self.set_aside(path, "not a regular task file", corrupt=False)
            return None
        if info.st_mtime_ns / 1_000_000_000 >= now:
            return None
        try:
            record, _, info = names.load(path, match["id"])
        except FileNotFoundError:
            return None
        except CorruptFile as error:
            self.set_aside_unreadable(path, error)
            return None
        return names.as_running(record, match["token"], info.st_mtime_ns, names.worker_of(match))

    # ---------------------------------------------------------------- pending <-> done

    def cancel(
        self, queue: str, name: str, task_id: str, now: float, seq: int
    ) -> list[Path] | None:
        """Cancel the pending file ``name``; None if it is gone (claimed or cancelled)."""
        path = self.pending_dir(queue) / name
        try:
            record, stored_seq, _ = names.load(path, task_id)
        except FileNotFoundError:
            return None
        except CorruptFile as error:
            self.set_aside_unreadable(path, error)
            return None
        cancelled = dataclasses.replace(record, status="cancelled", updated_at=now, finished_at=now)
        item = (cancelled, seq if stored_seq is None else stored_seq)
        return self._move(path, task_id, record, [item])

    def requeue(self, task_id: str, now: float, seq: int) -> list[Path] | None:
        """A failed or cancelled task back to pending/, fenced like every other move.

        None when there is no such task, or its unique key is held by another task.
        """
        for status in ("failed", "cancelled"):
            for queue, directory in self._dirs(status, None):
                path = directory / f"{task_id}.json"
                try:
                    record, _, _ = names.load(path, task_id)
                except FileNotFoundError:
                    continue
                except CorruptFile as error:
                    self.set_aside_unreadable(path, error)
                    return None
                return self._requeue(path, names.requeued_record(record, now), seq, queue)
        return None

    def _requeue(self, path: Path, fresh: TaskRecord, seq: int, queue: str) -> list[Path] | None:
        taken: KeyHandle | None = None
        if fresh.unique_key is not None:
            holder = Holder(fresh.id, queue, names.pending_name(fresh, seq))
            got = self.unique.acquire(fresh.unique_key, holder)
            if isinstance(got, str):
                return None  # another pending or running task holds the key now
            taken = got
        try:
            placed = self.commit(path.parent, path, fresh.id, [(fresh, seq)])
            if placed is None and taken is not None:
                self.unique.drop(taken)
            return placed
        finally:
            if taken is not None:
                taken.close()
