"""Opening a file store: its lock, its layout version, the v1 migration, the sweeps.

``layout`` (a file in the base directory) holds the layout version, ``2``. A store
made by omniq 0.1.0 has none: its pending files sit directly in ``pending/``,
its running files in ``running/`` and its finished ones in ``done/{status}/``.
Opening it moves each into its queue directory (``default``: 0.1.0 had one queue),
renaming files, never rewriting one (a v1 record reads as queue ``default`` and
priority 0), then writes the marker. The version check and the migration run
under ``flock`` on ``lock``, so processes opening the store at once migrate it
once; a migration cut short is simply run again (every step is a rename of what
is still in its old place).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

from omniq._filestore import names
from omniq._filestore.keys import Keys
from omniq._filestore.names import CorruptFile
from omniq._filestore.state import States
from omniq._filestore.tree import entries, lock, unlink
from omniq._fs import FILE_MODE, O_CLOEXEC, O_NOFOLLOW, check_private_file, ensure_private_dir
from omniq.exceptions import StorageError

LAYOUT_VERSION = 2


class Layout(States):
    """Opening and tidying a store (mixed into :class:`~omniq._filestore.moves.Disk`)."""

    unique: Keys

    def prepare(self) -> None:
        """Create or check the directories, migrate a v1 tree, finish interrupted changes."""
        ensure_private_dir(self.root, own_link_ok=True)
        with self._store_lock():
            version = self._read_version()
            if version is not None and version > LAYOUT_VERSION:
                raise StorageError(
                    f"{self.root} has file-store layout {version}, newer than this omniq "
                    f"understands ({LAYOUT_VERSION}): upgrade omniq"
                )
            directories = (
                self.pending,
                self.running,
                self.done,
                self.quarantine,
                self.keys,
                self.state,
            )
            for directory in (*directories, *self.final.values()):
                self._made.discard(directory)  # checked again at every open
                self.ensure_dir(directory)
            if version is None:
                self._migrate_v1()
                self._write_version()
        self._sweep()

    @contextlib.contextmanager
    def _store_lock(self) -> Iterator[None]:
        flags = os.O_RDWR | os.O_CREAT | O_NOFOLLOW | O_CLOEXEC
        try:
            fd = os.open(self.lock_file, flags, FILE_MODE)
        except OSError as error:
            check_private_file(self.lock_file)  # a link or a FIFO there: say so
            raise StorageError(f"cannot open the store lock {self.lock_file}: {error}") from error
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise StorageError(f"the store lock {self.lock_file} is not a regular file")
            check_private_file(self.lock_file)
            lock(fd, None)
            yield
        finally:
            os.close(fd)

    def _read_version(self) -> int | None:
        try:
            raw, _ = names.read_file(self.version_file)
        except FileNotFoundError:
            return None
        except CorruptFile as error:
            raise StorageError(f"the layout marker {self.version_file}: {error}") from None
        try:
            return int(raw.decode("ascii").strip())
        except ValueError:
            raise StorageError(
                f"the layout marker {self.version_file} is unreadable ({raw[:40]!r}); "
                "it should hold the number 2"
            ) from None

    def _write_version(self) -> None:
        temp = self.root / f".layout-{secrets.token_hex(4)}.tmp"
        self.write_new(temp, f"{LAYOUT_VERSION}\n".encode("ascii"))
        os.replace(temp, self.version_file)
        self.sync_dirs(self.root)

    def _migrate_v1(self) -> None:
        """Move what omniq 0.1.0 left into the v2 layout (nothing to move: a new store)."""
        for directory in (self.pending, self.running, *self.final.values()):
            # v1 commits first: their temporaries hold records placed by the v2 rules.
            self.roll_forward_all(directory, entries(directory), 0)
        moves: list[tuple[Path, Path]] = []
        for name in entries(self.pending):
            if names.V1_PENDING.fullmatch(name):
                target = self.pending_dir(names.V1_QUEUE) / names.migrated_name(name)
                moves.append((self.pending / name, target))
        for name in entries(self.running):
            if names.RUNNING.fullmatch(name):
                moves.append((self.running / name, self.running_dir(names.V1_QUEUE) / name))
        for status, directory in self.final.items():
            for name in entries(directory):
                if names.DONE.fullmatch(name):
                    moves.append((directory / name, self.final_dir(status, names.V1_QUEUE) / name))
        for source, target in moves:
            if self.is_regular(source):  # a link or a directory is left to the sweep
                self.ensure_dir(target.parent)
                with contextlib.suppress(FileNotFoundError):
                    os.rename(source, target)
        self.sync_dirs(*{target.parent for _, target in moves}, *{src.parent for src, _ in moves})

    def migrate_v1_pending(self, found: list[str]) -> list[Path]:
        """v1 pending names found in ``pending/`` (a 0.1.0 producer still running) moved in."""
        placed: list[Path] = []
        for name in found:
            if names.V1_PENDING.fullmatch(name) and self.is_regular(self.pending / name):
                target = self.ensure_dir(self.pending_dir(names.V1_QUEUE)) / names.migrated_name(
                    name
                )
                with contextlib.suppress(FileNotFoundError):
                    os.rename(self.pending / name, target)
                    placed.append(target)
        return placed

    # ---------------------------------------------------------------- sweeps

    def _sweep(self) -> None:
        """Roll every change forward and set aside what is no task file, in every directory."""
        for name in entries(self.done):
            if not name.startswith(".") and name not in self.final:
                self.set_aside(self.done / name, "not a status directory", corrupt=False)
        for directory in self.final.values():
            self.sweep_dir(directory, None)
            for queue in self.queue_dirs(directory):
                self.sweep_dir(self.ensure_dir(directory / queue), names.DONE)
        for queue in self.queue_dirs(self.running):
            running = self.ensure_dir(self.running_dir(queue))
            self.sweep_dir(running, names.RUNNING)
            self.drop_dead_temps(running, entries(running))
        top = entries(self.pending)
        self.migrate_v1_pending(top)
        self.sweep_dir(self.pending, None)
        for queue in self.queue_dirs(self.pending):
            self.sweep_dir(self.ensure_dir(self.pending_dir(queue)), names.PENDING)
        self.unique.sweep()
        self.sweep_state()

    def sweep_dir(self, directory: Path, pattern: re.Pattern[str] | None) -> None:
        """Roll intents forward, drop old orphan temporaries, set garbage names aside.

        ``pattern`` (a compiled name pattern) is what a task file there is called;
        ``None`` for a directory of directories (its other entries are left to
        :meth:`queue_dirs`).
        """
        found = entries(directory)
        self.roll_forward_all(directory, found, 0)
        for name in found:
            if name.startswith(".") and name.endswith(".tmp"):
                self.drop_if_orphan(directory / name)
        if pattern is None:
            return
        for name in found:
            if not name.startswith(".") and pattern.fullmatch(name) is None:
                self.set_aside(directory / name, "not a task file name", corrupt=False)

    def drop_dead_temps(self, directory: Path, found: list[str]) -> None:
        """Remove temporaries of a ``running/{queue}/`` whose move can no longer commit.

        A temporary here belongs to the move of one running file. If one listing
        shows no intent with its nonce (not committed yet) and no running file of
        its task (nothing left to fence), its fence can never succeed: it was left
        by an operation that died, or that lost its task to a recovery.
        """
        holders = {m["id"] for m in map(names.RUNNING.fullmatch, found) if m is not None}
        nonces = {name.split("~")[1] for name in found if name.startswith(names.INTENT)}
        for name in found:
            if not (name.startswith(".") and name.endswith(".tmp")):
                continue
            if name[1:].split("-")[0] in nonces:
                continue
            path = directory / name
            try:
                record, _, _ = names.load(path, None)
            except FileNotFoundError:
                continue
            except CorruptFile:
                self.drop_if_orphan(path)  # being written now, or torn: wait for the age rule
                continue
            except OSError:
                continue  # unreadable now: the next scan tries again
            if record.id not in holders:
                unlink(path)
