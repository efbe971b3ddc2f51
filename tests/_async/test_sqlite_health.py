"""SQLite under trouble: a database replaced under a worker, a disk read-only at open.

Both twins; SQLite only. The read-only test mounts a tmpfs, which needs root.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import BACKEND, make_settings

from omniq import AsyncOmniQ, StorageError, TaskStatus
from omniq._concurrency import ajoin, asleep, aspawn
from omniq.storage.sqlite import AsyncSQLiteStorage

pytestmark = pytest.mark.skipif(BACKEND != "sqlite", reason="SQLite's own file")


async def wait_for_result(omniq: AsyncOmniQ, task_id: str, timeout: float = 30.0) -> object:
    deadline = time.monotonic() + timeout
    while True:
        task = await omniq.get_task(task_id)
        if task is not None and task["status"] == TaskStatus.COMPLETED:
            return task["result"]
        if time.monotonic() > deadline:
            raise AssertionError(f"task {task_id} did not complete within {timeout}s: {task}")
        await asleep(0.05)


async def test_a_database_replaced_under_a_worker_is_noticed_and_reopened(
    base_dir: Path,
) -> None:
    settings = make_settings(base_dir)
    worker_side = AsyncOmniQ(settings)
    first = await worker_side.enqueue("task_functions.add", args=[1, 1])
    workers = worker_side.worker_pool(poll_interval=0.05)
    async with workers:
        runner = aspawn(workers.process_tasks, None, 20.0)
        assert await wait_for_result(worker_side, first) == 2
        for suffix in ("", "-wal", "-shm"):  # a restore, a deploy that recreated it
            Path(f"{settings.sqlite_path}{suffix}").unlink(missing_ok=True)
        producer = AsyncOmniQ(settings)  # writes to the new file
        second = await producer.enqueue("task_functions.add", args=[2, 2])
        assert await wait_for_result(producer, second) == 4  # the worker found the new file
        workers.stop()
        await ajoin([runner], 30)
        await producer.close()
    await worker_side.close()


@pytest.fixture
def read_only_disk(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount_point)], check=True)
    subprocess.run(["mount", "-o", "remount,ro", str(mount_point)], check=True)
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


async def test_a_store_that_cannot_open_is_waited_for_then_served(read_only_disk: Path) -> None:
    settings = make_settings(read_only_disk / "store")
    omniq = AsyncOmniQ(settings)
    with pytest.raises(StorageError):  # a read path: a clear error, not a driver one
        await omniq.get_task("some-id")
    workers = omniq.worker_pool(poll_interval=0.05)
    async with workers:  # starts although the store cannot be opened yet
        runner = aspawn(workers.process_tasks, None, 30.0)
        await asleep(0.5)
        subprocess.run(["mount", "-o", "remount,rw", str(read_only_disk)], check=True)
        producer = AsyncOmniQ(settings)
        task_id = await producer.enqueue("task_functions.add", args=[3, 4])
        assert await wait_for_result(producer, task_id) == 7
        workers.stop()
        await ajoin([runner], 30)
        await producer.close()
    await omniq.close()


async def test_read_paths_raise_storage_errors(tmp_path: Path) -> None:
    path = tmp_path / "db"
    path.write_bytes(b"this is not a database, it only looks like one" * 100)
    path.chmod(0o600)
    storage = AsyncSQLiteStorage(path)
    with pytest.raises(StorageError, match="not a database"):
        await storage.get("x")
    with pytest.raises(StorageError, match="not a database"):
        await storage.list_tasks(None, 10)
    with pytest.raises(StorageError, match="not a database"):
        await storage.count_by_queue()
