"""Lookups, listings, counts and purges of the file store: names first, files last.

Counts come from names alone. A listing orders files by what their names and
mtimes say (omniq sets a pending or finished file's mtime to the record's
``updated_at``; a running file's name holds its claim time) and reads only the
page. A purge deletes by mtime (a finished file's mtime is its ``finished_at``)
and reads only the files that finished within a minute of the cutoff.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Sequence
from pathlib import Path

from omniq._filestore import names
from omniq._filestore.names import CorruptFile
from omniq._filestore.tree import Tree, entries
from omniq.records import STATUSES, TaskRecord

_PURGE_SLACK_NS = 60 * 1_000_000_000  # files this close to the cutoff are read to decide


class Inspect(Tree):
    """Read-side operations (mixed into :class:`~omniq._filestore.moves.Disk`)."""

    def _dirs(self, status: str, queue: str | None) -> list[tuple[str, Path]]:
        """``(queue, directory)`` of the files of ``status`` (in ``queue``, or every queue)."""
        if status == "pending":
            parent = self.pending
        elif status == "running":
            parent = self.running
        else:
            parent = self.final[status]
        queues = [queue] if queue is not None else self.queue_dirs(parent)
        return [(name, parent / name) for name in queues]

    def find_running(self, wanted: Collection[tuple[str, str]]) -> dict[tuple[str, str], Path]:
        """The running files of the ``(task id, token)`` attempts in ``wanted`` still held."""
        found: dict[tuple[str, str], Path] = {}
        for _, directory in self._dirs("running", None):
            for name in entries(directory):
                match = names.RUNNING.fullmatch(name)
                if match is not None and (match["id"], match["token"]) in wanted:
                    found[match["id"], match["token"]] = directory / name
        return found

    def find_settled(self, task_id: str) -> tuple[TaskRecord | None, bool]:
        """Look in done/ then running/; also say whether a change of this task was in flight."""
        for status in names.FINAL:
            for _, directory in self._dirs(status, None):
                path = directory / f"{task_id}.json"
                try:
                    return names.load(path, task_id)[0], False
                except FileNotFoundError:
                    continue
                except CorruptFile as error:
                    self.set_aside_unreadable(path, error)
                    return None, False
        moving = False
        prefix = f"{task_id}."
        for _, directory in self._dirs("running", None):
            for name in entries(directory):
                if name.startswith(prefix):
                    match = names.RUNNING.fullmatch(name)
                    if match is None or match["id"] != task_id:
                        continue
                    try:
                        record, _, info = names.load(directory / name, task_id)
                    except FileNotFoundError:
                        moving = True
                        continue
                    except CorruptFile as error:
                        self.set_aside_unreadable(directory / name, error)
                        continue
                    worker = names.worker_of(match)
                    return names.as_running(record, match["token"], info.st_mtime_ns, worker), False
                if name.startswith(names.INTENT) and name.split("~")[2:3] == [task_id]:
                    self.roll_forward(directory / name, 0)
                    moving = True
        return None, moving

    def read_pending(self, queue: str, name: str, task_id: str) -> TaskRecord | None:
        """The record in ``pending/{queue}/{name}``, or None if it moved on (or is unreadable)."""
        path = self.pending_dir(queue) / name
        try:
            return names.load(path, task_id)[0]
        except FileNotFoundError:
            return None
        except CorruptFile as error:
            self.set_aside_unreadable(path, error)
            return None

    def count_by_queue(self) -> dict[str, dict[str, int]]:
        """Tasks per queue and status, from names alone (queues with no task left out)."""
        patterns = {"pending": names.PENDING, "running": names.RUNNING}
        counts: dict[str, dict[str, int]] = {}
        for status in STATUSES:
            pattern = patterns.get(status, names.DONE)
            for queue, directory in self._dirs(status, None):
                found = sum(1 for name in entries(directory) if pattern.fullmatch(name))
                if found:
                    counts.setdefault(queue, dict.fromkeys(STATUSES, 0))[status] = found
        return counts

    def list_page(
        self, statuses: Sequence[str], limit: int, offset: int, queue: str | None
    ) -> list[TaskRecord]:
        """A page of tasks, most recently changed first; only the page's files are read.

        Files are ordered by their change time, from their names (running: the claim
        time) and mtimes (the others), then the page is read and ordered by
        ``updated_at``.
        """
        candidates: list[tuple[float, Path, str]] = []
        for status in statuses:
            for _, directory in self._dirs(status, queue):
                for name in entries(directory):
                    if status == "running":
                        match = names.RUNNING.fullmatch(name)
                        if match is not None:
                            changed = names.token_time(match["token"])
                            candidates.append((changed, directory / name, status))
                        continue
                    pattern = names.PENDING if status == "pending" else names.DONE
                    if pattern.fullmatch(name) is None:
                        continue
                    try:
                        mtime_ns = os.lstat(directory / name).st_mtime_ns
                    except FileNotFoundError:
                        continue
                    candidates.append((mtime_ns / 1_000_000_000, directory / name, status))
        candidates.sort(key=lambda candidate: candidate[0], reverse=True)
        page: list[TaskRecord] = []
        for _, path, status in candidates[offset : offset + limit]:
            record = self._read_listed(path, status)
            if record is not None:
                page.append(record)
        page.sort(key=lambda record: record.updated_at, reverse=True)
        return page

    def _read_listed(self, path: Path, status: str) -> TaskRecord | None:
        match = None
        if status == "pending":
            task_id = names.pending_id(path.name)
        elif status == "running":
            match = names.RUNNING.fullmatch(path.name)
            assert match is not None
            task_id = match["id"]
        else:
            task_id = path.name[:-5]
        try:
            record, _, info = names.load(path, task_id)
        except FileNotFoundError:
            return None  # it moved on while we looked
        except CorruptFile as error:
            self.set_aside_unreadable(path, error)
            return None
        if match is not None:
            worker = names.worker_of(match)
            record = names.as_running(record, match["token"], info.st_mtime_ns, worker)
        return record

    def purge(self, before: float, statuses: Sequence[str], limit: int | None) -> int:
        """Delete final tasks of ``statuses`` that finished before ``before``, oldest first.

        A finished file's mtime is its ``finished_at`` (see :meth:`Tree.commit`), so
        files clearly older or newer than the cutoff are decided unread; the few
        within a minute of it are read. With ``limit``, at most that many go.
        """
        before_ns = int(before * 1_000_000_000)
        candidates: list[tuple[int, Path]] = []
        for status in statuses:
            for _, directory in self._dirs(status, None):
                for name in entries(directory):
                    if names.DONE.fullmatch(name) is None:
                        continue
                    try:
                        mtime_ns = os.lstat(directory / name).st_mtime_ns
                    except FileNotFoundError:
                        continue
                    if mtime_ns <= before_ns + _PURGE_SLACK_NS:
                        candidates.append((mtime_ns, directory / name))
        candidates.sort()
        deleted = 0
        touched: set[Path] = set()
        for mtime_ns, path in candidates:
            if limit is not None and deleted >= limit:
                break
            if mtime_ns >= before_ns - _PURGE_SLACK_NS:
                try:
                    record, _, _ = names.load(path, path.name[:-5])
                except FileNotFoundError:
                    continue
                except CorruptFile as error:
                    self.set_aside_unreadable(path, error)
                    continue
                if record.finished_at is None or not record.finished_at < before:
                    continue
            try:
                os.unlink(path)
            except FileNotFoundError:
                continue  # requeued (or purged) by someone else meanwhile
            deleted += 1
            touched.add(path.parent)
        self.sync_dirs(*touched)
        return deleted
