"""``Task``, ``TaskStatus``, ``TaskError`` and the helper functions."""

from __future__ import annotations

import datetime as dt
import os
import time
import uuid

import pytest

from omniq.models import (
    Task,
    TaskError,
    TaskStatus,
    create_task,
    get_error_message,
    has_error,
    is_failed,
    new_attempt_token,
    new_task_id,
    new_task_ids,
)


def test_task_status_compares_to_its_name() -> None:
    assert TaskStatus.COMPLETED == "completed"
    assert str(TaskStatus.FAILED) == "failed"
    assert TaskStatus.CANCELLED.is_final and not TaskStatus.RUNNING.is_final


def test_create_task_validates_and_normalizes() -> None:
    task = create_task("my_module.my_function", [1], {"a": 2}, max_retries=3, interval=60)
    assert task.status == TaskStatus.PENDING
    assert task.args == (1,)
    assert task.kwargs == {"a": 2}
    assert task.interval == dt.timedelta(seconds=60)
    assert task.eta.tzinfo is not None
    with pytest.raises(ValueError, match="-2"):
        create_task("m.f", max_retries=-2)


def test_task_is_a_read_only_mapping() -> None:
    task = create_task("m.f", [1])
    assert task["func_path"] == "m.f"
    assert task.get("error") is None
    assert task.get("nonexistent", "default") == "default"
    assert "status" in task and "nonexistent" not in task
    assert set(task) >= {
        "id",
        "func_path",
        "args",
        "kwargs",
        "status",
        "attempts",
        "max_retries",
        "eta",
        "interval",
        "result",
        "error",
    }
    assert dict(task)["id"] == task.id
    with pytest.raises(KeyError):
        task["nonexistent"]
    with pytest.raises(AttributeError):
        task.status = TaskStatus.FAILED  # type: ignore[misc]


def test_task_error_from_exception_keeps_type_message_and_traceback() -> None:
    try:
        raise ValueError("bad value")
    except ValueError as exc:
        error = TaskError.from_exception(exception=exc, error_type="runtime", is_retryable=True)
    assert error.error_type == "runtime"
    assert error.message == "bad value"
    assert error.exception_type == "builtins.ValueError"
    assert error.traceback is not None and "raise ValueError" in error.traceback
    assert error.retry_count == 0
    assert error.can_retry() is True
    assert str(error) == "runtime: bad value"


def test_task_error_retry_helpers_follow_the_budget() -> None:
    error = TaskError("runtime", "x", retry_count=1, max_retries=3)
    assert error.can_retry()
    second = error.increment_retry()
    assert second.retry_count == 2 and error.retry_count == 1
    assert second.can_retry()
    assert not second.increment_retry().can_retry()
    assert not TaskError("runtime", "x", is_retryable=False).can_retry()


def test_task_error_round_trips_through_dict() -> None:
    error = TaskError("timeout", "too slow", "omniq.exceptions.TaskTimeout", "tb", False, 2, 3)
    assert TaskError.from_dict(error.to_dict()) == error


def test_error_helpers_on_tasks_and_mappings() -> None:
    ok = create_task("m.f")
    failed = Task(
        id="t", func_path="m.f", status=TaskStatus.FAILED, error=TaskError("runtime", "boom")
    )
    assert not has_error(ok) and not is_failed(ok) and get_error_message(ok) is None
    assert has_error(failed) and is_failed(failed) and get_error_message(failed) == "boom"
    assert is_failed({"status": "failed"}) and get_error_message({"error": "text"}) == "text"


def test_task_ids_of_a_batch_are_uuid7_in_increasing_order_and_the_next_id_follows() -> None:
    before = time.time_ns() // 1_000_000
    batch = new_task_ids(5000)
    after = new_task_id()
    assert len(set(batch)) == 5000
    assert batch == sorted(batch) and after > batch[-1]
    for text in (batch[0], batch[-1], after):
        parsed = uuid.UUID(text)
        assert str(parsed) == text and parsed.version == 7
        assert parsed.variant == uuid.RFC_4122
        # The first 48 bits are Unix milliseconds: a batch runs at most 1/4096 ms per
        # id ahead of the clock.
        assert before <= parsed.int >> 80 <= time.time_ns() // 1_000_000 + 5000 // 4096 + 1
    assert new_task_ids(0) == []


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")
def test_attempt_tokens_are_128_bit_hex_and_a_forked_child_draws_other_ones() -> None:
    tokens = {new_attempt_token() for _ in range(10_000)}
    assert len(tokens) == 10_000
    assert all(len(token) == 32 and int(token, 16) >= 0 for token in tokens)
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its first token, then exit at once
        os.write(writer, new_attempt_token().encode())
        os._exit(0)
    os.close(writer)
    child = os.read(reader, 64).decode()
    os.close(reader)
    os.waitpid(pid, 0)
    assert len(child) == 32 and child != new_attempt_token() and child not in tokens
