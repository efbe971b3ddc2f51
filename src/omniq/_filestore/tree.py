"""The file store's directories, and the commit protocol every change goes through.

A change that rewrites a task writes the new record(s) to hidden temporary files
beside the task's file, then renames the task's file to a hidden intent marker
``.intent~{nonce}~{id}~{count}``: the fence (it fails if another actor moved the
file first) and the commit at once. From then on anyone may finish the move of
the temporaries to their places (roll-forward, also after a crash).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from omniq import logging as omniq_logging
from omniq._filestore import names
from omniq._filestore.names import CorruptFile
from omniq._fs import FILE_MODE, O_CLOEXEC, O_NOFOLLOW, ensure_private_dir
from omniq.records import StateRecord, TaskRecord

try:
    import fcntl
except ImportError:  # Windows: no flock; see docs/file-backend.md (Limits)
    fcntl = None  # type: ignore[assignment]

INTENT_GRACE_NS = 2_000_000_000  # younger intents are left to their (live) owner
TEMP_MAX_AGE_NS = 3600 * 1_000_000_000  # orphan temporaries removed after this
_MAX_MTIME = 2**62 / 1_000_000_000  # a file time in nanoseconds fits in 63 bits
_UTIME_FD = os.utime in os.supports_fd


def changed_at(record: TaskRecord) -> float:
    """The mtime of a task file: when its record last changed (finished, for a final one)."""
    if record.status in names.FINAL_SET and isinstance(record.finished_at, (int, float)):
        return record.finished_at
    return record.updated_at


def lock(fd: int, wait: float | None) -> bool:
    """``flock(LOCK_EX)`` on ``fd``, waiting at most ``wait`` seconds (None: as long as it
    takes); whether it was taken. Without ``flock`` (Windows) every lock is granted."""
    if fcntl is None:
        return True
    if wait is None:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return True
    deadline = time.monotonic() + wait
    pause = 0.0005
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(pause)
            pause = min(pause * 2, 0.02)


def unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def entries(directory: Path) -> list[str]:
    """The names in ``directory`` (none if it does not exist)."""
    try:
        return os.listdir(directory)
    except FileNotFoundError:
        return []


class Tree:
    """The paths of one store and the primitives on them. No state but paths and a
    cache of directories known to exist (omniq never removes one): safe from any thread.
    """

    def __init__(self, root: Path, fsync: bool) -> None:
        self.root = root
        self.fsync = fsync
        self.pending = root / "pending"
        self.running = root / "running"
        self.done = root / "done"
        self.final = {status: self.done / status for status in names.FINAL}
        self.quarantine = root / "quarantine"
        self.keys = root / "keys"
        self.state = root / "state"
        self.version_file = root / "layout"
        self.lock_file = root / "lock"
        self._made: set[Path] = set()

    # ---------------------------------------------------------------- directories

    def ensure_dir(self, directory: Path) -> Path:
        """Make ``directory`` (0700) unless this process knows it exists; return it."""
        if directory not in self._made:
            ensure_private_dir(directory)
            self._made.add(directory)
        return directory

    def pending_dir(self, queue: str) -> Path:
        return self.pending / queue

    def running_dir(self, queue: str) -> Path:
        return self.running / queue

    def final_dir(self, status: str, queue: str) -> Path:
        return self.final[status] / queue

    def state_path(self, kind: str, name: str) -> Path:
        return self.state / names.component(kind) / f"{names.component(name)}.json"

    def queue_dirs(self, parent: Path) -> list[str]:
        """The queue directories in ``parent`` (``pending/``, ``running/``, ``done/{status}/``).

        Anything else there that is not hidden (a file, a link, a bad name) is set aside.
        """
        found: list[str] = []
        try:
            scanned = list(os.scandir(parent))
        except FileNotFoundError:
            return found
        for entry in scanned:
            name = entry.name
            if name.startswith("."):
                continue
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                is_dir = False
            if is_dir and names.valid_queue(name):
                found.append(name)
            elif not self._adopt_v1(parent, name):
                self.set_aside(parent / name, "not a queue directory", corrupt=False)
        return found

    def _adopt_v1(self, parent: Path, name: str) -> bool:
        """Move a file omniq 0.1.0 wrote (a 0.1.0 process still running) into ``default/``.

        True if ``name`` is such a file (pending ones are moved by their own scan).
        """
        if parent == self.pending:
            return names.V1_PENDING.fullmatch(name) is not None
        if parent == self.running:
            pattern = names.RUNNING
        elif parent in self.final.values():
            pattern = names.DONE
        else:
            return False
        if pattern.fullmatch(name) is None or not self.is_regular(parent / name):
            return False
        target = self.ensure_dir(parent / names.V1_QUEUE) / name
        with contextlib.suppress(FileNotFoundError):
            os.rename(parent / name, target)
        return True

    # ---------------------------------------------------------------- primitives

    def write_new(self, path: Path, data: bytes, mtime: float | None = None) -> None:
        """Create ``path`` holding ``data`` (synced if durability is full), mtime ``mtime``."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | O_NOFOLLOW | O_CLOEXEC, FILE_MODE)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if isinstance(mtime, (int, float)) and 0 <= mtime < _MAX_MTIME:  # not NaN either
                stamp = int(mtime * 1_000_000_000)
                os.utime(fd if _UTIME_FD else path, ns=(stamp, stamp))
            if self.fsync:
                os.fsync(fd)
        finally:
            os.close(fd)

    def sync_dirs(self, *directories: Path) -> None:
        if not self.fsync:
            return
        for directory in directories:
            fd = os.open(directory, os.O_RDONLY | O_CLOEXEC)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def destination(self, record: TaskRecord, seq: int) -> Path:
        if not names.valid_queue(record.queue):
            raise ValueError(f"task {record.id} has a queue name that is no directory name")
        if record.status == "pending":
            return self.pending_dir(record.queue) / names.pending_name(record, seq)
        if record.status in self.final:
            return self.final_dir(record.status, record.queue) / f"{record.id}.json"
        raise ValueError(f"task {record.id} cannot be stored with status {record.status!r}")

    def set_aside(self, path: Path, reason: str, *, corrupt: bool = True) -> None:
        """Move an unreadable entry to quarantine/ and log it; never raises.

        A link is moved itself (``rename`` never follows one); its target is untouched.
        """
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

    def set_aside_unreadable(self, path: Path, error: CorruptFile) -> None:
        reason = str(error) if error.content else f"not a regular task file ({error})"
        self.set_aside(path, reason, corrupt=error.content)

    # ---------------------------------------------------------------- commits

    def commit(
        self,
        directory: Path,
        src: Path | None,
        tag: str,
        items: Sequence[tuple[TaskRecord, int]],
        state: StateRecord | None = None,
    ) -> list[Path] | None:
        """Publish ``items``, removing ``src`` in the same step; None if ``src`` is gone.

        With ``state`` (tag ``"state"``), that state record replaces its file in the
        same commit: the tasks and the record's new mark are placed together.
        """
        dests = [self.destination(record, seq) for record, seq in items]
        state_dest = None if state is None else self.state_path(state.kind, state.name)
        for parent in {dest.parent for dest in dests} | (
            {state_dest.parent} if state_dest else set()
        ):
            self.ensure_dir(parent)
        nonce = secrets.token_hex(8)
        temps: list[Path] = []
        marker = directory / f"{names.INTENT}{nonce}~{tag}~{len(items)}"
        state_temp = directory / f".{nonce}-state.tmp"
        committed = False
        try:
            for index, (record, seq) in enumerate(items):
                temps.append(directory / f".{nonce}-{index}.tmp")
                self.write_new(temps[-1], names.encode(record, seq), changed_at(record))
            if state is not None:
                self.write_new(state_temp, names.encode_state(state))
            if src is None and len(dests) == 1 and state is None:  # one new file: rename commits
                os.rename(temps[0], dests[0])
                committed = True
                self.sync_dirs(dests[0].parent)
                return dests
            if src is None:
                fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL | O_NOFOLLOW, FILE_MODE)
                os.close(fd)
            else:
                try:
                    os.rename(src, marker)  # the fence and the commit point
                except FileNotFoundError:
                    return None
            committed = True
        finally:
            if not committed:
                for temp in (*temps, state_temp):
                    with contextlib.suppress(OSError):  # keep the error that got us here
                        os.unlink(temp)
        self.sync_dirs(directory)
        for temp, dest in zip(temps, dests, strict=True):
            # FileNotFoundError: a roll-forward by another process got there first.
            with contextlib.suppress(FileNotFoundError):
                os.rename(temp, dest)
        if state_dest is not None:
            with contextlib.suppress(FileNotFoundError):
                os.replace(state_temp, state_dest)
        self.sync_dirs(
            *{dest.parent for dest in dests}, *([state_dest.parent] if state_dest else [])
        )
        unlink(marker)
        return dests

    def roll_forward(self, marker: Path, grace_ns: int) -> list[Path]:
        """Finish a committed change whose owner died (or is slow); return what it placed."""
        try:
            if grace_ns and time.time_ns() - os.lstat(marker).st_ctime_ns < grace_ns:
                return []
        except FileNotFoundError:
            return []
        try:
            _, nonce, tag, count = marker.name.split("~")
            total = int(count)
        except ValueError:
            self.set_aside(marker, "not an intent marker", corrupt=False)
            return []
        placed: list[Path] = []
        for index in range(total):
            temp = marker.parent / f".{nonce}-{index}.tmp"
            try:
                record, seq, _ = names.load(temp, None)
                dest = self.destination(record, seq if seq is not None else 0)
                self.ensure_dir(dest.parent)
                os.rename(temp, dest)
            except FileNotFoundError:
                continue
            except CorruptFile as error:
                self.set_aside(temp, f"unreadable committed change: {error}")
                continue
            except ValueError as error:
                self.set_aside(temp, f"committed change with no place: {error}")
                continue
            placed.append(dest)
        self.sync_dirs(*{dest.parent for dest in placed})
        if tag == "state":
            self._place_state(marker.parent / f".{nonce}-state.tmp")
        unlink(marker)
        return placed

    def _place_state(self, temp: Path) -> None:
        """The state record of a committed ``advance_state``, put in place."""
        try:
            record = names.load_state(temp)
            dest = self.state_path(record.kind, record.name)
            self.ensure_dir(dest.parent)
            os.replace(temp, dest)
        except FileNotFoundError:
            return
        except CorruptFile as error:
            self.set_aside(temp, f"unreadable committed state record: {error}")
            return
        self.sync_dirs(dest.parent)

    def roll_forward_all(self, directory: Path, found: Iterable[str], grace_ns: int) -> list[Path]:
        """Roll forward every intent marker among ``found`` (names in ``directory``)."""
        placed: list[Path] = []
        for name in found:
            if name.startswith(names.INTENT):
                placed += self.roll_forward(directory / name, grace_ns)
        return placed

    def drop_if_orphan(self, temp: Path) -> None:
        # A temporary with no intent left is from an operation that died before its
        # commit; after an hour no live operation can still be about to commit it.
        try:
            if time.time_ns() - os.lstat(temp).st_mtime_ns > TEMP_MAX_AGE_NS:
                unlink(temp)
        except FileNotFoundError:
            pass

    def is_regular(self, path: Path) -> bool | None:
        """Whether ``path`` is a regular file (``None``: nothing there); links are not."""
        try:
            return stat.S_ISREG(os.lstat(path).st_mode)
        except FileNotFoundError:
            return None
