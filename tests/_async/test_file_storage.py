"""What the file backend promises beyond the contract: its layout, crash safety,
quarantine of garbage, fencing of stale attempts, claims that read few files, and the
migration of a store made by omniq 0.1.0.

These tests build the file store on ``tmp_path`` whatever ``OMNIQ_TEST_BACKEND``
says; the contract suite covers the rest with ``OMNIQ_TEST_BACKEND=file``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import json
import math
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import TESTS_DIR
from filestore import (
    ID_AT,
    PENDING_NAME,
    counting_opens,
    file_settings,
    hidden_files,
    new_record,
    past,
    pending_ids,
    visible,
)

from omniq import AsyncOmniQ, AsyncTaskQueue, StorageError, TaskStatus
from omniq._concurrency import asleep
from omniq.logging import configure, reset
from omniq.records import Transition
from omniq.storage.file import AsyncFileStorage

DIRECTORIES = (
    "",
    "pending",
    "running",
    "done",
    "done/completed",
    "done/failed",
    "done/cancelled",
    "quarantine",
    "keys",
)
V1_FIXTURE = TESTS_DIR / "fixtures" / "v1"


class Crash(Exception):
    """Stands for the process dying at a chosen point."""


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
        task_id = await queue.enqueue("task_functions.add", [1, 2], queue="mail", priority=7)
        for relative in (*DIRECTORIES, "pending/mail"):
            assert os.stat(root / relative).st_mode & 0o777 == 0o700, relative
        assert (root / "layout").read_text() == "2\n"
        assert os.stat(root / "layout").st_mode & 0o777 == 0o600
        (name,) = visible(root / "pending" / "mail")
        match = PENDING_NAME.fullmatch(name)
        assert match is not None and match["id"] == task_id and match["rank"] == "093"
        assert os.stat(root / "pending" / "mail" / name).st_mode & 0o777 == 0o600
        stored = json.loads((root / "pending" / "mail" / name).read_text())
        assert stored["id"] == task_id and stored["status"] == "pending"
        assert (stored["queue"], stored["priority"]) == ("mail", 7)

        _, (task,) = await queue.settle_and_claim((), 1, worker="pool one/é")
        assert task.attempt_token is not None and task.worker == "pool one/é"
        assert visible(root / "pending" / "mail") == []
        running = (
            root / "running" / "mail" / f"{task_id}.{task.attempt_token}~pool%20one%2F%C3%A9.json"
        )
        assert visible(root / "running" / "mail") == [running.name]
        assert task.lease_until is not None
        assert abs(os.stat(running).st_mtime - task.lease_until.timestamp()) < 0.01
        seen = await queue.get_task(task_id)
        assert seen is not None and seen.status == TaskStatus.RUNNING and seen.attempts == 1
        assert seen.worker == "pool one/é"

        assert await queue.complete_task(task_id, 3, task) is True
        assert visible(root / "running" / "mail") == []
        done = root / "done" / "completed" / "mail" / f"{task_id}.json"
        assert os.stat(done).st_mode & 0o777 == 0o600
        finished = await queue.get_task(task_id)
        assert finished is not None and finished.result == 3 and finished.attempts == 1
        assert finished.worker == "pool one/é" and finished.finished_at is not None
        # The file's mtime is the finish time: retention pruning decides by it, unread.
        assert abs(os.stat(done).st_mtime - finished.finished_at.timestamp()) < 1e-5
        assert hidden_files(root) == []  # no temporary or marker is left behind
    finally:
        await queue.close()


async def test_retry_failure_and_cancel_land_where_they_belong(root: Path) -> None:
    queue = AsyncTaskQueue(AsyncFileStorage(root))
    try:
        retried = await queue.enqueue("task_functions.add", [1, 1], max_retries=2)
        (first_name,) = visible(root / "pending" / "default")
        task = await queue.dequeue()
        assert task is not None
        assert await queue.fail_task(retried, "transient", task) is True
        (second_name,) = visible(root / "pending" / "default")
        assert second_name[25:] == first_name[25:]  # same enqueue order, same id
        assert second_name[4:24] > first_name[4:24]  # later eta: the backoff

        failed = await queue.enqueue("task_functions.add", [2, 2], max_retries=1, eta=past(60))
        task = await queue.dequeue()
        assert task is not None and task.id == failed
        assert await queue.fail_task(failed, "fatal", task) is True
        assert visible(root / "done" / "failed" / "default") == [f"{failed}.json"]

        cancelled = await queue.enqueue("task_functions.add", [3, 3])
        assert await queue.cancel(cancelled) is True
        assert visible(root / "done" / "cancelled" / "default") == [f"{cancelled}.json"]
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
    expected = [records[i].id for i in (1, 3, 0, 2, 4)]  # by eta, then enqueue order
    assert pending_ids(root) == expected
    claimed = [r.id for r in await storage.claim(time.time(), time.time() + 30, 10)]
    assert claimed == expected


@pytest.mark.parametrize("eta", ["now", 1900000000.000049])
async def test_a_task_is_due_at_its_exact_eta_never_a_moment_before(
    root: Path, eta: str | float
) -> None:
    # Names hold the eta in microseconds: within its microsecond the exact eta decides.
    # 1900000000.000049: one float below it, times 1e6, rounds up to the microsecond
    # the name holds, so only the record's exact eta can tell that it is not due yet.
    storage = AsyncFileStorage(root, durability="fast")
    record = new_record(past(-60))
    if not isinstance(eta, str):
        record = dataclasses.replace(record, eta=eta, created_at=eta - 1, updated_at=eta - 1)
    await storage.add([record])
    just_before = math.nextafter(record.eta, 0.0)
    assert await storage.claim(just_before, just_before + 30, 1) == []
    assert pending_ids(root) == [record.id] and visible(root / "running" / "default") == []
    (claimed,) = await storage.claim(record.eta, record.eta + 30, 1)
    assert claimed.id == record.id and claimed.attempts == 1


async def test_priority_then_eta_then_order_across_queues(root: Path) -> None:
    storage = AsyncFileStorage(root, durability="fast")
    now = dt.datetime.now(dt.timezone.utc)
    specs = [  # (queue, priority, seconds ago)
        ("a", 0, 30),
        ("b", 5, 1),
        ("a", 5, 2),
        ("c", -3, 60),
        ("b", 0, 30),
        ("a", 100, -3600),  # the highest priority, but not due: never claimed early
        ("c", 5, 2),
    ]
    records = [
        new_record(now - dt.timedelta(seconds=ago), queue=q, priority=p) for q, p, ago in specs
    ]
    await storage.add(records)
    assert pending_ids(root, "a") == [records[i].id for i in (5, 2, 0)]  # names sort as claims
    first = [r.id for r in await storage.claim(time.time(), time.time() + 30, 2, ["b", "c"])]
    assert first == [records[6].id, records[1].id]  # priority 5: the earlier eta first
    rest = [r.id for r in await storage.claim(time.time(), time.time() + 30, 10)]
    assert rest == [records[i].id for i in (2, 0, 4, 3)]
    assert await storage.next_eta(["a"]) == pytest.approx(records[5].eta, abs=1e-5)
    assert await storage.next_eta(["b", "c"]) is None


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

    reader = AsyncFileStorage(root, durability="fast")  # another process: a cold index
    await reader.open()
    with counting_opens(root, monkeypatch) as opened:
        first = await reader.claim(time.time(), time.time() + 30, 1)
        assert [record.id for record in first] == [oldest.id]
        assert len(opened) <= 2, opened
        opened.clear()
        batch_of_four = await reader.claim(time.time(), time.time() + 30, 4)
        assert len(batch_of_four) == 4
        assert len(opened) <= 5, opened


async def test_a_claim_over_queues_and_priorities_opens_only_what_it_claims(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 10,000 pending tasks over 3 queues x 10 priorities, half of them due in an hour.
    writer = AsyncFileStorage(root, durability="fast")
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)
    for queue in ("q0", "q1", "q2"):
        for priority in range(-45, 55, 10):
            batch = [
                new_record(past(5) if i % 2 else later, queue=queue, priority=priority)
                for i in range(333)
            ]
            await writer.add(batch)
    best = new_record(past(1), queue="q1", priority=50)  # the one due task of the top level
    await writer.add([best])

    reader = AsyncFileStorage(root, durability="fast")  # another process: a cold index
    await reader.open()
    with counting_opens(root, monkeypatch) as opened:
        first = await reader.claim(time.time(), time.time() + 30, 1, ["q1", "q2"])
        assert [record.id for record in first] == [best.id]
        assert len(opened) == 1, opened  # the file it won, nothing else
        opened.clear()
        batch = await reader.claim(time.time(), time.time() + 30, 8)
        assert len(opened) == 8, opened
        assert [record.priority for record in batch] == [45] * 8
        assert all(record.eta <= time.time() for record in batch)
        opened.clear()
        counts = await reader.count_by_queue()
        assert opened == []  # counted from names alone
    assert sum(counts["q1"].values()) == 3331
    assert counts["q1"]["running"] == 1 + sum(r.queue == "q1" for r in batch)


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
        assert hidden_files(root) == []  # not even a hidden temporary
        assert pending_ids(root) == []
        assert await omniq.queue.dequeue() is None
        task_id = await omniq.enqueue("task_functions.add", args=[2, 2])
        assert pending_ids(root) == [task_id]
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
    assert visible(root / "running" / "default") == []
    assert any(".intent~" in name for name in hidden_files(root))

    fresh = AsyncTaskQueue(AsyncFileStorage(root))  # a restarted process
    try:
        done = await fresh.get_task(task_id)
        assert done is not None and done.status == TaskStatus.COMPLETED and done.result == 5
        (successor,) = pending_ids(root)  # the interval task's next run
        assert hidden_files(root) == []
        assert successor != task_id
    finally:
        await fresh.close()
        await queue.close()


async def test_a_state_advance_cut_short_by_a_crash_is_all_or_nothing(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = AsyncFileStorage(root)
    await storage.put_state("schedule", "nightly report", '{"every": 86400}', 1.0)
    assert visible(root / "state" / "schedule") == ["nightly%20report.json"]
    real_rename = os.rename

    def dies_after_the_commit(src: Any, dst: Any) -> None:
        if Path(src).name.endswith(".tmp"):
            raise Crash()
        real_rename(src, dst)

    with monkeypatch.context() as patch:
        patch.setattr(os, "rename", dies_after_the_commit)
        with pytest.raises(Crash):
            await storage.advance_state("schedule", "nightly report", 10.0, [new_record()])
    fresh = AsyncFileStorage(root)  # a restarted process: the commit is rolled forward
    record = await fresh.get_state("schedule", "nightly report")
    assert record is not None and record.mark == 10.0 and record.data == '{"every": 86400}'
    assert len(pending_ids(root)) == 1 and hidden_files(root) == []
    assert not await fresh.advance_state("schedule", "nightly report", 10.0, [new_record()])

    def broken_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    with monkeypatch.context() as patch:  # dies before the commit: nothing changes
        patch.setattr(os, "fsync", broken_fsync)
        with pytest.raises(OSError):
            await fresh.advance_state("schedule", "nightly report", 20.0, [new_record()])
    record = await fresh.get_state("schedule", "nightly report")
    assert record is not None and record.mark == 10.0
    assert len(pending_ids(root)) == 1 and hidden_files(root) == []


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
        orphan = root / "running" / "default" / ".0123456789abcdef-0.tmp"  # its task has no file
        orphan.write_text(json.dumps({**record.to_dict(), "_seq": 1}))
        running = await queue.storage.get(held)
        assert running is not None
        live = root / "running" / "default" / ".fedcba9876543210-0.tmp"  # its task still runs
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
        assert visible(root / "running" / "default") == [f"{task_id}.{current.attempt_token}.json"]

        assert await queue.heartbeat([current]) == []
        assert await queue.complete_task(task_id, 3, current) is True
        done = await queue.get_task(task_id)
        assert done is not None and done.result == 3 and done.attempts == 2
        assert visible(root / "running" / "default") == []
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
    ids = set(pending_ids(root))
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
        pending = root / "pending" / "default"

        def due_name(task_id: str) -> Path:
            return pending / f"100-{1:020d}-{1:020d}-{task_id}.json"

        wrong_id = new_record().to_dict()
        garbage = {
            pending / "garbage.txt": b"hello",
            root / "pending" / "not a queue": b"hello",  # pending/ holds queue directories
            root / "pending" / "stray.json": b"{}",
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
        assert visible(pending) == [] and visible(root / "running" / "default") == []
        assert visible(root / "pending") == ["default"]
        assert len(os.listdir(root / "quarantine")) == len(garbage)
        log = logged.getvalue()
        assert str(pending / "garbage.txt") in log
        for path in garbage:
            task_id = path.name[ID_AT:-5]
            assert path.name in log or task_id in log, path
    finally:
        await omniq.close()


async def test_garbage_in_running_is_quarantined_and_the_worker_goes_on(
    root: Path, logged: io.StringIO
) -> None:
    omniq = AsyncOmniQ(file_settings(root))
    try:
        good = await omniq.enqueue("task_functions.add", args=[4, 4])
        (root / "running" / "top-junk").write_bytes(b"\x00")  # running/ holds queue directories
        running = root / "running" / "default"
        running.mkdir()
        junk = running / "junk"
        junk.write_bytes(b"\x00\x01")
        corrupt = running / f"{uuid.uuid4()}.{uuid.uuid4().hex}.json"
        corrupt.write_text("{not json")
        os.utime(corrupt, (time.time() - 60, time.time() - 60))  # its "lease" ran out
        async with omniq.worker_pool() as workers:  # start() recovers expired leases
            assert await workers.process_tasks(limit=5) == 1
        assert await omniq.get_result(good) == 8
        assert visible(running) == [] and visible(root / "running") == ["default"]
        assert len(os.listdir(root / "quarantine")) == 3
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
    (done / "completed" / "stray.txt").write_text("{}")  # a status holds queue directories
    (done / "completed" / "default" / "notes.txt").write_text("hello")
    (done / "completed" / "default" / f"{finished}.json").write_text('{"truncated": ')

    omniq = AsyncOmniQ(file_settings(root))  # open sets stray names aside
    try:
        good = await omniq.enqueue("task_functions.add", args=[5, 5])
        async with omniq.worker_pool() as workers:
            assert await workers.process_tasks(limit=5) == 1
        assert await omniq.get_result(good) == 10
        assert await omniq.get_task(finished) is None  # its file was unreadable: set aside
        assert visible(done) == ["cancelled", "completed", "failed"]
        assert visible(done / "completed") == ["default"]
        assert visible(done / "completed" / "default") == [f"{good}.json"]
        assert len(os.listdir(root / "quarantine")) == 4
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


# ---------------------------------------------------------------------- workers and history


async def test_the_worker_is_in_the_running_name_and_in_the_lost_attempt(root: Path) -> None:
    queue = AsyncTaskQueue(AsyncFileStorage(root), lease_timeout=0.05)
    try:
        task_id = await queue.enqueue("task_functions.add", [1, 2], max_retries=3)
        long_name = "worker-" + "é" * 100  # 1,400 bytes once percent-encoded: cut to fit
        _, (task,) = await queue.settle_and_claim((), 1, worker=long_name)
        (running,) = visible(root / "running" / "default")
        assert len(running.encode()) <= 255 and running.endswith("%E2%80%A6.json")
        seen = await queue.get_task(task_id)
        assert seen is not None and seen.worker is not None
        assert seen.worker.endswith("…") and long_name.startswith(seen.worker[:-1])
        await asleep(0.1)
        assert await queue.recover_expired() == 1  # the worker died: its lease ran out
        again = await queue.get_task(task_id)
        assert again is not None and again.status == TaskStatus.PENDING
        (lost,) = again.attempts_history
        assert (lost.attempt, lost.outcome, lost.worker) == (1, "lost", seen.worker)
        _, (retried,) = await queue.settle_and_claim((), 1, worker="second")
        assert await queue.complete_task(task_id, 3, retried) is True
        done = await queue.get_task(task_id)
        assert done is not None and done.worker == "second"
        assert [entry.outcome for entry in done.attempts_history] == ["lost", "completed"]
        assert task.attempt_token != retried.attempt_token
    finally:
        await queue.close()


# ---------------------------------------------------------------------- migration from 0.1.0


def copy_v1_store(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """A copy of the file store omniq 0.1.0 made (tests/fixtures/v1), and its task ids."""
    target = tmp_path / "v1-store"
    shutil.copytree(V1_FIXTURE / "files", target)
    manifest = json.loads((V1_FIXTURE / "manifest.json").read_text())["files"]
    return target, manifest


async def test_a_v1_store_is_migrated_in_place_and_its_tasks_run(tmp_path: Path) -> None:
    root, ids = copy_v1_store(tmp_path)
    assert not (root / "layout").exists() and len(visible(root / "pending")) == 4
    omniq = AsyncOmniQ(file_settings(root, retention=None))
    try:
        await omniq.open()
        assert (root / "layout").read_text() == "2\n"
        assert visible(root / "pending") == ["default"]  # v1 had one queue
        assert sorted(pending_ids(root)) == sorted([*ids["pending"], ids["later"]])
        assert all(name.startswith("100-") for name in visible(root / "pending" / "default"))
        for status in ("completed", "failed", "cancelled"):
            assert visible(root / "done" / status) == ["default"]
            assert visible(root / "done" / status / "default") == [f"{ids[status]}.json"]

        completed = await omniq.get_task(ids["completed"])
        assert completed is not None and completed["status"] == "completed"
        assert (completed["result"], completed["queue"], completed["priority"]) == (
            42,
            "default",
            0,
        )
        assert completed["unique_key"] is None and completed["attempts_history"] == []
        assert await omniq.get_result(ids["completed"]) == 42
        failed = await omniq.get_task(ids["failed"])
        assert failed is not None and failed["status"] == "failed"
        assert failed["error"] is not None and "always fails" in failed["error"].message
        cancelled = await omniq.get_task(ids["cancelled"])
        assert cancelled is not None and cancelled["status"] == "cancelled"
        stats = await omniq.stats()
        assert stats["queues"] == {
            "default": {"pending": 4, "running": 0, "completed": 1, "failed": 1, "cancelled": 1}
        }

        async with omniq.worker_pool(concurrency=1) as workers:
            assert await workers.process_tasks(limit=10) == 3  # "later" is due in 2030
        assert [await omniq.get_result(task_id) for task_id in ids["pending"]] == [100, 101, 102]
        later = await omniq.get_task(ids["later"])
        assert later is not None and later["status"] == "pending"
        assert later["eta"] == dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)
        assert await omniq.retry(ids["failed"]) is True  # a v1 task is a task like any other
        # A 0.1.0 worker still running writes its results in the old place: adopted.
        done = root / "done" / "completed" / "default" / f"{ids['completed']}.json"
        os.rename(done, root / "done" / "completed" / done.name)
        assert await omniq.get_result(ids["completed"]) == 42
        assert done.exists()
        assert visible(root / "quarantine") == [] and hidden_files(root) == []
    finally:
        await omniq.close()


async def test_processes_opening_a_v1_store_at_once_migrate_it_once(tmp_path: Path) -> None:
    root, ids = copy_v1_store(tmp_path)
    opener = (
        "import sys; from omniq.storage.file import FileStorage; "
        "store = FileStorage(sys.argv[1]); store.open(); print(store.count_by_status())"
    )
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", opener, str(root)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    for process in processes:
        stdout, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr
        assert "'pending': 4" in stdout and "'completed': 1" in stdout, stdout
    assert sorted(pending_ids(root)) == sorted([*ids["pending"], ids["later"]])
    assert visible(root / "quarantine") == [] and hidden_files(root) == []
    storage = AsyncFileStorage(root)
    assert await storage.count_by_status() == {
        "pending": 4,
        "running": 0,
        "completed": 1,
        "failed": 1,
        "cancelled": 1,
    }


async def test_a_store_of_a_newer_or_unknown_layout_is_refused(root: Path) -> None:
    await AsyncFileStorage(root).open()
    (root / "layout").write_text("3\n")
    with pytest.raises(StorageError, match="newer than this omniq"):
        await AsyncFileStorage(root).open()
    (root / "layout").write_text("two\n")
    with pytest.raises(StorageError, match="unreadable"):
        await AsyncFileStorage(root).open()
