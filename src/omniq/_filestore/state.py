"""Named state records of the file store: ``state/{kind}/{name}.json``.

Kind and name are percent-encoded (hashed when long), and the record inside says
both. Every change of a kind's records runs under ``flock`` on
``state/{kind}/.lock`` and replaces the file in one ``rename``, so readers see
the old record or the new one. ``advance_state`` commits its tasks and the
record's new mark together, with one intent marker in ``pending/`` tagged
``state`` (see :meth:`Tree.commit`); every change first rolls such commits
forward, so a mark moved by a process that died is never moved back.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
import stat
from collections.abc import Iterator

from omniq._filestore import names
from omniq._filestore.names import CorruptFile
from omniq._filestore.tree import Tree, entries, lock
from omniq._fs import FILE_MODE, O_CLOEXEC, O_NOFOLLOW
from omniq.exceptions import StorageError
from omniq.records import StateRecord


class States(Tree):
    """State records (mixed into :class:`~omniq._filestore.moves.Disk`)."""

    @contextlib.contextmanager
    def state_lock(self, kind: str) -> Iterator[None]:
        """Hold the lock of ``kind``'s records (a change of them never interleaves another)."""
        directory = self.ensure_dir(self.state / names.component(kind))
        path = directory / ".lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | O_NOFOLLOW | O_CLOEXEC, FILE_MODE)
        try:
            lock(fd, None)
            yield
        finally:
            os.close(fd)

    def roll_state_forward(self) -> None:
        """Finish ``advance_state`` commits whose owner died (their marks go forward)."""
        for name in entries(self.pending):
            if name.startswith(names.INTENT) and name.split("~")[2:3] == ["state"]:
                self.roll_forward(self.pending / name, 0)

    def read_state(self, kind: str, name: str) -> StateRecord | None:
        path = self.state_path(kind, name)
        try:
            record = names.load_state(path)
        except FileNotFoundError:
            return None
        except CorruptFile as error:
            self.set_aside_unreadable(path, error)
            return None
        if (record.kind, record.name) != (kind, name):
            self.set_aside(path, f"it holds the state record {record.kind!r}/{record.name!r}")
            return None
        return record

    def get_state(self, kind: str, name: str) -> StateRecord | None:
        self.roll_state_forward()
        return self.read_state(kind, name)

    def list_state(self, kind: str) -> list[StateRecord]:
        self.roll_state_forward()
        directory = self.state / names.component(kind)
        found: list[StateRecord] = []
        for file_name in entries(directory):
            if file_name.startswith(".") or not file_name.endswith(".json"):
                continue
            path = directory / file_name
            try:
                record = names.load_state(path)
            except FileNotFoundError:
                continue
            except CorruptFile as error:
                self.set_aside_unreadable(path, error)
                continue
            if record.kind == kind and self.state_path(kind, record.name) == path:
                found.append(record)
        return sorted(found, key=lambda record: record.name)

    def put_state(self, kind: str, name: str, data: str, now: float) -> None:
        with self.state_lock(kind):
            self.roll_state_forward()
            current = self.read_state(kind, name)
            mark = None if current is None else current.mark
            self._write_state(StateRecord(kind, name, data, now, mark))

    def delete_state(self, kind: str, name: str) -> bool:
        with self.state_lock(kind):
            self.roll_state_forward()
            path = self.state_path(kind, name)
            try:
                os.unlink(path)
            except FileNotFoundError:
                return False
            self.sync_dirs(path.parent)
            return True

    def advanced(self, kind: str, name: str, mark: float) -> StateRecord | None:
        """The record with its mark at ``mark``, if it exists and its mark is behind.

        Call it holding :meth:`state_lock`, and commit the result before letting go.
        """
        self.roll_state_forward()
        current = self.read_state(kind, name)
        if current is None or (current.mark is not None and not current.mark < mark):
            return None
        return dataclasses.replace(current, mark=mark)

    def _write_state(self, record: StateRecord) -> None:
        path = self.state_path(record.kind, record.name)
        temp = path.parent / f".{secrets.token_hex(8)}.tmp"
        try:
            self.write_new(temp, names.encode_state(record))
            os.replace(temp, path)
        except ValueError as error:  # a time JSON cannot hold (NaN)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
            raise StorageError(f"cannot store the state record {record.name!r}: {error}") from None
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
            raise
        self.sync_dirs(path.parent)

    def sweep_state(self) -> None:
        """Set aside what is no state record in state/; drop old orphan temporaries."""
        for kind in entries(self.state):
            directory = self.state / kind
            if kind.startswith("."):
                continue
            try:
                is_dir = stat.S_ISDIR(os.lstat(directory).st_mode)
            except FileNotFoundError:
                continue
            if not is_dir:
                self.set_aside(directory, "not a state directory", corrupt=False)
                continue
            for name in entries(directory):
                path = directory / name
                if name.startswith("."):
                    if name.endswith(".tmp"):
                        self.drop_if_orphan(path)
                elif not name.endswith(".json") or self.is_regular(path) is False:
                    self.set_aside(path, "not a state record", corrupt=False)
