"""Entries in a file store that are no task files: never followed, never blocking, set aside.

A FIFO named like a pending task must not block a worker; a directory named like
a task must not stop lease recovery; a symbolic link is moved to quarantine/
itself, its target never read, written or touched (issue 13, A.5 and C.16). Each
is set aside and logged, and the scan it was met in goes on. These tests build
the file store on ``tmp_path`` whatever ``OMNIQ_TEST_BACKEND`` says.
"""

from __future__ import annotations

import json
import os
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from filestore import file_settings, new_record, past, pending_ids, unblocking_fifos, visible

from omniq import AsyncOmniQ, AsyncTaskQueue
from omniq._concurrency import asleep
from omniq.storage.file import AsyncFileStorage

pytestmark = pytest.mark.skipif(os.name != "posix", reason="FIFOs and links are POSIX")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "store"


def due_name(task_id: str) -> str:
    return f"100-{1:020d}-{1:020d}-{task_id}.json"


@pytest.fixture
def fifo_watchdog(root: Path) -> Iterator[list[str]]:
    """What a watchdog had to unblock: a regression fails the test instead of hanging it."""
    with unblocking_fifos(root, after=60) as freed:
        yield freed


async def test_a_fifo_named_like_a_task_never_blocks_a_worker(
    root: Path, fifo_watchdog: list[str]
) -> None:
    omniq = AsyncOmniQ(file_settings(root))
    try:
        good = await omniq.enqueue("task_functions.add", args=[2, 3])
        os.mkfifo(root / "pending" / "default" / due_name(str(uuid.uuid4())))
        ghost = str(uuid.uuid4())
        (root / "done" / "completed" / "default").mkdir()
        os.mkfifo(root / "done" / "completed" / "default" / f"{ghost}.json")
        async with omniq.worker_pool() as workers:
            assert await workers.process_tasks(limit=5) == 1
        assert await omniq.get_result(good) == 5
        assert await omniq.get_task(ghost) is None  # read without blocking, then set aside
        assert pending_ids(root) == [] and visible(root / "running" / "default") == []
        quarantined = [root / "quarantine" / name for name in visible(root / "quarantine")]
        assert len(quarantined) == 2 and all(stat.S_ISFIFO(p.lstat().st_mode) for p in quarantined)
    finally:
        await omniq.close()
    assert fifo_watchdog == []


async def test_a_directory_named_like_a_task_never_stops_recovery(root: Path) -> None:
    queue = AsyncTaskQueue(AsyncFileStorage(root), lease_timeout=0.05)
    try:
        dead = await queue.enqueue("task_functions.add", [1, 1])
        (task,) = await queue.dequeue_many(1)
        running = root / "running" / "default"
        (running / f"{uuid.uuid4()}.{uuid.uuid4().hex}.json").mkdir()
        (running / f"{uuid.uuid4()}.{uuid.uuid4().hex}.json").symlink_to("/etc/passwd")
        os.mkfifo(running / f"{uuid.uuid4()}.{uuid.uuid4().hex}.json")
        # And a directory in pending/: a claim moves it into running/, then sets it aside.
        (root / "pending" / "default" / due_name(str(uuid.uuid4()))).mkdir()
        await asleep(0.1)  # the real task's lease runs out: its worker "died"
        assert await queue.recover_expired() == 1
        assert await queue.recover_expired() == 0  # and the next scans are fine too
        again = await queue.get_task(dead)
        assert again is not None and again.attempts_history[-1].outcome == "lost"
        (retried,) = await queue.dequeue_many(1, lease_timeout=30)
        assert retried.id == dead and retried.attempt_token != task.attempt_token
        assert await queue.dequeue_many(5) == []
        assert visible(running) == [f"{dead}.{retried.attempt_token}.json"]
        assert len(visible(root / "quarantine")) == 4
        assert os.path.exists("/etc/passwd")
    finally:
        await queue.close()


async def test_a_link_in_pending_is_set_aside_and_its_target_untouched(
    root: Path, tmp_path: Path
) -> None:
    omniq = AsyncOmniQ(file_settings(root))
    try:
        good = await omniq.enqueue("task_functions.add", args=[4, 4])
        # A target that holds a valid task: following the link would run it.
        planted = new_record(past(60), args=(100, 100))
        target = tmp_path / "planted.json"
        target.write_text(json.dumps({**planted.to_dict(), "_seq": 1}))
        os.utime(target, (1_000_000, 1_000_000))
        before = target.read_bytes()
        link = root / "pending" / "default" / due_name(planted.id)
        link.symlink_to(target)
        # A queue directory that is a link (to a directory holding a task) is set aside too.
        outside = tmp_path / "outside"
        outside.mkdir()
        (outside / due_name(str(uuid.uuid4()))).write_text(target.read_text())
        (root / "pending" / "evil").symlink_to(outside, target_is_directory=True)
        async with omniq.worker_pool() as workers:
            assert await workers.process_tasks(limit=5) == 1
        assert await omniq.get_result(good) == 8
        assert await omniq.get_task(planted.id) is None
        assert target.read_bytes() == before and target.stat().st_mtime == 1_000_000
        assert len(os.listdir(outside)) == 1 and visible(root / "pending") == ["default"]
        quarantined = [root / "quarantine" / name for name in visible(root / "quarantine")]
        assert len(quarantined) == 2 and all(path.is_symlink() for path in quarantined)
    finally:
        await omniq.close()


async def test_a_linked_queue_directory_of_results_is_set_aside(root: Path, tmp_path: Path) -> None:
    first = AsyncOmniQ(file_settings(root))
    await first.enqueue("task_functions.add", args=[1, 1])
    async with first.worker_pool() as workers:
        await workers.process_tasks(limit=1)
    await first.close()
    completed = root / "done" / "completed"
    outside = tmp_path / "results-elsewhere"
    outside.mkdir()
    for name in os.listdir(completed / "default"):
        os.unlink(completed / "default" / name)
    os.rmdir(completed / "default")
    (completed / "default").symlink_to(outside, target_is_directory=True)
    os.chmod(root / "pending" / "default", 0o777)

    omniq = AsyncOmniQ(file_settings(root))  # open sets the link aside, tightens the mode
    try:
        task_id = await omniq.enqueue("task_functions.add", args=[2, 2])
        async with omniq.worker_pool() as workers:
            assert await workers.process_tasks(limit=1) == 1
        assert await omniq.get_result(task_id) == 4
        assert os.listdir(outside) == []  # no result was written through the link
        assert not (completed / "default").is_symlink()
        assert stat.S_IMODE(os.lstat(root / "pending" / "default").st_mode) == 0o700
    finally:
        await omniq.close()


async def test_one_unreadable_entry_never_stops_a_scan(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue = AsyncTaskQueue(AsyncFileStorage(root), lease_timeout=0.05)
    try:
        ids = [await queue.enqueue("task_functions.add", [i, i]) for i in range(3)]
        await queue.dequeue_many(3)
        await asleep(0.1)
        real_lstat = os.lstat
        victim = ids[1]

        def failing_lstat(path: object, *args: object, **kwargs: object) -> os.stat_result:
            if victim in str(path) and "running" in str(path):
                raise PermissionError(13, "Permission denied", str(path))
            return real_lstat(path, *args, **kwargs)  # type: ignore[arg-type]

        with monkeypatch.context() as patch:
            patch.setattr(os, "lstat", failing_lstat)
            assert await queue.recover_expired() == 2  # the other two, despite the one
        assert await queue.recover_expired() == 1  # and the one once it can be read
    finally:
        await queue.close()
