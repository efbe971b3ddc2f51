"""The dashboard's pages (GET): overview, tasks, one task, workers.

Each reads through the public facade with bounded questions (a page of tasks, the
metrics snapshot), so a store of 100,000 tasks answers as fast as an empty one
within a small factor (see ``benchmarks/dashboard.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from omniq.models import TaskStatus
from omniq.web import format as fmt
from omniq.web.notices import notice_of

if TYPE_CHECKING:
    from omniq.web.app import Dashboard

PAGE_SIZES = (25, 50, 100, 200)
DEFAULT_PAGE_SIZE = 50
STATUSES = tuple(status.value for status in TaskStatus)
MAX_OFFSET = 1_000_000


async def overview(board: Dashboard, request: Request) -> Response:
    """Counts per queue and status, throughput, waits, workers and schedules."""
    metrics = await board.metrics()
    chart = [
        {"t": fmt.iso(minute.minute), "completed": minute.completed, "failed": minute.failed}
        for minute in metrics.throughput
    ]
    return board.render(
        request,
        "overview.html",
        metrics=metrics,
        chart=fmt.json_for_script(chart),
        completed_hour=sum(minute.completed for minute in metrics.throughput),
        failed_hour=sum(minute.failed for minute in metrics.throughput),
        statuses=STATUSES,
        notice=notice_of(request),
    )


def _number(text: str | None, default: int, low: int, high: int) -> int:
    try:
        value = int(text) if text else default
    except ValueError:
        return default
    return min(max(value, low), high)


async def tasks(board: Dashboard, request: Request) -> Response:
    """A page of tasks, newest change first, filtered by queue, status, function, id."""
    query = request.query_params
    filters = {
        "queue": query.get("queue", "").strip(),
        "status": query.get("status", "").strip(),
        "function": query.get("function", "").strip(),
        "id": query.get("id", "").strip(),
    }
    limit = _number(query.get("limit"), DEFAULT_PAGE_SIZE, 1, PAGE_SIZES[-1])
    offset = _number(query.get("offset"), 0, 0, MAX_OFFSET)
    if filters["status"] and filters["status"] not in STATUSES:
        return board.message(
            request,
            400,
            "Bad filter",
            f"unknown status {filters['status']!r}: use one of " + ", ".join(STATUSES),
        )
    try:
        found = await board.omniq.list_tasks(
            filters["status"] or None,
            limit=limit + 1,  # one more than shown: is there a next page?
            offset=offset,
            queue=filters["queue"] or None,
            function=filters["function"] or None,
            id_contains=filters["id"] or None,
        )
    except (TypeError, ValueError) as error:
        return board.message(request, 400, "Bad filter", str(error))
    return board.render(
        request,
        "tasks.html",
        tasks=found[:limit],
        filters=filters,
        limit=limit,
        offset=offset,
        more=len(found) > limit,
        statuses=STATUSES,
        page_sizes=PAGE_SIZES,
        notice=notice_of(request),
    )


async def task(board: Dashboard, request: Request) -> Response:
    """One task: its data, error, traceback, attempt history, links to its relatives."""
    task_id = request.path_params["task_id"]
    try:
        found = await board.omniq.get_task(task_id)
    except (TypeError, ValueError) as error:
        return board.message(request, 400, "Bad task id", str(error))
    if found is None:
        return board.message(request, 404, "No such task", f"There is no task {task_id}.")
    successors = []
    if found.interval is not None:
        successors = await board.omniq.list_tasks(parent_id=found.id, limit=5)
    return board.render(
        request,
        "task.html",
        task=found,
        successors=successors,
        can_retry=found.status in (TaskStatus.FAILED, TaskStatus.CANCELLED),
        can_cancel=found.status == TaskStatus.PENDING,
        notice=notice_of(request),
    )


async def workers(board: Dashboard, request: Request) -> Response:
    """The registered worker pools, alive first."""
    return board.render(request, "workers.html", workers=await board.omniq.workers())
