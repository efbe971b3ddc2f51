"""PROD logs of a real worker run: one JSON object per line, the right correlation ids."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest

from omniq import AsyncOmniQ
from omniq.logging import configure, reset, task_context

FIELDS = {
    "timestamp",
    "level",
    "logger",
    "message",
    "task_id",
    "operation",
    "worker",
    "correlation_id",
}


@pytest.fixture
def prod_log() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    configure(level="INFO", mode="PROD", sink=buffer)
    yield buffer
    reset()


async def test_worker_run_logs_json_with_correlation_ids(
    omniq: AsyncOmniQ, prod_log: io.StringIO, out: str, no_backoff: None
) -> None:
    with task_context("request-42", "http_request"):
        from_request = await omniq.enqueue("task_functions.fail_times", args=[out, 1])
    standalone = await omniq.enqueue("task_functions.add", args=[1, 2])
    async with omniq.worker_pool(name="pool-under-test") as workers:
        await workers.process_tasks(limit=1)  # the first attempt fails, is retried
        await workers.process_tasks(limit=5)
    assert await omniq.get_result(from_request) == "finally"
    assert await omniq.get_result(standalone) == 3

    records = [json.loads(line) for line in prod_log.getvalue().splitlines()]
    assert records, "nothing was logged"
    for record in records:
        assert set(record) >= FIELDS, record
    by_task: dict[str, list[dict[str, object]]] = {}
    for record in records:
        if record["task_id"]:
            by_task.setdefault(str(record["task_id"]), []).append(record)

    request_records = by_task[from_request]
    # enqueue, start, failure, start again, completion: every one carries the request's id
    assert len(request_records) >= 5
    assert {record["correlation_id"] for record in request_records} == {"request-42"}
    events = [record["message"] for record in request_records]
    assert any("failed" in message for message in events)
    assert any("completed" in message for message in events)
    assert {record["correlation_id"] for record in by_task[standalone]} == {standalone}
    started = [r for r in records if r["task_id"] == standalone and "started" in str(r["message"])]
    assert started and started[0]["worker"] == "pool-under-test"
    assert all(r["logger"].startswith("omniq") for r in records)  # type: ignore[union-attr]
