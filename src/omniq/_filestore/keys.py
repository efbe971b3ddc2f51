"""Unique keys of the file store: one key file per key held, settled on disk.

``keys/{sha256(key)}`` holds ``{"id", "queue", "name"}``: the task that holds the
key, its queue and its pending name when it took the key. The rules:

* A key file appears complete and locked: it is written to a hidden temporary,
  ``flock``-ed, then ``link``-ed to its name, which fails if the name exists. The
  lock is held until the task that took the key is published (or given up), so
  "locked" means "an add is in flight": its holder stands.
* A key file is only ever removed or replaced by a process that holds its lock and
  has checked that the name still leads to the file it locked. Replacing is a
  ``rename`` over it, so the name is never free in between.
* A key is held while its task is pending or running (or its add is in flight).
  A key file whose task is final or gone is stale: the next add takes it over.
  A task's key file is removed when the task reaches a final state; one that
  survives (a crash in between) is stale, and harmless.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from omniq._filestore import names
from omniq._filestore.names import CorruptFile
from omniq._filestore.tree import Tree, entries, lock, unlink
from omniq._fs import FILE_MODE, O_CLOEXEC, O_NOFOLLOW
from omniq.exceptions import StorageError

_LOCK_WAIT = 2.0  # seconds a judge waits for a key's lock before taking its holder as live
_ROUNDS = 8  # attempts to settle one key before giving up (each one is a lost race)
ACTIVE, FINAL, GONE = "active", "final", "gone"


def key_file_name(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass
class Holder:
    """What a key file says: the task that holds the key."""

    id: str
    queue: str
    name: str | None


@dataclass
class KeyHandle:
    """A key file this process holds locked: its path and open descriptor."""

    path: Path
    fd: int

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # releases the lock
            self.fd = -1


class Keys:
    """The key files of one store."""

    def __init__(self, tree: Tree) -> None:
        self.tree = tree

    def path_of(self, key: str) -> Path:
        return self.tree.keys / key_file_name(key)

    # ---------------------------------------------------------------- taking a key

    def acquire(self, key: str, holder: Holder) -> KeyHandle | str:
        """Take ``key`` for ``holder``: a locked handle, or the id of the task holding it.

        The handle stays locked until closed: close it once the holder is published.
        """
        path = self.path_of(key)
        temp, fd = self._locked_temp(holder)
        try:
            for _ in range(_ROUNDS):
                try:
                    os.link(temp, path)
                except FileExistsError:
                    pass
                else:
                    unlink(temp)
                    self.tree.sync_dirs(self.tree.keys)
                    return KeyHandle(path, fd)
                verdict = self._judge(path)
                if isinstance(verdict, str):
                    os.close(fd)
                    unlink(temp)
                    return verdict
                if verdict is not None:  # stale, and locked by us: take it over in place
                    try:
                        os.rename(temp, path)
                    finally:
                        verdict.close()
                    self.tree.sync_dirs(self.tree.keys)
                    return KeyHandle(path, fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.close(fd)
            unlink(temp)
            raise
        os.close(fd)
        unlink(temp)
        raise StorageError(f"unique key {key!r}: too many concurrent changes to settle its holder")

    def hold(self, key: str, task_id: str) -> KeyHandle | None:
        """Lock the key file of ``key`` if it names ``task_id``; else (or if busy) None."""
        path = self.path_of(key)
        handle = self._open_locked(path)
        if handle is None:
            return None
        holder = self._read(handle.fd)
        if holder is None or holder.id != task_id:
            handle.close()
            return None
        return handle

    def replace(self, handle: KeyHandle, holder: Holder) -> KeyHandle:
        """Hand a held key to ``holder`` (an interval task's next run) in one rename."""
        temp, fd = self._locked_temp(holder)
        try:
            os.rename(temp, handle.path)
        except BaseException:
            os.close(fd)
            unlink(temp)
            raise
        handle.close()
        self.tree.sync_dirs(self.tree.keys)
        return KeyHandle(handle.path, fd)

    def drop(self, handle: KeyHandle) -> None:
        """Remove a held key file (the key is free again) and close the handle."""
        try:
            unlink(handle.path)
        finally:
            handle.close()

    def release(self, key: str, task_id: str) -> None:
        """Free ``key`` if ``task_id`` holds it (that task reached a final state).

        Best effort: a key file left behind (busy, or an error here) is stale and
        taken over by the next add.
        """
        try:
            handle = self.hold(key, task_id)
            if handle is not None:
                self.drop(handle)
        except OSError:
            pass

    # ---------------------------------------------------------------- judging a holder

    def _locked_temp(self, holder: Holder) -> tuple[Path, int]:
        """A hidden key file for ``holder``, complete (and synced) and locked."""
        temp = self.tree.keys / f".{secrets.token_hex(8)}.tmp"
        data = json.dumps({"id": holder.id, "queue": holder.queue, "name": holder.name})
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | O_NOFOLLOW | O_CLOEXEC
        fd = os.open(temp, flags, FILE_MODE)
        try:
            lock(fd, 0.0)  # a file nobody else has seen yet: free
            view = memoryview(data.encode("utf-8"))
            while view:
                view = view[os.write(fd, view) :]
            if self.tree.fsync:
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            unlink(temp)
            raise
        return temp, fd

    def _open_locked(self, path: Path) -> KeyHandle | None:
        """``path`` opened and locked, checked to still be that file; None if it moved on."""
        try:
            fd = names.open_nofollow(path)
        except FileNotFoundError:
            return None
        except CorruptFile as error:
            self.tree.set_aside_unreadable(path, error)
            return None
        try:
            if not lock(fd, _LOCK_WAIT):
                os.close(fd)
                return None
            info, now = os.fstat(fd), os.lstat(path)
            if (info.st_ino, info.st_dev) != (now.st_ino, now.st_dev):
                os.close(fd)
                return None
        except FileNotFoundError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        return KeyHandle(path, fd)

    def _read(self, fd: int) -> Holder | None:
        try:
            data = json.loads(os.pread(fd, 4096, 0))
            if not isinstance(data, dict):
                return None
            task_id, queue, name = data.get("id"), data.get("queue"), data.get("name")
        except ValueError:
            return None
        if not (isinstance(task_id, str) and names.valid_id(task_id)):
            return None
        if not (isinstance(queue, str) and names.valid_queue(queue)):
            return None
        return Holder(task_id, queue, name if isinstance(name, str) else None)

    def _judge(self, path: Path) -> KeyHandle | str | None:
        """Who holds the key of ``path``: its holder's id, or (stale) a locked handle.

        None: the file moved on while we looked; try again.
        """
        try:
            fd = names.open_nofollow(path)
        except FileNotFoundError:
            return None
        except CorruptFile as error:
            self.tree.set_aside_unreadable(path, error)
            return None
        handle = KeyHandle(path, fd)
        try:
            if not lock(fd, _LOCK_WAIT):
                # An add in flight (or a slow one): its holder stands.
                holder = self._read(fd)
                handle.close()
                return holder.id if holder is not None else None
            info, now = os.fstat(fd), os.lstat(path)
            if (info.st_ino, info.st_dev) != (now.st_ino, now.st_dev):
                handle.close()
                return None
            holder = self._read(fd)
            if holder is not None and self.task_state(holder) == ACTIVE:
                handle.close()
                return holder.id
        except FileNotFoundError:
            handle.close()
            return None
        except BaseException:
            handle.close()
            raise
        return handle  # unreadable, or its task is final or gone: stale

    def task_state(self, holder: Holder) -> str:
        """Whether the holder's task is active (pending or running), final, or gone.

        Looks in the direction tasks move (pending, running, done), twice, and rolls
        forward the task's committed changes it meets, so a task moving meanwhile is
        still found; "gone" only when two rounds found nothing.
        """
        tree = self.tree
        task_id, queue = holder.id, holder.queue
        pending, running = tree.pending_dir(queue), tree.running_dir(queue)
        for _ in range(2):
            if holder.name and os.path.lexists(pending / holder.name):
                return ACTIVE
            found = entries(running)
            if any(_running_id(name) == task_id for name in found):
                return ACTIVE
            if self._roll_task(running, found, task_id):
                continue
            for status in names.FINAL:
                if os.path.lexists(tree.final_dir(status, queue) / f"{task_id}.json"):
                    return FINAL
            found = entries(pending)
            suffix = f"-{task_id}.json"
            if any(name.endswith(suffix) and not name.startswith(".") for name in found):
                return ACTIVE
            if self._roll_task(pending, found, task_id):
                continue
            tree.roll_forward_all(tree.pending, entries(tree.pending), 0)  # batches
        return GONE

    def _roll_task(self, directory: Path, found: list[str], task_id: str) -> bool:
        markers = [
            n for n in found if n.startswith(names.INTENT) and n.split("~")[2:3] == [task_id]
        ]
        for marker in markers:
            self.tree.roll_forward(directory / marker, 0)
        return bool(markers)

    def sweep(self) -> None:
        """Set aside what is not a key file in keys/; drop old orphan temporaries."""
        for name in entries(self.tree.keys):
            path = self.tree.keys / name
            if name.startswith("."):
                if name.endswith(".tmp"):
                    self.tree.drop_if_orphan(path)
            elif not names.KEY.fullmatch(name) or self.tree.is_regular(path) is False:
                self.tree.set_aside(path, "not a key file", corrupt=False)


def _running_id(name: str) -> str | None:
    match = names.RUNNING.fullmatch(name)
    return None if match is None else match["id"]
