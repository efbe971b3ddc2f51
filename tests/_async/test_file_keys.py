"""Unique keys on the file backend: one key file per key held, settled on disk.

While a task with a ``unique_key`` is pending or running, ``keys/{sha256(key)}``
names it; an enqueue with that key stores nothing and returns the holder's id,
across threads and OS processes. A key file whose task is final or gone (a crash
in between) is stale and taken over; one whose add is in flight (locked) stands.
These tests build the file store on ``tmp_path`` whatever ``OMNIQ_TEST_BACKEND`` says.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from filestore import file_settings, new_record, past, pending_ids, visible
from processes import wait_until

from omniq import AsyncOmniQ, AsyncTaskQueue
from omniq._concurrency import ajoin, aspawn
from omniq._filestore import keys as key_files
from omniq.records import TaskRecord, Transition
from omniq.storage.file import AsyncFileStorage

try:
    import fcntl
except ImportError:  # pragma: no cover - POSIX only
    fcntl = None  # type: ignore[assignment]


def key_file(root: Path, key: str) -> Path:
    return root / "keys" / hashlib.sha256(key.encode()).hexdigest()


def all_exist(paths: list[Path]) -> bool:
    return all(path.exists() for path in paths)


def holder_of(root: Path, key: str) -> str:
    return str(json.loads(key_file(root, key).read_text())["id"])


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "store"


async def test_a_key_file_names_the_task_while_it_is_active(root: Path) -> None:
    omniq = AsyncOmniQ(file_settings(root, retention=None))
    try:
        first = await omniq.enqueue("task_functions.add", args=[1, 2], unique_key="report:42")
        assert holder_of(root, "report:42") == first
        assert os.stat(key_file(root, "report:42")).st_mode & 0o777 == 0o600
        again = await omniq.enqueue("task_functions.add", args=[9, 9], unique_key="report:42")
        assert again == first and pending_ids(root) == [first]
        ids = await omniq.enqueue_many(
            [
                {"func_path": "task_functions.add", "args": [0, 1], "unique_key": "report:42"},
                {"func_path": "task_functions.add", "args": [0, 2], "unique_key": "other"},
                {"func_path": "task_functions.add", "args": [0, 3], "unique_key": "other"},
            ]
        )
        assert ids[0] == first and ids[1] == ids[2] != first  # the first with a key wins
        assert sorted(visible(root / "keys")) == sorted(
            key_file(root, key).name for key in ("report:42", "other")
        )
        async with omniq.worker_pool() as workers:
            assert await workers.process_tasks(limit=5) == 2
        assert visible(root / "keys") == []  # both finished: the keys are free again
        fresh = await omniq.enqueue("task_functions.add", args=[1, 2], unique_key="report:42")
        assert fresh != first and holder_of(root, "report:42") == fresh
        assert await omniq.cancel(fresh) is True
        assert visible(root / "keys") == []
    finally:
        await omniq.close()


async def test_a_key_left_by_a_crash_is_taken_over(root: Path) -> None:
    storage = AsyncFileStorage(root)
    await storage.open()
    (finished,) = await storage.add([new_record(past(1), unique_key="left")])
    (claimed,) = await storage.claim(time.time(), time.time() + 30, 1)
    completed = Transition(status="completed", now=time.time(), result="3")
    assert await storage.finish(claimed.id, claimed.attempt_token or "", completed)
    assert visible(root / "keys") == []
    # What a crash between the finish and the removal of its key leaves behind; then
    # the key of a task never published (its add died), and a torn key file.
    key_file(root, "left").write_text(json.dumps({"id": finished, "queue": "default"}))
    second = new_record(past(1), unique_key="left")
    assert await storage.add([second]) == [second.id]
    assert holder_of(root, "left") == second.id
    never = str(uuid.uuid4())
    key_file(root, "ghost").write_text(json.dumps({"id": never, "queue": "default"}))
    third = new_record(past(1), unique_key="ghost")
    assert await storage.add([third]) == [third.id]
    key_file(root, "junk").write_text("not json")
    fourth = new_record(past(1), unique_key="junk")
    assert await storage.add([fourth]) == [fourth.id]
    assert holder_of(root, "junk") == fourth.id
    assert visible(root / "keys") == sorted(
        key_file(root, k).name for k in ("left", "ghost", "junk")
    )


@pytest.mark.skipif(fcntl is None, reason="flock is POSIX")
async def test_a_key_whose_add_is_in_flight_stands(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(key_files, "_LOCK_WAIT", 0.2)
    storage = AsyncFileStorage(root)
    await storage.open()
    in_flight = str(uuid.uuid4())  # its add has taken the key, its file is not written yet
    path = key_file(root, "busy")
    path.write_text(json.dumps({"id": in_flight, "queue": "default"}))
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        record = new_record(past(1), unique_key="busy")
        assert await storage.add([record]) == [in_flight]
    finally:
        os.close(fd)  # the add "died": its key is stale now
    retried = new_record(past(1), unique_key="busy")
    assert await storage.add([retried]) == [retried.id]
    assert holder_of(root, "busy") == retried.id


async def test_threads_racing_for_one_key_store_one_task(root: Path) -> None:
    storage = AsyncFileStorage(root, durability="fast")
    await storage.open()
    results: list[list[str]] = []

    async def add_one(record: TaskRecord) -> None:
        results.append(await storage.add([record]))

    for round_ in range(5):
        records = [new_record(past(1), unique_key=f"race-{round_}") for _ in range(8)]
        results.clear()
        assert await ajoin([aspawn(add_one, record) for record in records], 60) == 0
        winners = {ids[0] for ids in results}
        assert len(results) == 8 and len(winners) == 1
        assert winners <= {record.id for record in records}
    assert len(pending_ids(root)) == 5


RACER = """
import sys, time
from pathlib import Path
from omniq import OmniQ, Settings
root, key, go, ready = sys.argv[1], sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4])
with OmniQ(Settings(backend="file", base_dir=root)) as omniq:
    omniq.queue.open()
    ready.touch()
    while not go.exists():
        time.sleep(0.001)
    print(omniq.enqueue("task_functions.add", args=[1, 2], unique_key=key))
"""


async def test_processes_racing_for_one_key_store_one_task(root: Path, tmp_path: Path) -> None:
    await AsyncFileStorage(root).open()
    for round_ in range(3):
        go = tmp_path / f"go-{round_}"
        ready = [tmp_path / f"ready-{round_}-{i}" for i in range(6)]
        racers = [
            subprocess.Popen(
                [sys.executable, "-c", RACER, str(root), f"key-{round_}", str(go), str(flag)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for flag in ready
        ]
        # Once all of them have the store open, they all enqueue at once.
        wait_until(functools.partial(all_exist, ready), 120, "the racers to start")
        go.touch()
        ids = set()
        for racer in racers:
            stdout, stderr = racer.communicate(timeout=120)
            assert racer.returncode == 0, stderr
            ids.add(stdout.strip().splitlines()[-1])
        assert len(ids) == 1, ids
        assert holder_of(root, f"key-{round_}") in ids
    assert len(pending_ids(root)) == 3


async def test_an_interval_task_hands_its_key_to_its_next_run(root: Path) -> None:
    queue = AsyncTaskQueue(AsyncFileStorage(root))
    try:
        first = await queue.enqueue("task_functions.add", [1, 1], interval=3600, unique_key="tick")
        (task,) = await queue.dequeue_many(1)
        assert await queue.complete_task(first, 2, task) is True
        (successor,) = pending_ids(root)
        assert successor != first and holder_of(root, "tick") == successor
        assert await queue.enqueue("task_functions.add", [5, 5], unique_key="tick") == successor
    finally:
        await queue.close()


async def test_requeue_waits_for_the_key_to_be_free(root: Path) -> None:
    queue = AsyncTaskQueue(AsyncFileStorage(root))
    try:
        first = await queue.enqueue("task_functions.add", [1, 1], unique_key="once")
        assert await queue.cancel(first) is True
        second = await queue.enqueue("task_functions.add", [2, 2], unique_key="once")
        assert second != first
        assert await queue.retry(first) is False  # the key belongs to the second task now
        assert await queue.cancel(second) is True
        assert await queue.retry(first) is True
        assert holder_of(root, "once") == first
        assert pending_ids(root) == [first]
    finally:
        await queue.close()


async def test_what_is_no_key_file_is_set_aside(root: Path, tmp_path: Path) -> None:
    storage = AsyncFileStorage(root)
    await storage.open()
    target = tmp_path / "elsewhere"
    target.write_text(json.dumps({"id": str(uuid.uuid4()), "queue": "default"}))
    os.utime(target, (1_000_000, 1_000_000))
    key_file(root, "linked").symlink_to(target)  # a link is never followed
    (root / "keys" / "notes.txt").write_text("hello")
    record = new_record(past(1), unique_key="linked")
    assert await storage.add([record]) == [record.id]
    assert holder_of(root, "linked") == record.id
    assert target.stat().st_mtime == 1_000_000 and "queue" in target.read_text()
    await AsyncFileStorage(root).open()  # the sweep at open
    assert visible(root / "keys") == [key_file(root, "linked").name]
    assert len(visible(root / "quarantine")) == 2
