"""A full disk and a read-only store: a clear error at enqueue, stored tasks untouched.

Each test mounts a 2 MiB tmpfs, which needs root; elsewhere the tests skip.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import BACKEND, make_settings

from omniq import AsyncOmniQ, StorageError, TaskStatus

pytestmark = pytest.mark.skipif(
    BACKEND not in ("sqlite", "file"), reason=f"the {BACKEND} backend keeps nothing on disk"
)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root")
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount_point)], check=True)
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(disk: Path) -> Path:
    filler = disk / "filler"
    with open(filler, "wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError as error:
            assert error.errno == errno.ENOSPC
    return filler


async def test_full_disk_is_a_clear_error_and_keeps_stored_tasks(small_disk: Path) -> None:
    omniq = AsyncOmniQ(make_settings(small_disk / "store"))
    stored = [await omniq.enqueue("task_functions.add", args=[i, i]) for i in range(5)]
    filler = fill(small_disk)
    with pytest.raises(StorageError, match="could not store the task"):
        for i in range(200):  # the first write that needs a new page fails
            await omniq.enqueue("task_functions.echo", args=["x" * 4096, i])
    for task_id in stored:
        task = await omniq.get_task(task_id)
        assert task is not None and task["status"] == TaskStatus.PENDING
    filler.unlink()
    later = await omniq.enqueue("task_functions.add", args=[100, 1])
    async with omniq.worker_pool() as workers:
        await workers.process_tasks(limit=1000)
    assert [await omniq.get_result(task_id) for task_id in stored] == [0, 2, 4, 6, 8]
    assert await omniq.get_result(later) == 101
    await omniq.close()


async def test_read_only_store_is_a_clear_error_and_keeps_stored_tasks(small_disk: Path) -> None:
    settings = make_settings(small_disk / "store")
    omniq = AsyncOmniQ(settings)
    stored = await omniq.enqueue("task_functions.add", args=[20, 22])
    await omniq.close()
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    try:
        reader = AsyncOmniQ(settings)
        with pytest.raises(StorageError):
            await reader.enqueue("task_functions.add", args=[1, 1])
        await reader.close()
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)
    omniq = AsyncOmniQ(settings)
    async with omniq.worker_pool() as workers:
        assert await workers.process_tasks(limit=10) == 1
    assert await omniq.get_result(stored) == 42
    await omniq.close()
