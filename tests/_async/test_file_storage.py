"""What the file backend promises beyond the contract: its layout, crash safety,
quarantine of garbage, fencing of stale attempts, and claims that read few files.

These tests build the file store on ``tmp_path`` whatever ``OMNIQ_TEST_BACKEND``
says; the contract suite covers the rest with ``OMNIQ_TEST_BACKEND=file``.
"""

from __future__ import annotations

import builtins
import datetime as dt
import io
import json
import os
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from omniq import AsyncOmniQ, AsyncTaskQueue, Settings, StorageError, TaskStatus
from omniq._concurrency import asleep
from omniq.logging import configure, reset
from omniq.models import create_task
from omniq.records import TaskRecord, Transition, record_from_task
from omniq.serialization import DEFAULT_SERIALIZER
from omniq.storage.file import AsyncFileStorage

PENDING_NAME = re.compile(r"\d{20}-\d{20}-(?P<id>[0-9a-f-]{36})\.json")
DIRECTORIES = (
    "",
    "pending",
    "running",
    "done",
    "done/completed",
    "done/failed",
    "done/cancelled",
    "quarantine",
)


class Crash(Exception):
    """Stands for the process dying at a chosen point."""


def new_record(eta: dt.datetime | None = None, args: tuple[int, int] = (1, 2)) -> TaskRecord:
    task = create_task("task_functions.add", list(args), {}, eta=eta, max_retries=3)
    return record_from_task(task, DEFAULT_SERIALIZER)


def past(seconds: float) -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=seconds)


def visible(directory: Path) -> list[str]:
    return sorted(name for name in os.listdir(directory) if not name.startswith("."))


def hidden_files(root: Path) -> list[str]:
    return [
        os.path.join(folder, name)
        for folder, _, names in os.walk(root)
        for name in names
        if name.startswith(".")
    ]


def file_settings(root: Path, **overrides: Any) -> Settings:
    return Settings(backend="file", base_dir=root, poll_interval=0.05, **overrides)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def logged() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    configure(level="INFO", mode="PROD", sink=buffer)
    yield buffer
    reset()


# ---------------------------------------------------------------------- layout


async def test_a_task_file_moves_through_the_layout(root: Path) -> None:
    queue = AsyncTaskQueue(AsyncFileStorage(root))
    try:
        task_id = await queue.enqueue("task_functions.add", [1, 2])
        for relative in DIRECTORIES:
            assert os.stat(root / relative).st_mode & 0o777 == 0o700, relative
        (name,) = visible(root / "pending")
        match = PENDING_NAME.fullmatch(name)
        assert match is not None and match["id"] == task_id
        assert os.stat(root / "pending" / name).st_mode & 0o777 == 0o600
        stored = json.loads((root / "pending" / name).read_text())
        assert stored["id"] == task_id and stored["status"] == "pending"

        task = await queue.dequeue()
        assert task is not None and task.attempt_token is not None
        assert visible(root / "pending") == []
        running = root / "running" / f"{task_id}.{task.attempt_token}.json"
        assert visible(root / "running") == [running.name]
        assert task.lease_until is not None
        assert abs(os.stat(running).st_mtime - task.lease_until.timestamp()) < 0.01
        seen = await queue.get_task(task_id)
        assert seen is not None and seen.status == TaskStatus.RUNNING and seen.attempts == 1

        assert await queue.complete_task(task_id, 3, task) is True
        assert visible(root / "running") == []
        done = root / "done" / "completed" / f"{task_id}.json"
        assert os.stat(done).st_mode & 0o777 == 0o600
        finished = await queue.get_task(task_id)
        assert finished is not None and finished.result == 3 and finished.attempts == 1
        assert hidden_files(root) == []  # no temporary or marker is left behind
    finally:
        await queue.close()


async def test_retry_failure_and_cancel_land_where_they_belong(root: Path) -> None:
    queue = AsyncTaskQueue(AsyncFileStorage(root))
    try:
        retried = await queue.enqueue("task_functions.add", [1, 1], max_retries=2)
        (first_name,) = visible(root / "pending")
        task = await queue.dequeue()
        assert task is not None
        assert await queue.fail_task(retried, "transient", task) is True
        (second_name,) = visible(root / "pending")
        assert second_name[21:] == first_name[21:]  # same enqueue order, same id
        assert second_name[:20] > first_name[:20]  # later eta: the backoff

        failed = await queue.enqueue("task_functions.add", [2, 2], max_retries=1, eta=past(60))
        task = await queue.dequeue()
        assert task is not None and task.id == failed
        assert await queue.fail_task(failed, "fatal", task) is True
        assert visible(root / "done" / "failed") == [f"{failed}.json"]

        cancelled = await queue.enqueue("task_functions.add", [3, 3])
        assert await queue.cancel(cancelled) is True
        assert visible(root / "done" / "cancelled") == [f"{cancelled}.json"]
        assert await queue.cancel(cancelled) is False
        states = {i: (await queue.get_task(i)) for i in (retried, failed, cancelled)}
        assert {i: t.status for i, t in states.items() if t is not None} == {
            retried: TaskStatus.PENDING,
            failed: TaskStatus.FAILED,
            cancelled: TaskStatus.CANCELLED,
        }
        assert hidden_files(root) == []
    finally:
        await queue.close()


async def test_file_names_sort_in_claim_order(root: Path) -> None:
    storage = AsyncFileStorage(root, durability="fast")
    now = dt.datetime.now(dt.timezone.utc)
    records = [new_record(now - dt.timedelta(seconds=s)) for s in (1, 30, 1, 20, 1)]
    await storage.add(records)
    by_name = [name[42:-5] for name in sorted(os.listdir(root / "pending"))]
    claimed = [r.id for r in await storage.claim(time.time(), time.time() + 30, 10)]
    expected = [records[i].id for i in (1, 3, 0, 2, 4)]  # by eta, then enqueue order
    assert by_name == expected
    assert claimed == expected


# ---------------------------------------------------------------------- few files per claim


async def test_a_claim_among_10000_pending_tasks_opens_only_what_it_claims(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = AsyncFileStorage(root, durability="fast")
    for _ in range(10):
        await writer.add([new_record(past(5)) for _ in range(1000)])
    oldest = new_record(past(3600))
    await writer.add([oldest])
    await writer.add([new_record(past(5)) for _ in range(10)])

    opened: list[str] = []
    real_open, real_os_open = builtins.open, os.open

    def counting_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        if str(file).startswith(str(root)):
            opened.append(str(file))
        return real_open(file, *args, **kwargs)

    def counting_os_open(path: Any, *args: Any, **kwargs: Any) -> int:
        if str(path).startswith(str(root)):
            opened.append(str(path))
        return real_os_open(path, *args, **kwargs)

    reader = AsyncFileStorage(root, durability="fast")  # another process: a cold index
    await reader.open()
    monkeypatch.setattr(builtins, "open", counting_open)
    monkeypatch.setattr(os, "open", counting_os_open)
    first = await reader.claim(time.time(), time.time() + 30, 1)
    assert [record.id for record in first] == [oldest.id]
    assert len(opened) <= 2, opened
    opened.clear()
    batch_of_four = await reader.claim(time.time(), time.time() + 30, 4)
    assert len(batch_of_four) == 4
    assert len(opened) <= 5, opened


# ---------------------------------------------------------------------- crash safety


async def test_a_write_that_fails_half_way_leaves_no_file(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    omniq = AsyncOmniQ(file_settings(root))
    try:
        await omniq.open()

        def broken_fsync(fd: int) -> None:
            raise OSError(5, "Input/output error")

        with monkeypatch.context() as patch:
            patch.setattr(os, "fsync", broken_fsync)
            with pytest.raises(StorageError):
                await omniq.enqueue("task_functions.add", args=[1, 2])
            with pytest.raises(StorageError):
                await omniq.enqueue_many(
                    {"func_path": "task_functions.add", "args": [i, i]} for i in range(3)
                )
        assert os.listdir(root / "pending") == []  # not even a hidden temporary
        assert await omniq.queue.dequeue() is None
        task_id = await omniq.enqueue("task_functions.add", args=[2, 2])
        assert visible(root / "pending")[0].endswith(f"-{task_id}.json")
    finally:
        await omniq.close()


async def test_a_change_committed_before_a_crash_is_rolled_forward(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue = AsyncTaskQueue(AsyncFileStorage(root))
    task_id = await queue.enqueue("task_functions.add", [2, 3], interval=3600)
    task = await queue.dequeue()
    assert task is not None
    real_rename = os.rename

    def dies_after_the_commit(src: Any, dst: Any) -> None:
        if Path(src).name.endswith(".tmp"):  # placing the new files: the process dies here
            raise Crash()
        real_rename(src, dst)

    with monkeypatch.context() as patch:
        patch.setattr(os, "rename", dies_after_the_commit)
        with pytest.raises(Crash):
            await queue.complete_task(task_id, 5, task)
    # The running file is gone (fenced), the outcome and the successor wait as a commit.
    assert visible(root / "running") == []
    assert any(".intent~" in name for name in hidden_files(root))

    fresh = AsyncTaskQueue(AsyncFileStorage(root))  # a restarted process
    try:
        done = await fresh.get_task(task_id)
        assert done is not None and done.status == TaskStatus.COMPLETED and done.result == 5
        (successor_name,) = visible(root / "pending")  # the interval task's next run
        assert hidden_files(root) == []
        assert not successor_name.endswith(f"-{task_id}.json")
    finally:
        await fresh.close()
        await queue.close()


async def test_a_live_process_finishes_a_commit_it_finds(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = AsyncFileStorage(root)
    queue = AsyncTaskQueue(storage)
    try:
        task_id = await queue.enqueue("task_functions.add", [1, 1])
        task = await queue.dequeue()
        assert task is not None
        real_rename = os.rename

        def dies_after_the_commit(src: Any, dst: Any) -> None:
            if Path(src).name.endswith(".tmp"):
                raise Crash()
            real_rename(src, dst)

        with monkeypatch.context() as patch:
            patch.setattr(os, "rename", dies_after_the_commit)
            with pytest.raises(Crash):
                await queue.complete_task(task_id, 2, task)
        other = AsyncTaskQueue(storage)  # same open storage: no sweep at open
        found = await other.get_task(task_id)
        assert found is not None and found.status == TaskStatus.COMPLETED
        assert hidden_files(root) == []
    finally:
        await queue.close()


async def test_temporaries_of_moves_that_cannot_commit_are_removed(root: Path) -> None:
    queue = AsyncTaskQueue(AsyncFileStorage(root))
    try:
        held = await queue.enqueue("task_functions.add", [1, 1])
        (task,) = await queue.dequeue_many(1)
        record = new_record()
        orphan = root / "running" / ".0123456789abcdef-0.tmp"  # its task holds no file here
        orphan.write_text(json.dumps({**record.to_dict(), "_seq": 1}))
        running = await queue.storage.get(held)
        assert running is not None
        live = root / "running" / ".fedcba9876543210-0.tmp"  # its task is still running
        live.write_text(json.dumps({**running.to_dict(), "_seq": 1}))
        assert await queue.recover_expired() == 0
        assert not orphan.exists()
        assert live.exists()
        assert await queue.complete_task(held, 2, task) is True
        await queue.recover_expired()
        assert hidden_files(root) == []
    finally:
        await queue.close()


# ---------------------------------------------------------------------- fencing


async def test_a_stale_attempt_cannot_touch_the_task(root: Path) -> None:
    queue = AsyncTaskQueue(AsyncFileStorage(root), lease_timeout=0.05)
    try:
        task_id = await queue.enqueue("task_functions.add", [1, 2])
        (stale,) = await queue.dequeue_many(1)
        await asleep(0.1)
        assert await queue.recover_expired() == 1
        (current,) = await queue.dequeue_many(1, lease_timeout=30)
        assert current.id == task_id and current.attempts == 2
        assert current.attempt_token != stale.attempt_token

        assert await queue.heartbeat([stale]) == [task_id]
        assert await queue.complete_task(task_id, 99, stale) is False
        assert await queue.fail_task(task_id, "late", stale) is False
        assert await queue.release(stale) is False
        assert visible(root / "running") == [f"{task_id}.{current.attempt_token}.json"]

        assert await queue.heartbeat([current]) == []
        assert await queue.complete_task(task_id, 3, current) is True
        done = await queue.get_task(task_id)
        assert done is not None and done.result == 3 and done.attempts == 2
        assert visible(root / "running") == []
    finally:
        await queue.close()


async def test_release_puts_the_attempt_back_without_spending_it(root: Path) -> None:
    queue = AsyncTaskQueue(AsyncFileStorage(root))
    try:
        task_id = await queue.enqueue("task_functions.add", [1, 2], eta=past(10))
        (task,) = await queue.dequeue_many(1)
        assert await queue.release(task) is True
        again = await queue.get_task(task_id)
        assert again is not None and again.status == TaskStatus.PENDING and again.attempts == 0
        (retaken,) = await queue.dequeue_many(1)
        assert retaken.id == task_id and retaken.attempts == 1
    finally:
        await queue.close()


async def test_two_stores_on_one_directory_share_the_work(root: Path) -> None:
    first, second = AsyncFileStorage(root), AsyncFileStorage(root)
    await first.add([new_record(past(1)) for _ in range(50)])
    await second.open()  # lists pending/ now; the next adds come from the other store
    late = [new_record(past(1)) for _ in range(30)]
    await first.add(late)
    ids = {name[42:-5] for name in visible(root / "pending")}
    claimed: list[str] = []
    while True:
        got = [r.id for r in await first.claim(time.time(), time.time() + 30, 7)]
        got += [r.id for r in await second.claim(time.time(), time.time() + 30, 7)]
        if not got:
            break
        claimed += got
    assert sorted(claimed) == sorted(ids)  # each exactly once, none left behind
    assert await second.get(late[0].id) is not None


# ---------------------------------------------------------------------- garbage


async def test_garbage_in_pending_is_quarantined_and_the_worker_goes_on(
    root: Path, logged: io.StringIO
) -> None:
    omniq = AsyncOmniQ(file_settings(root))
    try:
        good = [await omniq.enqueue("task_functions.add", args=[i, i]) for i in range(2)]
        pending = root / "pending"

        def due_name(task_id: str) -> Path:
            return pending / f"{1:020d}-{1:020d}-{task_id}.json"

        wrong_id = new_record().to_dict()
        garbage = {
            pending / "garbage.txt": b"hello",
            due_name(str(uuid.uuid4())): os.urandom(64),
            due_name(str(uuid.uuid4())): b'{"id": "x", "func_path": "a.b", "payl',
            due_name(str(uuid.uuid4())): json.dumps({"id": 1, "status": 5}).encode(),
            due_name(str(uuid.uuid4())): json.dumps(wrong_id).encode(),
        }
        for path, data in garbage.items():
            path.write_bytes(data)
        async with omniq.worker_pool() as workers:
            assert await workers.process_tasks(limit=10) == 2
        assert [await omniq.get_result(task_id) for task_id in good] == [0, 2]
        assert visible(pending) == [] and visible(root / "running") == []
        assert len(os.listdir(root / "quarantine")) == len(garbage)
        log = logged.getvalue()
        assert str(pending / "garbage.txt") in log
        for path in garbage:
            task_id = path.name[42:-5]
            assert path.name in log or task_id in log, path
    finally:
        await omniq.close()


async def test_garbage_in_running_is_quarantined_and_the_worker_goes_on(
    root: Path, logged: io.StringIO
) -> None:
    omniq = AsyncOmniQ(file_settings(root))
    try:
        good = await omniq.enqueue("task_functions.add", args=[4, 4])
        running = root / "running"
        junk = running / "junk"
        junk.write_bytes(b"\x00\x01")
        corrupt = running / f"{uuid.uuid4()}.{uuid.uuid4().hex}.json"
        corrupt.write_text("{not json")
        os.utime(corrupt, (time.time() - 60, time.time() - 60))  # its "lease" ran out
        async with omniq.worker_pool() as workers:  # start() recovers expired leases
            assert await workers.process_tasks(limit=5) == 1
        assert await omniq.get_result(good) == 8
        assert visible(running) == []
        assert len(os.listdir(root / "quarantine")) == 2
        assert str(junk) in logged.getvalue() and str(corrupt) in logged.getvalue()
    finally:
        await omniq.close()


async def test_garbage_in_done_is_quarantined_and_the_worker_goes_on(
    root: Path, logged: io.StringIO
) -> None:
    first = AsyncOmniQ(file_settings(root))
    finished = await first.enqueue("task_functions.add", args=[1, 1])
    async with first.worker_pool() as workers:
        await workers.process_tasks(limit=1)
    await first.close()
    done = root / "done"
    (done / "stray.bin").write_bytes(b"\xff")
    (done / "completed" / "notes.txt").write_text("hello")
    (done / "completed" / f"{finished}.json").write_text('{"truncated": ')

    omniq = AsyncOmniQ(file_settings(root))  # open sets stray names aside
    try:
        good = await omniq.enqueue("task_functions.add", args=[5, 5])
        async with omniq.worker_pool() as workers:
            assert await workers.process_tasks(limit=5) == 1
        assert await omniq.get_result(good) == 10
        assert await omniq.get_task(finished) is None  # its file was unreadable: set aside
        assert visible(done) == ["cancelled", "completed", "failed"]
        assert visible(done / "completed") == [f"{good}.json"]
        assert len(os.listdir(root / "quarantine")) == 3
        log = logged.getvalue()
        assert str(done / "stray.bin") in log and f"{finished}.json" in log
    finally:
        await omniq.close()


# ---------------------------------------------------------------------- settings and inputs


async def test_durability_full_fsyncs_and_fast_does_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        calls.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    counts = {}
    for durability in ("full", "fast"):
        calls.clear()
        omniq = AsyncOmniQ(file_settings(tmp_path / durability, durability=durability))
        try:
            task_id = await omniq.enqueue("task_functions.add", args=[1, 2])
            async with omniq.worker_pool() as workers:
                await workers.process_tasks(limit=1)
            assert await omniq.get_result(task_id) == 3
        finally:
            await omniq.close()
        counts[durability] = len(calls)
    assert counts["full"] > 0
    assert counts["fast"] == 0
    assert repr(AsyncFileStorage(tmp_path)).endswith(f"({str(tmp_path)!r})")
    with pytest.raises(ValueError, match="durability"):
        AsyncFileStorage(tmp_path, durability="sometimes")


async def test_ids_that_are_not_file_names_are_refused(root: Path) -> None:
    storage = AsyncFileStorage(root)
    bad = new_record()
    bad.id = "../../etc/passwd"
    with pytest.raises(ValueError, match="file name"):
        await storage.add([bad])
    assert await storage.get("../../etc/passwd") is None
    assert await storage.cancel("../x", time.time()) is False
    assert await storage.heartbeat([("../x", "0" * 32)], time.time()) == ["../x"]
    assert await storage.finish("x", "not-a-token", _completed()) is False


def _completed() -> Transition:
    return Transition(status="completed", now=time.time(), result="1")


async def test_next_eta_counts_and_listing(root: Path) -> None:
    storage = AsyncFileStorage(root)
    later = new_record(dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1))
    sooner = new_record(past(10))
    await storage.add([later, sooner])
    eta = await storage.next_eta()
    assert eta is not None and abs(eta - sooner.eta) < 1e-5
    (claimed,) = await storage.claim(time.time(), time.time() + 30, 5)
    assert claimed.id == sooner.id
    assert await storage.finish(claimed.id, claimed.attempt_token or "", _completed())
    counts = await storage.count_by_status()
    assert counts == {"pending": 1, "running": 0, "completed": 1, "failed": 0, "cancelled": 0}
    listed = await storage.list_tasks(None, 10)
    assert [record.id for record in listed] == [sooner.id, later.id]  # last changed first
    assert [record.id for record in await storage.list_tasks("pending", 10)] == [later.id]
    assert await storage.list_tasks("completed", 10, offset=1) == []


async def test_requeue_and_purge(root: Path) -> None:
    storage = AsyncFileStorage(root)
    record = new_record(past(1))
    await storage.add([record])
    assert await storage.cancel(record.id, time.time()) is True
    assert await storage.requeue(record.id, time.time()) is True
    back = await storage.get(record.id)
    assert back is not None and back.status == "pending" and back.attempts == 0
    assert await storage.requeue(record.id, time.time()) is False  # pending: nothing to do
    assert await storage.cancel(record.id, time.time()) is True
    assert await storage.purge(time.time() - 3600, ["cancelled"]) == 0  # too recent
    assert await storage.purge(time.time() + 1, ["pending", "running"]) == 0
    assert await storage.purge(time.time() + 1, ["cancelled", "completed"]) == 1
    assert await storage.get(record.id) is None
