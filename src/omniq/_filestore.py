"""The file store's disk work: names, records, the pending index, atomic moves.

Plain blocking code, written once and shared by both twins: the storage classes in
``omniq._async.storage.file`` (and its generated blocking twin) call it directly
in the blocking twin and through ``arun_blocking`` in the async one. The layout
and the commit protocol are described in ``omniq._async.storage.file`` and in
``docs/file-backend.md``.
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import json
import math
import os
import re
import secrets
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

from omniq import logging as omniq_logging
from omniq._fs import FILE_MODE, ensure_private_dir
from omniq.records import TaskRecord, Transition

_WIDTH = 20  # digits of the eta and seq fields of a pending name
_MAX_KEY = int("9" * _WIDTH)
_PENDING = re.compile(r"(\d{20})-(\d{20})-(?P<id>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})\.json")
_RUNNING = re.compile(r"(?P<id>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})\.(?P<token>[0-9a-f]{32})\.json")
_DONE = re.compile(r"(?P<id>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})\.json")
_TASK_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_TOKEN = re.compile(r"[0-9a-f]{32}")
_INTENT = ".intent~"
FINAL_STATUSES = ("completed", "failed", "cancelled")

# A listing is trusted while the directory's mtime is unchanged, unless that mtime
# is so close to the listing that a later change could share its timestamp.
_RACY_NS = 2_500_000_000
_MAX_AGE_NS = 10_000_000_000  # list again at least this often, whatever the mtime says
REFRESH_NS = 1_000_000_000  # with due tasks in hand, look for others' new ones this often
_INTENT_GRACE_NS = 2_000_000_000  # younger intents are left to their (live) owner
_TEMP_MAX_AGE_NS = 3600 * 1_000_000_000  # orphan temporaries removed at open after this
_PURGE_SLACK = 60.0  # a final file is written just after its finished_at, never a minute later


class CorruptFile(ValueError):
    """A task file that is not a valid task record."""


class _Listing(NamedTuple):
    mtime_ns: int
    listed_ns: int
    names: list[str]


# --------------------------------------------------------------------------- names


def _key(seconds: float, rounding: Callable[[float], int]) -> int:
    return min(max(rounding(seconds * 1_000_000), 0), _MAX_KEY)


def pending_name(eta: float, seq: int, task_id: str) -> str:
    """The pending file name: sorts by (eta, seq); the eta is rounded up, never early."""
    return f"{_key(eta, math.ceil):0{_WIDTH}d}-{seq:0{_WIDTH}d}-{task_id}.json"


def due_key(now: float) -> str:
    return f"{_key(now, math.floor):0{_WIDTH}d}"


def new_token(now: float) -> str:
    # Opaque to the queue; the storage reads the claim time back from its first half.
    return f"{_key(now, math.floor):016x}{secrets.token_hex(8)}"


def _token_time(token: str) -> float:
    return int(token[:16], 16) / 1_000_000


def valid_id(task_id: object) -> bool:
    return isinstance(task_id, str) and _TASK_ID.fullmatch(task_id) is not None


def _encode(record: TaskRecord, seq: int) -> bytes:
    data = record.to_dict()
    data["_seq"] = seq
    return json.dumps(data, separators=(",", ":"), allow_nan=False).encode("utf-8")


def _load(path: Path, task_id: str | None) -> tuple[TaskRecord, int | None, os.stat_result]:
    """Read a task file; ``CorruptFile`` if it is not a record (of ``task_id``)."""
    with open(path, "rb") as handle:
        raw = handle.read()
        info = os.fstat(handle.fileno())
    try:
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        record = TaskRecord.from_dict(data)
        if task_id is not None and record.id != task_id:
            raise ValueError(f"it holds task {record.id!r}, its name says {task_id!r}")
        seq = data.get("_seq")
        if seq is not None and (isinstance(seq, bool) or not isinstance(seq, int) or seq < 0):
            raise ValueError(f"bad _seq {seq!r}")
    except (ValueError, RecursionError) as error:  # JSONDecodeError, UnicodeDecodeError too
        raise CorruptFile(str(error) or type(error).__name__) from None
    return record, seq, info


def _as_running(record: TaskRecord, token: str, mtime_ns: int) -> TaskRecord:
    """The record of a running file: its bytes as pending, plus what its name and mtime say."""
    started = _token_time(token)
    return dataclasses.replace(
        record,
        status="running",
        attempts=record.attempts + 1,
        attempt_token=token,
        lease_until=mtime_ns / 1_000_000_000,
        started_at=started,
        updated_at=started,
    )


def finished_record(current: TaskRecord, transition: Transition) -> TaskRecord:
    return dataclasses.replace(
        current,
        status=transition.status,
        result=transition.result,
        error=transition.error,
        eta=current.eta if transition.eta is None else transition.eta,
        updated_at=transition.now,
        finished_at=transition.now if transition.is_final else None,
        lease_until=None,
        attempt_token=None,
    )


def released_record(current: TaskRecord, now: float) -> TaskRecord:
    return dataclasses.replace(
        current,
        status="pending",
        attempts=max(current.attempts - 1, 0),
        eta=now,
        updated_at=now,
        lease_until=None,
        attempt_token=None,
    )


def _stale(snapshot: tuple[int | None, int], mtime_ns: int, now_ns: int, eager: bool) -> bool:
    """Whether a listing taken at ``snapshot`` may miss files, given the mtime seen now."""
    known_mtime, listed_ns = snapshot
    if known_mtime is None:
        return True
    quiet = mtime_ns == known_mtime and known_mtime <= listed_ns - _RACY_NS
    if quiet and now_ns - listed_ns < _MAX_AGE_NS:
        return False
    return eager or now_ns - listed_ns >= REFRESH_NS


# --------------------------------------------------------------------------- the disk


class Disk:
    """The blocking file operations. No state but paths: safe from any thread."""

    def __init__(self, root: Path, fsync: bool) -> None:
        self.root = root
        self.fsync = fsync
        self.pending = root / "pending"
        self.running = root / "running"
        self.done = root / "done"
        self.final = {status: self.done / status for status in FINAL_STATUSES}
        self.quarantine = root / "quarantine"

    # ---------------------------------------------------------------- primitives

    def _write_new(self, path: Path, data: bytes) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if self.fsync:
                os.fsync(fd)
        finally:
            os.close(fd)

    def _sync_dirs(self, *directories: Path) -> None:
        if not self.fsync:
            return
        for directory in directories:
            fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def _destination(self, record: TaskRecord, seq: int) -> Path:
        if record.status == "pending":
            return self.pending / pending_name(record.eta, seq, record.id)
        if record.status in self.final:
            return self.final[record.status] / f"{record.id}.json"
        raise ValueError(f"task {record.id} cannot be stored with status {record.status!r}")

    def set_aside(self, path: Path, reason: str, *, corrupt: bool = True) -> None:
        """Move an unreadable file to quarantine/ and log it; never raises."""
        target = self.quarantine / f"{path.parent.name}~{path.name}~{secrets.token_hex(4)}"
        try:
            os.rename(path, target)
        except FileNotFoundError:
            return  # someone else moved it first
        except OSError as error:
            omniq_logging.log_storage_error("quarantine", f"{path}: {reason} ({error})")
            return
        message = f"{path}: {reason}; moved to {target}"
        if corrupt:
            omniq_logging.log_serialization_error(
                "read", message, path=str(path), quarantined=str(target)
            )
        else:
            omniq_logging.log_storage_error(
                "scan", message, path=str(path), quarantined=str(target)
            )

    # ---------------------------------------------------------------- commits

    def _commit(
        self, directory: Path, src: Path | None, tag: str, items: Sequence[tuple[TaskRecord, int]]
    ) -> list[Path] | None:
        """Publish ``items``, removing ``src`` in the same step; None if ``src`` is gone."""
        dests = [self._destination(record, seq) for record, seq in items]
        nonce = secrets.token_hex(8)
        temps: list[Path] = []
        marker = directory / f"{_INTENT}{nonce}~{tag}~{len(items)}"
        committed = False
        try:
            for index, (record, seq) in enumerate(items):
                temps.append(directory / f".{nonce}-{index}.tmp")
                self._write_new(temps[-1], _encode(record, seq))
            if src is None and len(dests) == 1:  # one new file: rename is the commit
                os.rename(temps[0], dests[0])
                committed = True
                self._sync_dirs(directory)
                return dests
            if src is None:
                os.close(os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
            else:
                try:
                    os.rename(src, marker)  # the fence and the commit point
                except FileNotFoundError:
                    return None
            committed = True
        finally:
            if not committed:
                for temp in temps:
                    with contextlib.suppress(OSError):  # keep the error that got us here
                        os.unlink(temp)
        self._sync_dirs(directory)
        for temp, dest in zip(temps, dests, strict=True):
            # FileNotFoundError: a roll-forward by another process got there first.
            with contextlib.suppress(FileNotFoundError):
                os.rename(temp, dest)
        self._sync_dirs(*{dest.parent for dest in dests})
        _unlink(marker)
        return dests

    def roll_forward(self, marker: Path, grace_ns: int) -> list[Path]:
        """Finish a committed change whose owner died (or is slow); return what it placed."""
        try:
            if grace_ns and time.time_ns() - os.stat(marker).st_ctime_ns < grace_ns:
                return []
        except FileNotFoundError:
            return []
        try:
            _, nonce, _, count = marker.name.split("~")
            total = int(count)
        except ValueError:
            self.set_aside(marker, "not an intent marker", corrupt=False)
            return []
        placed: list[Path] = []
        for index in range(total):
            temp = marker.parent / f".{nonce}-{index}.tmp"
            try:
                record, seq, _ = _load(temp, None)
                dest = self._destination(record, seq if seq is not None else 0)
                os.rename(temp, dest)
            except FileNotFoundError:
                continue
            except (CorruptFile, ValueError) as error:
                self.set_aside(temp, f"unreadable committed change: {error}")
                continue
            placed.append(dest)
        self._sync_dirs(*{dest.parent for dest in placed})
        _unlink(marker)
        return placed

    # ---------------------------------------------------------------- operations

    def prepare(self) -> _Listing:
        """Create the directories, finish interrupted changes, set garbage aside."""
        directories = (self.root, self.pending, self.running, self.done, self.quarantine)
        for directory in (*directories, *self.final.values()):
            ensure_private_dir(directory)
        for name in os.listdir(self.done):
            if not name.startswith(".") and name not in self.final:
                self.set_aside(self.done / name, "not a status directory", corrupt=False)
        for directory in self.final.values():
            self._sweep(directory, os.listdir(directory), _DONE)
        self._sweep(self.running, os.listdir(self.running), _RUNNING)
        self._drop_dead_temps(os.listdir(self.running))
        listing = self._list_pending()
        if self._sweep(self.pending, listing.names, _PENDING):
            listing = self._list_pending()
        return listing

    def _sweep(self, directory: Path, names: list[str], pattern: re.Pattern[str]) -> bool:
        """Roll every intent forward, then drop old orphan temporaries and set garbage aside."""
        hidden = [name for name in names if name.startswith(".")]
        intents = [name for name in hidden if name.startswith(_INTENT)]
        for name in intents:  # before the temporaries: they may be what an intent places
            self.roll_forward(directory / name, 0)
        for name in hidden:
            if name.endswith(".tmp"):
                self._drop_if_orphan(directory / name)
        garbage = [n for n in names if not n.startswith(".") and pattern.fullmatch(n) is None]
        for name in garbage:
            self.set_aside(directory / name, "not a task file name", corrupt=False)
        return bool(intents or garbage)

    def _drop_if_orphan(self, temp: Path) -> None:
        # A temporary with no intent left is from an operation that died before its
        # commit; after an hour no live operation can still be about to commit it.
        try:
            if time.time_ns() - os.stat(temp).st_mtime_ns > _TEMP_MAX_AGE_NS:
                _unlink(temp)
        except FileNotFoundError:
            pass

    def _drop_dead_temps(self, names: Sequence[str]) -> None:
        """Remove temporaries of running/ whose move can no longer commit.

        A temporary here belongs to the move of ``running/{id}.{token}.json``. If one
        listing shows no intent with its nonce (not committed yet) and no running
        file of its task (nothing left to fence), its fence can never succeed: it
        was left by an operation that died, or that lost its task to a recovery.
        """
        holders = {name[:-38] for name in names if _RUNNING.fullmatch(name)}
        nonces = {name.split("~")[1] for name in names if name.startswith(_INTENT)}
        for name in names:
            if not (name.startswith(".") and name.endswith(".tmp")):
                continue
            if name[1:].split("-")[0] in nonces:
                continue
            path = self.running / name
            try:
                record, _, _ = _load(path, None)
            except FileNotFoundError:
                continue
            except CorruptFile:
                self._drop_if_orphan(path)  # being written now, or torn: wait for the age rule
                continue
            if record.id not in holders:
                _unlink(path)

    def _list_pending(self) -> _Listing:
        mtime_ns = os.stat(self.pending).st_mtime_ns
        now_ns = time.time_ns()
        return _Listing(mtime_ns, now_ns, os.listdir(self.pending))

    def scan(self, snapshot: tuple[int | None, int], eager: bool) -> _Listing | None:
        """List pending/ if a listing taken at ``snapshot`` may be out of date, else None."""
        mtime_ns = os.stat(self.pending).st_mtime_ns
        if not _stale(snapshot, mtime_ns, time.time_ns(), eager):
            return None
        return self._list_pending()

    def tidy_pending(self, garbage: Sequence[str], intents: Sequence[str]) -> list[Path]:
        """Set aside garbage names and roll old intents forward in pending/."""
        for name in garbage:
            self.set_aside(self.pending / name, "not a task file name", corrupt=False)
        placed: list[Path] = []
        for name in intents:
            placed += self.roll_forward(self.pending / name, _INTENT_GRACE_NS)
        return placed

    def add(self, items: Sequence[tuple[TaskRecord, int]]) -> list[Path]:
        """Store new tasks: all of them or (on error) none."""
        dests = self._commit(self.pending, None, "batch", items)
        assert dests is not None
        return dests

    def claim(self, names: Sequence[str], token: str, lease_until: float) -> list[TaskRecord]:
        """Rename each pending name into running/; read only the files won."""
        lease_ns = int(lease_until * 1_000_000_000)
        claimed: list[TaskRecord] = []
        for name in names:
            task_id = name[2 * _WIDTH + 2 : -5]
            src = self.pending / name
            dst = self.running / f"{task_id}.{token}.json"
            try:
                # The lease goes on before the rename too, so the file never shows
                # up in running/ looking expired.
                os.utime(src, ns=(lease_ns, lease_ns))
                os.rename(src, dst)
                record, _, info = _load(dst, task_id)
                if info.st_mtime_ns != lease_ns:  # a losing claimant's utime came last
                    os.utime(dst, ns=(lease_ns, lease_ns))
            except FileNotFoundError:
                continue  # another claimant (or a cancel) won this one
            except CorruptFile as error:
                self.set_aside(dst, str(error))
                continue
            claimed.append(_as_running(record, token, lease_ns))
        if claimed:
            self._sync_dirs(self.pending, self.running)
        return claimed

    def leave_running(
        self,
        task_id: str,
        token: str,
        make: Callable[[TaskRecord, int | None], list[tuple[TaskRecord, int]]],
    ) -> list[Path] | None:
        """Move a running attempt on (finish, retry, release); None if it is not held."""
        if not valid_id(task_id) or not isinstance(token, str) or not _TOKEN.fullmatch(token):
            return None
        path = self.running / f"{task_id}.{token}.json"
        try:
            record, seq, info = _load(path, task_id)
        except FileNotFoundError:
            return None
        except CorruptFile as error:
            self.set_aside(path, str(error))
            return None
        current = _as_running(record, token, info.st_mtime_ns)
        return self._commit(self.running, path, task_id, make(current, seq))

    def cancel(self, name: str, task_id: str, now: float, seq: int) -> list[Path] | None:
        """Cancel the pending file ``name``; None if it is gone (claimed or cancelled)."""
        path = self.pending / name
        try:
            record, stored_seq, _ = _load(path, task_id)
        except FileNotFoundError:
            return None
        except CorruptFile as error:
            self.set_aside(path, str(error))
            return None
        cancelled = dataclasses.replace(record, status="cancelled", updated_at=now, finished_at=now)
        item = (cancelled, seq if stored_seq is None else stored_seq)
        return self._commit(self.pending, path, task_id, [item])

    def heartbeat(self, leases: Sequence[tuple[str, str]], lease_until: float) -> list[str]:
        """Move the mtime (the lease) of each held running file; return the ids not held."""
        lease_ns = int(lease_until * 1_000_000_000)
        lost: list[str] = []
        for task_id, token in leases:
            if not valid_id(task_id) or not isinstance(token, str) or not _TOKEN.fullmatch(token):
                lost.append(task_id)
                continue
            try:
                os.utime(self.running / f"{task_id}.{token}.json", ns=(lease_ns, lease_ns))
            except FileNotFoundError:
                lost.append(task_id)
        return lost

    def expired(self, now: float, limit: int) -> list[TaskRecord]:
        """Running files whose mtime (lease) is before ``now``; tidies running/ on the way."""
        found: list[TaskRecord] = []
        names = os.listdir(self.running)
        self._drop_dead_temps(names)
        for name in names:
            if name.startswith(_INTENT):
                self.roll_forward(self.running / name, _INTENT_GRACE_NS)
            if name.startswith("."):
                continue
            match = _RUNNING.fullmatch(name)
            if match is None:
                self.set_aside(self.running / name, "not a task file name", corrupt=False)
                continue
            path = self.running / name
            try:
                if os.stat(path).st_mtime_ns / 1_000_000_000 >= now:
                    continue
                record, _, info = _load(path, match["id"])
            except FileNotFoundError:
                continue
            except CorruptFile as error:
                self.set_aside(path, str(error))
                continue
            found.append(_as_running(record, match["token"], info.st_mtime_ns))
        found.sort(key=lambda record: record.lease_until or 0.0)
        return found[:limit]

    def find_settled(self, task_id: str) -> tuple[TaskRecord | None, bool]:
        """Look in done/ then running/; also say whether a change of this task was in flight."""
        for directory in self.final.values():
            path = directory / f"{task_id}.json"
            try:
                return _load(path, task_id)[0], False
            except FileNotFoundError:
                continue
            except CorruptFile as error:
                self.set_aside(path, str(error))
                return None, False
        moving = False
        prefix = f"{task_id}."
        for name in os.listdir(self.running):
            if name.startswith(prefix):
                match = _RUNNING.fullmatch(name)
                if match is None or match["id"] != task_id:
                    continue
                try:
                    record, _, info = _load(self.running / name, task_id)
                except FileNotFoundError:
                    moving = True
                    continue
                except CorruptFile as error:
                    self.set_aside(self.running / name, str(error))
                    continue
                return _as_running(record, match["token"], info.st_mtime_ns), False
            elif name.startswith(_INTENT) and name.split("~")[2:3] == [task_id]:
                self.roll_forward(self.running / name, 0)
                moving = True
        return None, moving

    def read_pending(self, name: str, task_id: str) -> TaskRecord | None:
        """The record in pending/``name``, or None if it has moved on (or is unreadable)."""
        path = self.pending / name
        try:
            return _load(path, task_id)[0]
        except FileNotFoundError:
            return None
        except CorruptFile as error:
            self.set_aside(path, str(error))
            return None

    # ---------------------------------------------------------------- inspection

    def _task_names(self, directory: Path, pattern: re.Pattern[str]) -> list[str]:
        return [name for name in os.listdir(directory) if pattern.fullmatch(name)]

    def count(self) -> dict[str, int]:
        """Tasks per status, from names alone."""
        counts = {
            "pending": len(self._task_names(self.pending, _PENDING)),
            "running": len(self._task_names(self.running, _RUNNING)),
        }
        for status, directory in self.final.items():
            counts[status] = len(self._task_names(directory, _DONE))
        return counts

    def list_page(self, statuses: Sequence[str], limit: int, offset: int) -> list[TaskRecord]:
        """A page of tasks, most recently changed first; only the page's files are read.

        Files are ordered by what their names and mtimes say (a pending or final
        file is written when its task changes; a running file's name holds the
        claim time), then the page is read and ordered by ``updated_at``.
        """
        candidates: list[tuple[float, Path, str]] = []
        for status in statuses:
            if status == "running":
                for name in self._task_names(self.running, _RUNNING):
                    token = name[-37:-5]
                    candidates.append((_token_time(token), self.running / name, status))
                continue
            directory = self.pending if status == "pending" else self.final[status]
            pattern = _PENDING if status == "pending" else _DONE
            for name in self._task_names(directory, pattern):
                with contextlib.suppress(FileNotFoundError):
                    changed = os.stat(directory / name).st_mtime_ns / 1_000_000_000
                    candidates.append((changed, directory / name, status))
        candidates.sort(key=lambda candidate: candidate[0], reverse=True)
        page: list[TaskRecord] = []
        for _, path, status in candidates[offset : offset + limit]:
            if status == "pending":
                task_id = path.name[2 * _WIDTH + 2 : -5]
            elif status == "running":
                task_id = path.name[:-38]
            else:
                task_id = path.name[:-5]
            try:
                record, _, info = _load(path, task_id)
            except FileNotFoundError:
                continue  # it moved on while we looked
            except CorruptFile as error:
                self.set_aside(path, str(error))
                continue
            if status == "running":
                record = _as_running(record, path.name[-37:-5], info.st_mtime_ns)
            page.append(record)
        page.sort(key=lambda record: record.updated_at, reverse=True)
        return page

    def requeue(self, task_id: str, now: float, seq: int) -> list[Path] | None:
        """A failed or cancelled task back to pending/, fenced like every other move."""
        for status in ("failed", "cancelled"):
            path = self.final[status] / f"{task_id}.json"
            try:
                record, _, _ = _load(path, task_id)
            except FileNotFoundError:
                continue
            except CorruptFile as error:
                self.set_aside(path, str(error))
                return None
            fresh = dataclasses.replace(
                record,
                status="pending",
                attempts=0,
                eta=now,
                updated_at=now,
                error=None,
                result=None,
                finished_at=None,
                started_at=None,
                lease_until=None,
                attempt_token=None,
            )
            placed = self._commit(path.parent, path, task_id, [(fresh, seq)])
            if placed is not None:
                return placed
        return None

    def purge(self, before: float, statuses: Sequence[str]) -> int:
        """Delete final tasks of ``statuses`` that finished before ``before``.

        A file written well after ``before`` (its mtime) is skipped unread; the
        others are read, as ``finished_at`` decides.
        """
        deleted = 0
        for status in statuses:
            directory = self.final[status]
            for name in self._task_names(directory, _DONE):
                path = directory / name
                try:
                    if os.stat(path).st_mtime_ns / 1_000_000_000 > before + _PURGE_SLACK:
                        continue
                    record, _, _ = _load(path, name[:-5])
                except FileNotFoundError:
                    continue
                except CorruptFile as error:
                    self.set_aside(path, str(error))
                    continue
                if record.finished_at is not None and record.finished_at < before:
                    try:
                        os.unlink(path)
                    except FileNotFoundError:
                        continue  # requeued (or purged) by someone else meanwhile
                    deleted += 1
        if deleted:
            self._sync_dirs(*(self.final[status] for status in statuses))
        return deleted


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


# --------------------------------------------------------------------------- the index


class PendingIndex:
    """What this process knows of pending/: the names in claim order, and by task id.

    Names another process removed stay until a claim trips over them (the rename
    fails and the claim moves on); names another process added appear at the next
    listing. No file is opened to keep it.
    """

    def __init__(self) -> None:
        self.names: list[str] = []  # sorted; may still hold names no longer present
        self.present: set[str] = set()
        self.by_id: dict[str, str] = {}
        self.intents: dict[str, str] = {}  # task id -> intent marker seen in pending/
        self.recent: dict[str, int] = {}  # names added here -> when (a listing may predate them)
        self.mtime_ns: int | None = None
        self.listed_ns = 0

    def snapshot(self) -> tuple[int | None, int]:
        return self.mtime_ns, self.listed_ns

    def merge(self, listing: _Listing) -> tuple[list[str], list[str]]:
        """Take in a fresh listing; return the garbage names and the intent markers in it."""
        if listing.listed_ns < self.listed_ns:
            return [], []  # an older listing finished after a newer one: keep the newer
        current: set[str] = set()
        intents: list[str] = []
        for name in listing.names:
            if name.startswith("."):
                if name.startswith(_INTENT):
                    intents.append(name)
            else:
                current.add(name)
        for name, added_ns in self.recent.items():
            if added_ns >= listing.listed_ns:
                current.add(name)  # published here after the listing began
        self.recent = {n: t for n, t in self.recent.items() if t >= listing.listed_ns}
        for name in self.present - current:
            task_id = name[2 * _WIDTH + 2 : -5]
            if self.by_id.get(task_id) == name:
                del self.by_id[task_id]
        garbage: list[str] = []
        new: list[str] = []
        for name in current - self.present:
            match = _PENDING.fullmatch(name)
            if match is None:
                garbage.append(name)
                continue
            self.by_id[match["id"]] = name
            new.append(name)
        current.difference_update(garbage)
        self.present = current
        if len(self.names) > 2 * len(current) + 64:
            self.names = sorted(current)
        elif len(new) > 32:
            self.names.extend(new)
            self.names.sort()
        else:
            for name in new:
                bisect.insort(self.names, name)
        self.intents = {name.split("~")[2]: name for name in intents if name.count("~") == 3}
        self.mtime_ns, self.listed_ns = listing.mtime_ns, listing.listed_ns
        return garbage, intents

    def insert(self, name: str) -> None:
        if name in self.present:
            return
        self.present.add(name)
        self.by_id[name[2 * _WIDTH + 2 : -5]] = name
        self.recent[name] = time.time_ns()
        bisect.insort(self.names, name)

    def discard(self, name: str) -> None:
        self.present.discard(name)
        self.recent.pop(name, None)
        task_id = name[2 * _WIDTH + 2 : -5]
        if self.by_id.get(task_id) == name:
            del self.by_id[task_id]

    def _first(self) -> str | None:
        """The first name still present, dropping the stale ones before it."""
        index = 0
        while index < len(self.names) and self.names[index] not in self.present:
            index += 1
        del self.names[:index]
        return self.names[0] if self.names else None

    def has_due(self, due_key: str) -> bool:
        first = self._first()
        return first is not None and first[:_WIDTH] <= due_key

    def first_eta(self) -> float | None:
        first = self._first()
        return None if first is None else int(first[:_WIDTH]) / 1_000_000

    def take_due(self, due_key: str, count: int) -> list[str]:
        """Remove and return up to ``count`` due names, oldest first."""
        taken: list[str] = []
        index = 0
        while index < len(self.names) and len(taken) < count:
            name = self.names[index]
            if name in self.present:
                if name[:_WIDTH] > due_key:
                    break
                taken.append(name)
            index += 1
        del self.names[:index]
        for name in taken:
            self.discard(name)
        return taken


# --------------------------------------------------------------------------- the storage
