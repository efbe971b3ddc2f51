"""The stores on disk are their owner's alone: no links followed, no modes left open.

SQLite's ``omniq.db`` (and its ``-wal``/``-shm``) and the store directories of the
SQLite and file backends: a symbolic link in their place is refused with a clear
``StorageError`` and its target left untouched; a mode wider than 0700/0600 is
tightened with a warning naming the path and the old mode, or refused when omniq
cannot change it. (``omniq._fs`` has the rules.)
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import BACKEND, make_settings

from omniq import AsyncOmniQ, StorageError
from omniq import logging as omniq_logging

ON_DISK = BACKEND in ("sqlite", "file")
pytestmark = pytest.mark.skipif(
    not ON_DISK or os.name != "posix", reason=f"the {BACKEND} backend keeps nothing on disk"
)
sqlite_only = pytest.mark.skipif(BACKEND != "sqlite", reason="SQLite's database file")
file_only = pytest.mark.skipif(BACKEND != "file", reason="the file backend's directories")


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@contextlib.contextmanager
def omniq_warnings() -> Iterator[list[dict[str, Any]]]:
    """omniq's log records (as PROD JSON) while the block runs."""
    lines: list[str] = []
    omniq_logging.configure(level="WARNING", mode="PROD", sink=lines.append)
    records: list[dict[str, Any]] = []
    try:
        yield records
    finally:
        omniq_logging.reset()
        records.extend(json.loads(line) for line in lines)


async def enqueue_one(base_dir: Path) -> None:
    facade = AsyncOmniQ(make_settings(base_dir))
    try:
        await facade.enqueue("task_functions.add", args=[1, 2])
    finally:
        await facade.close()


async def test_wide_modes_of_the_store_are_tightened_with_a_warning(base_dir: Path) -> None:
    await enqueue_one(base_dir)
    os.chmod(base_dir, 0o777)
    database = base_dir / "omniq.db"
    loosened = [base_dir]
    if BACKEND == "sqlite":
        os.chmod(database, 0o666)
        loosened.append(database)
    with omniq_warnings() as records:
        await enqueue_one(base_dir)
    assert mode(base_dir) == 0o700
    if BACKEND == "sqlite":
        assert mode(database) == 0o600
    tightened = [r for r in records if r.get("event") == "permissions_tightened"]
    assert {r["path"] for r in tightened} == {str(path) for path in loosened}
    assert {r["old_mode"] for r in tightened} == (
        {"0777", "0666"} if BACKEND == "sqlite" else {"0777"}
    )
    assert all(r["level"] == "WARNING" and str(r["path"]) in r["message"] for r in tightened)
    with omniq_warnings() as again:
        await enqueue_one(base_dir)
    assert not [r for r in again if r.get("event") == "permissions_tightened"]


async def test_a_new_store_is_private_whatever_the_umask(base_dir: Path) -> None:
    old = os.umask(0)
    try:
        await enqueue_one(base_dir / "a" / "b")
    finally:
        os.umask(old)
    for directory in (base_dir, base_dir / "a", base_dir / "a" / "b"):
        assert mode(directory) == 0o700
    if BACKEND == "sqlite":
        assert mode(base_dir / "a" / "b" / "omniq.db") == 0o600


@sqlite_only
@pytest.mark.parametrize("name", ["omniq.db", "omniq.db-wal", "omniq.db-shm"])
async def test_a_symlinked_database_file_is_refused_and_its_target_untouched(
    base_dir: Path, tmp_path: Path, name: str
) -> None:
    base_dir.mkdir(mode=0o700)
    target = tmp_path / "elsewhere"
    target.write_bytes(b"precious")
    os.chmod(target, 0o644)
    (base_dir / name).symlink_to(target)
    with pytest.raises(StorageError, match="is a symbolic link") as raised:
        await enqueue_one(base_dir)
    assert str(base_dir / name) in str(raised.value) and str(target) in str(raised.value)
    assert target.read_bytes() == b"precious" and mode(target) == 0o644


@sqlite_only
async def test_a_dangling_database_link_creates_nothing_at_its_target(
    base_dir: Path, tmp_path: Path
) -> None:
    base_dir.mkdir(mode=0o700)
    target = tmp_path / "not-yet" / "planted.db"
    (base_dir / "omniq.db").symlink_to(target)
    with pytest.raises(StorageError, match="symbolic link"):
        await enqueue_one(base_dir)
    assert not os.path.lexists(target)


@sqlite_only
async def test_a_database_that_is_not_a_regular_file_is_refused(base_dir: Path) -> None:
    base_dir.mkdir(mode=0o700)
    os.mkfifo(base_dir / "omniq.db")  # opening it would block the worker forever
    with pytest.raises(StorageError, match="not a regular file"):
        await enqueue_one(base_dir)


@file_only
async def test_a_symlinked_status_directory_is_refused(base_dir: Path, tmp_path: Path) -> None:
    await enqueue_one(base_dir)
    outside = tmp_path / "outside"
    outside.mkdir()
    completed = base_dir / "done" / "completed"
    os.rmdir(completed)
    completed.symlink_to(outside)
    with pytest.raises(StorageError, match="is a symbolic link"):
        await enqueue_one(base_dir)
    assert os.listdir(outside) == []


@contextlib.contextmanager
def as_user(uid: int) -> Iterator[None]:
    """Run the block with ``uid`` as the effective user (for every thread)."""
    os.seteuid(uid)
    try:
        yield
    finally:
        os.seteuid(0)


@pytest.mark.skipif(
    os.name != "posix" or os.geteuid() != 0, reason="needs root to act as another user"
)
async def test_a_wide_store_of_another_user_is_refused_clearly(tmp_path: Path) -> None:
    shared = Path("/tmp") / f"omniq-test-{os.getpid()}-{tmp_path.name}"
    shared.mkdir(mode=0o755)
    try:
        store = shared / "store"
        store.mkdir()
        os.chmod(store, 0o777)  # root's, open to all
        with as_user(65534), pytest.raises(StorageError) as raised:
            await enqueue_one(store)
        message = str(raised.value)
        assert str(store) in message and "0777" in message and "chmod 700" in message
        assert mode(store) == 0o777 and os.listdir(store) == []
    finally:
        for path in sorted(shared.rglob("*"), reverse=True):
            path.unlink() if not path.is_dir() else path.rmdir()
        shared.rmdir()
