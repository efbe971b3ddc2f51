"""The process executor through the worker pools, with real child processes.

``worker_pool(executor="process")``: hard timeouts, crash containment, recycling, the
allow-list checked before a child sees a path, ``current_task()`` and PROD logs in a
child, and (with worker processes) SIGTERM's grace and put-back and a SIGKILLed worker
that leaves no orphan child. Written once for both twins; the store is the backend
under test. Deterministic on a busy machine: waits poll for a condition with generous
limits, and nothing asserts how long anything took.
"""

from __future__ import annotations

import inspect
import json
import os
import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import requires_persistence
from declared_tasks import async_whoami, whoami
from processes import finish, start_worker, wait_for_lines, wait_until
from task_functions import lines

from omniq import AsyncOmniQ, Settings, TaskStatus
from omniq import logging as omniq_logging
from omniq._process import ProcessPool
from omniq.models import AttemptOutcome, ErrorType

TWIN = "async" if inspect.iscoroutinefunction(AsyncOmniQ.enqueue) else "sync"
WAIT = 120.0  # seconds any wait may take on a very busy machine

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.name != "posix", reason="the process executor needs POSIX"),
]


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie counts as dead)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


def started_pids(path: str) -> list[int]:
    """The pids ``record_then_sleep``/``hang_sleep`` recorded in ``path`` as they started."""
    return [int(line.split()[1]) for line in lines(path) if line.startswith("start ")]


def first_start(path: str) -> int:
    """The pid of the first process that started the task recorded in ``path``."""
    wait_for_lines(path, 1, WAIT)
    return started_pids(path)[0]


async def task_of(omniq: AsyncOmniQ, task_id: str) -> Any:
    task = await omniq.get_task(task_id)
    assert task is not None
    return task


def outcomes(task: Any) -> list[str]:
    return [entry["outcome"] for entry in task["attempts_history"]]


# ---------------------------------------------------------------------- running


async def test_tasks_run_in_child_processes(omniq: AsyncOmniQ, out: str) -> None:
    plain = await omniq.enqueue("task_functions.add", args=[2, 3])
    coroutine = await omniq.enqueue("task_functions.async_add", args=[4, 5])
    where = await omniq.enqueue("task_functions.pid")
    failing = await omniq.enqueue("task_functions.fail_always", args=[out], max_retries=1)
    pool = omniq.worker_pool(executor="process", processes=2)
    assert (pool.concurrency, pool.executor.name) == (2, "process")  # concurrency = processes
    async with pool:
        children = pool.executor.child_pids()  # type: ignore[attr-defined]
        assert len(children) == 2 and os.getpid() not in children
        assert await pool.process_tasks(limit=4) == 4
    assert await omniq.get_result(plain) == 5
    assert await omniq.get_result(coroutine) == 9
    assert await omniq.get_result(where) in children
    failed = await task_of(omniq, failing)
    assert failed["status"] == TaskStatus.FAILED
    assert failed["error"].message == "this task always fails"
    assert failed["error"].exception_type == "builtins.RuntimeError"
    assert "fail_always" in failed["error"].traceback
    assert outcomes(failed) == [AttemptOutcome.FAILED]
    assert not any(alive(pid) for pid in children)  # the pool's children left with it


async def test_a_c_level_hang_is_killed_at_its_timeout_and_retried(
    omniq: AsyncOmniQ, tmp_path: Path, no_backoff: None
) -> None:
    own, default = str(tmp_path / "own-timeout"), str(tmp_path / "pool-default")
    # time.sleep blocks in C: only a signal to its process stops it.
    with_own = await omniq.enqueue(
        "task_functions.hang_sleep", args=[own], timeout=1.0, max_retries=2
    )
    with_default = await omniq.enqueue("task_functions.hang_sleep", args=[default], max_retries=2)
    pool = omniq.worker_pool(executor="process", processes=2, default_timeout=1.0)
    async with pool:
        assert await pool.process_tasks(limit=4) == 4
    hung: list[int] = []
    for task_id, path in ((with_own, own), (with_default, default)):
        task = await task_of(omniq, task_id)
        assert (task["status"], task["attempts"]) == (TaskStatus.FAILED, 2)
        assert outcomes(task) == [AttemptOutcome.TIMEOUT, AttemptOutcome.TIMEOUT]
        error = task["error"]
        assert error.error_type == ErrorType.TIMEOUT
        assert "timeout of 1s" in error.message and "SIGTERM" in error.message
        assert "hang_sleep" in error.traceback  # the child's stack at the timeout
        children = started_pids(path)
        assert len(set(children)) == 2  # each attempt had a fresh child: the hung one was replaced
        hung.extend(children)
    wait_until(lambda: not any(alive(pid) for pid in hung), WAIT, "the hung children gone")


async def test_os_exit_and_a_segfault_are_contained_and_retried(
    omniq: AsyncOmniQ, tmp_path: Path, no_backoff: None
) -> None:
    once = str(tmp_path / "exit-once")
    exits = await omniq.enqueue("task_functions.exit_now", args=[3], max_retries=2)
    segfaults = await omniq.enqueue("task_functions.segfault", max_retries=2)
    recovers = await omniq.enqueue("task_functions.exit_once", args=[once, 3], max_retries=2)
    bystanders = [await omniq.enqueue("task_functions.add", args=[i, i]) for i in range(4)]
    async with omniq.worker_pool(executor="process", processes=2) as pool:
        assert await pool.process_tasks(limit=10) == 10
    exited, crashed = await task_of(omniq, exits), await task_of(omniq, segfaults)
    for task in (exited, crashed):
        assert (task["status"], task["attempts"]) == (TaskStatus.FAILED, 2)
        assert task["error"].error_type == ErrorType.CRASHED and task["error"].is_retryable
        assert outcomes(task) == [AttemptOutcome.RETRY, AttemptOutcome.FAILED]
    assert "exited with code 3" in exited["error"].message
    assert "signal 11 (SIGSEGV)" in crashed["error"].message
    assert "segfault" in crashed["error"].traceback  # faulthandler's stack of the crash
    survivor = await task_of(omniq, recovers)
    assert (survivor["status"], survivor["attempts"]) == (TaskStatus.COMPLETED, 2)
    assert outcomes(survivor) == [AttemptOutcome.RETRY, AttemptOutcome.COMPLETED]
    assert survivor["attempts_history"][0]["error"].error_type == ErrorType.CRASHED
    assert await omniq.get_result(recovers) == "survived"
    assert [await omniq.get_result(task_id) for task_id in bystanders] == [0, 2, 4, 6]


# ---------------------------------------------------------------------- recycling


async def test_max_memory_per_child_recycles_a_memory_hog(omniq: AsyncOmniQ) -> None:
    hog = await omniq.enqueue("task_functions.hog_memory", args=[300])
    pool = omniq.worker_pool(executor="process", processes=1, max_memory_per_child=200)
    async with pool:
        assert await pool.process_tasks(limit=1) == 1
        after = await omniq.enqueue("task_functions.pid")  # only now: it runs second
        assert await pool.process_tasks(limit=1) == 1
    hog_pid = await omniq.get_result(hog)  # the task that triggered the recycle succeeded
    assert isinstance(hog_pid, int)
    assert (await task_of(omniq, hog))["attempts"] == 1
    assert await omniq.get_result(after) != hog_pid
    wait_until(lambda: not alive(hog_pid), WAIT, "the grown child to be gone")


async def test_max_tasks_per_child_recycling_shows_in_child_pids(omniq: AsyncOmniQ) -> None:
    task_ids = [await omniq.enqueue("task_functions.pid") for _ in range(5)]
    pool = omniq.worker_pool(executor="process", processes=1, max_tasks_per_child=2)
    async with pool:
        assert await pool.process_tasks(limit=5) == 5
    pids = [await omniq.get_result(task_id) for task_id in task_ids]
    # Whatever order they ran in: two tasks per child, then a third child for the fifth.
    assert sorted(Counter(pids).values()) == [1, 2, 2]
    assert os.getpid() not in pids


# ---------------------------------------------------------------------- stopping


async def test_a_stopped_pool_kills_the_child_then_puts_the_task_back(
    omniq: AsyncOmniQ, out: str
) -> None:
    task_id = await omniq.enqueue("task_functions.hang_once", args=[out])
    pool = omniq.worker_pool(executor="process", processes=1, shutdown_timeout=0.2)
    stops: list[str] = []

    def stop_once(task: Any) -> None:
        if not stops:
            stops.append(task.id)
            pool.stop()  # the task still starts; its grace begins

    pool.before_task(stop_once)
    async with pool:
        assert await pool.process_tasks() == 0  # nothing finished: the task went back
        (child,) = started_pids(out)
        assert lines(out) == [f"start {child}", f"stopped {child}"]  # SIGTERM: finally ran
        assert not alive(child)
        task = await task_of(omniq, task_id)
        assert (task["status"], task["attempts"]) == (TaskStatus.PENDING, 0)
        assert outcomes(task) == [AttemptOutcome.RELEASED]
        assert await pool.process_tasks(limit=1) == 1  # a new child serves the next run
    assert await omniq.get_result(task_id) == "done"
    assert lines(out)[-1] != f"again {child}"
    assert (await task_of(omniq, task_id))["attempts"] == 1


# ---------------------------------------------------------------------- the allow-list


@pytest.fixture
def submitted(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The func_path of every job any process pool is handed (to show what no child saw)."""
    paths: list[str] = []
    original = ProcessPool.submit

    def spy(self: ProcessPool, job: Any) -> Any:
        paths.append(job.func_path)
        return original(self, job)

    monkeypatch.setattr(ProcessPool, "submit", spy)
    return paths


@requires_persistence()  # another facade writes the attack into the same store
async def test_the_allow_list_refuses_os_system_before_a_child_sees_it(
    omniq: AsyncOmniQ, settings: Settings, tmp_path: Path, submitted: list[str]
) -> None:
    pwned = tmp_path / "pwned"
    writer = AsyncOmniQ(settings.replace(task_modules=()))  # anyone who can write the store
    try:
        attack = await writer.enqueue("os.system", args=[f"echo PWNED > {pwned}"])
        # Allowed by its pattern in the worker, but the function is posix.system: the
        # child's own check refuses it after the import.
        walk = await writer.enqueue("task_functions.os.system", args=[f"echo PWNED > {pwned}"])
    finally:
        await writer.close()
    fine = await omniq.enqueue("task_functions.add", args=[1, 1])
    async with omniq.worker_pool(executor="process", processes=1) as pool:
        assert await pool.process_tasks(limit=3) == 3
    for task_id in (attack, walk):
        task = await task_of(omniq, task_id)
        assert task["status"] == TaskStatus.FAILED and task["attempts"] == 1
        assert task["error"].error_type == ErrorType.FORBIDDEN
        assert not task["error"].is_retryable
    assert "'os.system' is not allowed here" in (await task_of(omniq, attack))["error"].message
    assert "posix.system" in (await task_of(omniq, walk))["error"].message
    assert not pwned.exists()
    assert "os.system" not in submitted  # refused in the worker: no child ever had it
    assert submitted.count("task_functions.os.system") == 1
    assert await omniq.get_result(fine) == 2


# ---------------------------------------------------------------------- task context, logs


async def test_current_task_works_inside_a_child(omniq: AsyncOmniQ) -> None:
    plain = await omniq.enqueue(whoami)
    coroutine = await omniq.enqueue(async_whoami)
    pool = omniq.worker_pool(executor="process", processes=1, name="proc-pool", max_retries=4)
    async with pool:
        assert await pool.process_tasks(limit=2) == 2
    seen = await omniq.get_result(plain)
    task = await task_of(omniq, plain)
    assert seen == {
        "id": plain,
        "func_path": "declared_tasks.whoami",
        "queue": "default",
        "attempt": 1,
        "max_retries": task["max_retries"],
        "correlation_id": plain,
        "worker": "proc-pool",
        "eta": task["eta"].isoformat(),
    }
    assert await omniq.get_result(coroutine) == {
        "id": coroutine,
        "attempt": 1,
        "worker": "proc-pool",
    }


@pytest.fixture
def prod_log_file(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "omniq.log"
    omniq_logging.configure("INFO", mode="PROD", file=path)
    yield path
    omniq_logging.reset()


async def test_prod_json_logs_inside_a_child_carry_the_correlation_id(
    omniq: AsyncOmniQ, prod_log_file: Path
) -> None:
    with omniq_logging.task_context("request-42", "http_request"):
        task_id = await omniq.enqueue("task_functions.log_twice", args=["hello from a child"])
    async with omniq.worker_pool(executor="process", processes=1, name="json-pool") as pool:
        assert await pool.process_tasks(limit=1) == 1
    child = await omniq.get_result(task_id)
    assert child != os.getpid()

    def records() -> list[dict[str, Any]]:
        # Two processes append to the file: a line still being written is left for later.
        text = prod_log_file.read_text() if prod_log_file.exists() else ""
        return [json.loads(line) for line in text.split("\n")[:-1]]

    wait_until(
        lambda: any(r["message"] == "hello from a child" for r in records()),
        WAIT,
        "the child's record in the log file",
    )
    by_message = {record["message"]: record for record in records()}
    logged = by_message["hello from a child"]
    started = by_message[f"Task {task_id} started (attempt 1)"]
    for record in (logged, started):
        assert record["task_id"] == task_id
        assert record["correlation_id"] == "request-42"
        assert record["worker"] == "json-pool"
        assert record["operation"] == "execute"
    assert "plain hello from a child" not in by_message  # the application's own record
    ours = [r for r in records() if r["task_id"] == task_id]
    assert {r["correlation_id"] for r in ours} == {"request-42"}  # the parent's records too
    assert any("completed" in r["message"] for r in ours)


# ---------------------------------------------------------------------- options


async def test_bad_options_fail_at_the_call(omniq: AsyncOmniQ) -> None:
    with pytest.raises(ValueError, match="executor 'threads'"):
        omniq.worker_pool(executor="threads")
    with pytest.raises(ValueError, match="processes must be >= 1"):
        omniq.worker_pool(executor="process", processes=0)
    with pytest.raises(ValueError, match=r"concurrency \(3\) may not exceed processes \(2\)"):
        omniq.worker_pool(executor="process", processes=2, concurrency=3)
    with pytest.raises(ValueError, match="max_tasks_per_child apply to executor='process'"):
        omniq.worker_pool(max_tasks_per_child=10)
    with pytest.raises(TypeError, match="max_memory_per_child must be a number of MiB"):
        omniq.worker_pool(executor="process", processes=1, max_memory_per_child="1G")
    with pytest.raises(ValueError, match="kill_grace"):
        omniq.worker_pool(executor="process", processes=1, kill_grace=-1)
    spare = omniq.worker_pool(executor="process", processes=3, concurrency=2)
    assert (spare.concurrency, spare.executor.processes) == (2, 3)  # type: ignore[attr-defined]
    # The grace after SIGTERM stays within the lease a running task is sure to have.
    short = omniq.worker_pool(executor="process", processes=1, lease_timeout=2, kill_grace=5)
    assert short.executor.kill_grace == 1.0  # type: ignore[attr-defined]


async def test_settings_choose_the_executor(settings: Settings) -> None:
    configured = settings.replace(executor="process", processes=2, max_tasks_per_child=7)
    omniq = AsyncOmniQ(configured)
    try:
        pool = omniq.worker_pool()
        assert (pool.executor.name, pool.concurrency) == ("process", 2)
        assert pool.executor.processes == 2  # type: ignore[attr-defined]
        assert omniq.worker_pool(concurrency=1).concurrency == 1
        assert omniq.worker_pool(executor="inline").executor.name == "inline"
        async with omniq.worker_pool() as started:
            recycled = await omniq.enqueue("task_functions.pid")
            assert await started.process_tasks(limit=1) == 1
            assert await omniq.get_result(recycled) in started.executor.child_pids()  # type: ignore[attr-defined]
    finally:
        await omniq.close()


# ---------------------------------------------------------------------- worker processes


@requires_persistence()
async def test_sigterm_lets_a_running_child_finish(
    omniq: AsyncOmniQ, settings: Settings, out: str
) -> None:
    task_id = await omniq.enqueue("task_functions.record_then_sleep", args=[out, 1.0])
    worker = start_worker(settings, TWIN, "--mode", "serve", "--processes", "2", "--grace", "60")
    child = first_start(out)
    assert child != worker.pid
    worker.send_signal(signal.SIGTERM)
    code, stdout, stderr = finish(worker, WAIT)
    assert code == 0, stderr
    assert [line.split()[0] for line in lines(out)] == ["start", "end"]
    task = await task_of(omniq, task_id)
    assert (task["status"], task["attempts"]) == (TaskStatus.COMPLETED, 1)
    assert stdout.split()[-1] == "1"
    assert not alive(child)


@requires_persistence()
async def test_sigterm_puts_back_what_does_not_finish_within_the_grace(
    omniq: AsyncOmniQ, settings: Settings, out: str
) -> None:
    task_id = await omniq.enqueue("task_functions.hang_until_stopped", args=[out])
    worker = start_worker(settings, TWIN, "--mode", "serve", "--processes", "1", "--grace", "0.5")
    child = first_start(out)
    worker.send_signal(signal.SIGTERM)
    code, _, stderr = finish(worker, WAIT)
    assert code == 0, stderr
    assert not alive(child)  # stopped at the end of the grace, before the task went back
    assert lines(out) == [f"start {child}", f"stopped {child}"]  # by SIGTERM: finally ran
    task = await task_of(omniq, task_id)
    # Put back as PENDING without spending an attempt: the next worker runs it afresh.
    assert (task["status"], task["attempts"]) == (TaskStatus.PENDING, 0)
    assert outcomes(task) == [AttemptOutcome.RELEASED]


@requires_persistence()
async def test_sigkill_of_the_worker_leaves_no_orphan_and_the_lease_brings_the_task_back(
    omniq: AsyncOmniQ, settings: Settings, out: str
) -> None:
    task_id = await omniq.enqueue("task_functions.record_then_sleep", args=[out, 3.0])
    doomed = start_worker(settings, TWIN, "--mode", "serve", "--processes", "2", "--lease", "1")
    orphan = first_start(out)
    doomed.kill()  # SIGKILL: none of the worker's clean-up runs
    finish(doomed, WAIT)
    wait_until(lambda: not alive(orphan), WAIT, "the dead worker's child to be gone")
    rescuer = start_worker(settings, TWIN, "--mode", "serve", "--processes", "1", "--lease", "1")
    try:
        wait_until(lambda: "end" in " ".join(lines(out)), WAIT, "the task to run again")
        rescuer.send_signal(signal.SIGTERM)
        assert finish(rescuer, WAIT)[0] == 0
    finally:
        rescuer.kill()
    events = Counter(line.split()[0] for line in lines(out))
    assert events == {"start": 2, "end": 1}  # the orphan never finished it
    assert started_pids(out)[1] not in (orphan, doomed.pid, rescuer.pid)  # the rescuer's child
    task = await task_of(omniq, task_id)
    assert (task["status"], task["attempts"]) == (TaskStatus.COMPLETED, 2)
    assert outcomes(task) == [AttemptOutcome.LOST, AttemptOutcome.COMPLETED]
