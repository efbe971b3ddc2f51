"""The process executor's engine (``omniq._process``), with real child processes.

Deterministic on a busy machine: waits poll for a condition with generous limits, and no
assertion depends on how long anything took.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import io
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from processes import wait_for_lines, wait_until
from task_functions import failing_initializer, lines

from omniq import logging as omniq_logging
from omniq._concurrency import aresolve_future, resolve_future
from omniq._process import (
    RELEASED,
    ChildStartError,
    Job,
    JobOutcome,
    JobResult,
    ProcessPool,
    describe_exit,
    job_for_task,
)
from omniq.models import ErrorType, create_task
from omniq.serialization import DEFAULT_SERIALIZER

pytestmark = pytest.mark.slow

TESTS_DIR = Path(__file__).resolve().parent.parent
PARENT_SCRIPT = TESTS_DIR / "process_pool_parent.py"
WAIT = 120.0  # seconds any single job may take on a very busy machine


def job(func: str, *args: Any, task_id: str | None = None, **options: Any) -> Job:
    """A job running ``task_functions.<func>(*args)``."""
    payload = DEFAULT_SERIALIZER.dumps({"args": list(args), "kwargs": {}})
    return Job(task_id or f"task-{func}", f"task_functions.{func}", payload, **options)


def run(pool: ProcessPool, func: str, *args: Any, **options: Any) -> JobResult:
    return pool.submit(job(func, *args, **options)).result(timeout=WAIT)


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


def started_pid(path: str) -> int:
    """The pid a hanging task recorded in ``path`` when it started."""
    return int(wait_for_lines(path, 1, WAIT)[0].split()[1])


@pytest.fixture
def make_pool() -> Iterator[Callable[..., ProcessPool]]:
    """Start pools that are shut down (at once) after the test."""
    pools: list[ProcessPool] = []

    def make(processes: int = 1, **options: Any) -> ProcessPool:
        pool = ProcessPool(processes, **options)
        pools.append(pool)
        pool.start()
        return pool

    yield make
    for pool in pools:
        pool.shutdown(0.0)


# ---------------------------------------------------------------------- running


def test_runs_a_function_and_returns_its_encoded_result(
    make_pool: Callable[..., ProcessPool],
) -> None:
    pool = make_pool(2)
    result = run(pool, "echo", {"when": "now"}, (1, 2))
    assert result.outcome is JobOutcome.COMPLETED and result.completed
    assert result.error is None
    assert result.decode_result(DEFAULT_SERIALIZER) == {
        "args": [{"when": "now"}, (1, 2)],
        "kwargs": {},
    }
    assert result.pid in pool.child_pids() and result.pid != os.getpid()
    assert result.rss_mib is not None and result.rss_mib > 0


def test_runs_a_coroutine_function_in_the_child(make_pool: Callable[..., ProcessPool]) -> None:
    pool = make_pool(1)
    first = run(pool, "async_pid")
    second = run(pool, "async_add", 2, 3)
    assert first.completed and json.loads(first.result or "null") == first.pid
    assert second.completed and second.result == "5"


def test_an_exception_arrives_as_a_task_error(make_pool: Callable[..., ProcessPool]) -> None:
    pool = make_pool(1)
    result = run(pool, "fail_always", os.devnull)
    assert result.outcome is JobOutcome.FAILED
    assert result.error is not None
    assert result.error.error_type == ErrorType.RUNTIME and result.error.is_retryable
    assert result.error.message == "this task always fails"
    assert result.error.exception_type == "builtins.RuntimeError"
    assert "fail_always" in (result.error.traceback or "")


def test_an_unpicklable_exception_arrives_with_its_type_name(
    make_pool: Callable[..., ProcessPool],
) -> None:
    pool = make_pool(1)
    result = run(pool, "raise_unpicklable", "holds a lock")
    assert result.error is not None
    assert result.error.exception_type == "task_functions.UnpicklableError"
    assert result.error.message == "holds a lock"
    assert "raise_unpicklable" in (result.error.traceback or "")


def test_import_argument_and_result_errors_are_not_retryable(
    make_pool: Callable[..., ProcessPool],
) -> None:
    pool = make_pool(1)
    missing = run(pool, "no_such_function")
    wrong_args = run(pool, "add", 1, 2, 3)
    bad_result = run(pool, "unserializable_result")
    assert missing.error is not None and missing.error.error_type == ErrorType.IMPORT
    assert wrong_args.error is not None and wrong_args.error.error_type == ErrorType.ARGUMENTS
    assert bad_result.error is not None and bad_result.error.error_type == ErrorType.SERIALIZATION
    assert not any(r.error.is_retryable for r in (missing, wrong_args, bad_result) if r.error)


def test_the_child_sees_the_job_context(make_pool: Callable[..., ProcessPool]) -> None:
    pool = make_pool(1)
    result = run(
        pool,
        "job_context",
        correlation_id="corr-1",
        context={"queue": "default", "attempt": 2, "worker": "w1"},
    )
    assert result.decode_result(DEFAULT_SERIALIZER) == {
        "task_id": "task-job_context",
        "correlation_id": "corr-1",
        "queue": "default",
        "attempt": 2,
        "worker": "w1",
    }


def test_job_for_task_runs_a_claimed_task(make_pool: Callable[..., ProcessPool]) -> None:
    task = create_task("task_functions.echo", args=[dt.date(2024, 5, 1)], kwargs={"n": 1})
    task = dataclasses.replace(task, attempts=2, correlation_id="corr-9")
    built = job_for_task(task, DEFAULT_SERIALIZER, timeout=30.0, worker="w-3")
    assert (built.task_id, built.timeout, built.correlation_id) == (task.id, 30.0, "corr-9")
    assert built.context["attempt"] == 2 and built.log_fields == {"worker": "w-3"}
    result = make_pool(1).submit(built).result(timeout=WAIT)
    assert result.decode_result(DEFAULT_SERIALIZER) == {
        "args": [dt.date(2024, 5, 1)],
        "kwargs": {"n": 1},
    }


# ---------------------------------------------------------------------- hard timeouts


@pytest.mark.parametrize("hang", ["hang_sleep", "hang_busy", "hang_socket_read"])
def test_a_hung_task_is_killed_at_its_timeout_and_its_child_replaced(
    make_pool: Callable[..., ProcessPool], tmp_path: Path, hang: str
) -> None:
    pool = make_pool(1, kill_grace=WAIT)
    out = str(tmp_path / "started")
    result = run(pool, hang, out, timeout=1.0)
    hung_pid = started_pid(out)
    assert result.outcome is JobOutcome.FAILED and result.pid == hung_pid
    assert result.error is not None
    assert result.error.error_type == ErrorType.TIMEOUT and result.error.is_retryable
    assert "timeout of 1s" in result.error.message and "SIGTERM" in result.error.message
    assert hang in (result.error.traceback or "")  # the child's stack at the timeout
    wait_until(lambda: not alive(hung_pid), WAIT, "the hung child to be gone")
    after = run(pool, "pid")
    assert after.completed and after.pid != hung_pid


def test_a_child_ignoring_sigterm_is_killed_after_the_jobs_grace(
    make_pool: Callable[..., ProcessPool], tmp_path: Path
) -> None:
    pool = make_pool(1, kill_grace=WAIT)  # the job's own, shorter grace wins
    out = str(tmp_path / "started")
    result = run(pool, "hang_ignoring_sigterm", out, timeout=1.0, kill_grace=0.5)
    assert result.error is not None and result.error.error_type == ErrorType.TIMEOUT
    assert "SIGKILL after a grace of 0.5s" in result.error.message
    assert not alive(started_pid(out))
    assert run(pool, "add", 1, 1).completed


# ---------------------------------------------------------------------- crashes


def test_os_exit_fails_only_its_job(make_pool: Callable[..., ProcessPool]) -> None:
    pool = make_pool(2)
    crashed = run(pool, "exit_now", 3)
    assert crashed.error is not None
    assert crashed.error.error_type == ErrorType.CRASHED and crashed.error.is_retryable
    assert "exited with code 3" in crashed.error.message
    assert str(crashed.pid) in crashed.error.message
    results = [pool.submit(job("add", i, i)) for i in range(4)]
    assert [f.result(timeout=WAIT).result for f in results] == ["0", "2", "4", "6"]
    assert crashed.pid not in pool.child_pids()


def test_a_segfault_is_contained(make_pool: Callable[..., ProcessPool]) -> None:
    pool = make_pool(1)
    crashed = run(pool, "segfault")
    assert crashed.error is not None and crashed.error.error_type == ErrorType.CRASHED
    assert "signal 11 (SIGSEGV)" in crashed.error.message
    assert "segfault" in (crashed.error.traceback or "")  # faulthandler's stack of the crash
    after = run(pool, "pid")
    assert after.completed and after.pid != crashed.pid


def test_a_child_killed_by_sigkill_fails_its_job_as_crashed(
    make_pool: Callable[..., ProcessPool], tmp_path: Path
) -> None:
    pool = make_pool(1)
    out = str(tmp_path / "started")
    future = pool.submit(job("hang_sleep", out))
    os.kill(started_pid(out), signal.SIGKILL)  # what the OOM killer does
    crashed = future.result(timeout=WAIT)
    assert crashed.error is not None and crashed.error.error_type == ErrorType.CRASHED
    assert "signal 9 (SIGKILL" in crashed.error.message
    assert run(pool, "add", 2, 2).result == "4"


# ---------------------------------------------------------------------- recycling


def test_max_tasks_per_child_recycles_children(make_pool: Callable[..., ProcessPool]) -> None:
    pool = make_pool(1, max_tasks_per_child=2)
    pids = [run(pool, "pid").pid for _ in range(5)]
    assert pids[0] == pids[1] and pids[2] == pids[3]
    assert len({pids[0], pids[2], pids[4]}) == 3
    wait_until(lambda: not alive(pids[0]) and not alive(pids[2]), WAIT, "recycled children gone")


def test_max_memory_per_child_recycles_a_grown_child(
    make_pool: Callable[..., ProcessPool],
) -> None:
    pool = make_pool(1, max_memory_per_child=200)
    small = run(pool, "hog_memory", 1)
    assert small.rss_mib is not None and small.rss_mib < 200
    assert run(pool, "pid").pid == small.pid  # below the limit: the child is kept
    hog = run(pool, "hog_memory", 300)
    assert hog.completed and json.loads(hog.result or "null") == hog.pid == small.pid
    assert hog.rss_mib is not None and hog.rss_mib > 300
    after = run(pool, "pid")
    assert after.completed and after.pid != hog.pid
    wait_until(lambda: not alive(hog.pid or 0), WAIT, "the grown child to be gone")


# ---------------------------------------------------------------------- shutdown


def test_shutdown_lets_running_jobs_finish_within_the_grace(
    make_pool: Callable[..., ProcessPool], tmp_path: Path
) -> None:
    pool = make_pool(1)
    out, flag = str(tmp_path / "started"), str(tmp_path / "flag")
    future = pool.submit(job("wait_for_file", out, flag, WAIT))
    child = started_pid(out)
    stopper = threading.Thread(target=pool.shutdown, args=(WAIT,))
    stopper.start()
    wait_until(lambda: pool.closing, WAIT, "the shutdown to begin")
    with pytest.raises(RuntimeError, match="not running"):
        pool.submit(job("add", 1, 2))
    Path(flag).touch()
    result = future.result(timeout=WAIT)
    stopper.join(WAIT)
    assert not stopper.is_alive()
    assert result.completed and result.result == '"flag seen"'
    assert pool.child_pids() == [] and not alive(child)


def test_shutdown_releases_what_did_not_finish(
    make_pool: Callable[..., ProcessPool], tmp_path: Path
) -> None:
    pool = make_pool(1, kill_grace=WAIT)
    out = str(tmp_path / "started")
    running = pool.submit(job("hang_sleep", out, task_id="running"))
    queued = pool.submit(job("add", 1, 2, task_id="queued"))
    child = started_pid(out)
    pool.shutdown(0.5)
    assert running.result(timeout=0).outcome is RELEASED
    assert running.result().released and running.result().error is None
    assert queued.result(timeout=0) == JobResult("queued", JobOutcome.RELEASED)
    assert not alive(child)
    pool.shutdown()  # idempotent


def test_sigkill_of_the_parent_leaves_no_orphan_children(tmp_path: Path) -> None:
    out = str(tmp_path / "started")
    parent = subprocess.Popen(
        [sys.executable, str(PARENT_SCRIPT), "orphans", out],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "TMPDIR": str(tmp_path)},  # where its pool's dump files stay
    )
    try:
        assert parent.stdout is not None
        children = json.loads(parent.stdout.readline())
        assert len(children) == 2 and started_pid(out) in children  # one busy, one idle
        assert all(alive(pid) for pid in children)
    finally:
        parent.kill()  # SIGKILL: no clean-up code of the parent runs
        parent.wait(WAIT)
    wait_until(lambda: not any(alive(pid) for pid in children), WAIT, "no orphan children")


# ---------------------------------------------------------------------- logging


@pytest.fixture
def prod_log_file(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "omniq.log"
    omniq_logging.configure("INFO", mode="PROD", file=path)
    yield path
    omniq_logging.reset()


def test_child_logs_in_prod_mode_carry_the_correlation_id(
    make_pool: Callable[..., ProcessPool], prod_log_file: Path
) -> None:
    pool = make_pool(1)
    result = run(
        pool,
        "log_twice",
        "hello from a child",
        task_id="logged-task",
        correlation_id="corr-42",
        log_fields={"worker": "w-7"},
        context={"attempt": 3},
    )
    assert result.completed

    def child_records() -> list[dict[str, Any]]:  # the parent logs nothing about tasks here
        return [r for r in map(json.loads, lines(prod_log_file)) if r["task_id"]]

    wait_until(lambda: len(child_records()) >= 2, WAIT, "the child's records in the log file")
    by_message = {record["message"]: record for record in child_records()}
    logged = by_message["hello from a child"]
    started = by_message["Task logged-task started (attempt 3)"]
    for record in (logged, started):
        assert record["level"] == "INFO"
        assert record["task_id"] == "logged-task"
        assert record["correlation_id"] == "corr-42"
        assert record["worker"] == "w-7"
        assert record["operation"] == "execute"
    assert "plain hello from a child" not in by_message  # the application's record, not omniq's


def test_children_follow_a_logging_configuration_made_after_they_started(
    make_pool: Callable[..., ProcessPool], tmp_path: Path
) -> None:
    omniq_logging.reset()
    pool = make_pool(1)
    assert run(pool, "log_twice", "before").completed  # omniq's records are off
    path = tmp_path / "later.log"
    omniq_logging.configure("INFO", mode="PROD", file=path)
    try:
        assert run(pool, "log_twice", "after", task_id="later").completed
        wait_until(lambda: any("after" in line for line in lines(path)), WAIT, "the record")
        messages = [json.loads(line)["message"] for line in lines(path)]
    finally:
        omniq_logging.reset()
    assert "after" in messages and "before" not in messages


def test_a_sink_children_cannot_share_is_replaced_by_stderr_and_said_so(
    make_pool: Callable[..., ProcessPool],
) -> None:
    captured = io.StringIO()
    omniq_logging.configure("INFO", mode="PROD", sink=captured)
    try:
        _, config = omniq_logging.export_config()
        assert config is not None and config["stream"] == "stderr" and config["substituted"]
        assert run(make_pool(1), "add", 1, 2).completed
    finally:
        omniq_logging.reset()
    assert "children write their records to stderr" in captured.getvalue()


def test_child_logs_reach_the_parents_stderr() -> None:
    finished = subprocess.run(
        [sys.executable, str(PARENT_SCRIPT), "log", "PROD"],
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert finished.returncode == 0, finished.stderr
    assert finished.stdout.strip() == "completed"
    records = [json.loads(line) for line in finished.stderr.splitlines() if line.startswith("{")]
    hello = [r for r in records if r["message"] == "hello from a child"]
    assert len(hello) == 1  # once: loguru's default sink in the child leaves omniq's to omniq
    assert hello[0]["correlation_id"] == "corr-from-parent"
    assert hello[0]["task_id"] == "logged-task" and hello[0]["worker"] == "parent-worker"
    assert "plain hello from a child" in finished.stderr  # the application's own record


# ---------------------------------------------------------------------- the pool's contract


def test_the_spawn_start_method_works_too(
    make_pool: Callable[..., ProcessPool], tmp_path: Path
) -> None:
    pool = make_pool(1, start_method="spawn")
    assert run(pool, "add", 2, 3).result == "5"
    out = str(tmp_path / "started")
    hung = run(pool, "hang_sleep", out, timeout=1.0)
    assert hung.error is not None and hung.error.error_type == ErrorType.TIMEOUT
    crashed = run(pool, "exit_now", 4)
    assert crashed.error is not None and "exited with code 4" in crashed.error.message
    assert run(pool, "async_add", 1, 1).result == "2"


def test_bad_arguments_fail_at_the_call(make_pool: Callable[..., ProcessPool]) -> None:
    with pytest.raises(ValueError, match="start_method"):
        ProcessPool(1, start_method="fork")
    with pytest.raises(ValueError, match="processes"):
        ProcessPool(0)
    with pytest.raises(TypeError, match="initializer"):
        ProcessPool(1, initializer=lambda: None)
    with pytest.raises(ValueError, match="kill_grace"):
        ProcessPool(1, kill_grace=-1)
    with pytest.raises(ValueError, match="timeout"):
        job("add", 1, 2, timeout=0)
    with pytest.raises(TypeError, match="log_fields"):
        job("add", 1, 2, log_fields={"task_id": "clash"})
    pool = ProcessPool(1)
    with pytest.raises(RuntimeError, match="start"):
        pool.submit(job("add", 1, 2))
    pool = make_pool(1)
    with pytest.raises(TypeError, match="JSON"):
        pool.submit(job("add", 1, 2, context={"when": object()}))
    with pytest.raises(TypeError, match="Job"):
        pool.submit("add")  # type: ignore[arg-type]


def test_a_failing_initializer_fails_start() -> None:
    pool = ProcessPool(1, initializer=failing_initializer)
    with pytest.raises(ChildStartError, match=r"initializer failed.*no logging here"):
        pool.start()
    assert pool.closing and pool.child_pids() == []


def test_describe_exit_names_codes_and_signals() -> None:
    assert describe_exit(3) == "exited with code 3"
    assert describe_exit(-11) == "was killed by signal 11 (SIGSEGV)"
    assert "out-of-memory" in describe_exit(-9)


def test_the_paired_primitives_resolve_a_pool_future(
    make_pool: Callable[..., ProcessPool],
) -> None:
    pool = make_pool(1)
    assert resolve_future(pool.submit(job("add", 1, 2))).result == "3"

    async def main() -> str | None:
        return (await aresolve_future(pool.submit(job("async_add", 2, 2)))).result

    assert asyncio.run(main()) == "4"
