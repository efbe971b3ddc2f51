"""``GET /metrics`` (the Prometheus text format) and ``GET /healthz``.

The numbers are those of :meth:`AsyncOmniQ.metrics` (and of ``omniq stats --json``):

* ``omniq_tasks{queue,status}``: tasks in the store now (a gauge).
* ``omniq_tasks_finished_last_hour{queue,status}``: tasks that completed or failed
  for good in the last 60 minutes, from their finish times (a gauge).
* ``omniq_queue_oldest_due_age_seconds{queue}``: how long the oldest due pending task
  of each queue has waited: the queue's latency (0 when none is due).
* ``omniq_worker_executions_total{worker,host,outcome}``: per registered pool, the
  executions it finished (``outcome`` completed or failed): counters, which start
  again from 0 when a pool restarts (``rate()`` handles that).
* ``omniq_workers{state}``: registered pools alive and lost; ``omniq_worker_up``.
* ``omniq_schedule_next_fire_timestamp_seconds{schedule}`` and ``..._last_fire_...``.
* ``omniq_store_up``: 1, or 0 (with status 503) when the store cannot be read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from omniq import logging as omniq_logging
from omniq.monitoring import Metrics

if TYPE_CHECKING:
    from omniq.web.app import Dashboard

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
HEALTH_TIMEOUT = 5.0  # seconds a health check waits for the store


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(**labels: str) -> str:
    inner = ",".join(f'{name}="{_label(value)}"' for name, value in labels.items())
    return "{" + inner + "}" if inner else ""


def _family(name: str, kind: str, text: str, samples: Iterable[tuple[str, float]]) -> list[str]:
    lines = [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
    lines.extend(f"{name}{labels} {value:g}" for labels, value in samples)
    return lines


def render(metrics: Metrics) -> str:
    """``metrics`` in the Prometheus text exposition format (version 0.0.4)."""
    queues = metrics.queues
    lines = _family("omniq_store_up", "gauge", "Whether the store could be read.", [("", 1)])
    lines += _family(
        "omniq_tasks",
        "gauge",
        "Tasks in the store, per queue and status.",
        (
            (_labels(queue=queue.name, status=status), count)
            for queue in queues
            for status, count in queue.counts.items()
        ),
    )
    lines += _family(
        "omniq_tasks_finished_last_hour",
        "gauge",
        "Tasks that completed or failed for good in the last 60 minutes.",
        (
            sample
            for queue in queues
            for sample in (
                (_labels(queue=queue.name, status="completed"), queue.completed_last_hour),
                (_labels(queue=queue.name, status="failed"), queue.failed_last_hour),
            )
        ),
    )
    lines += _family(
        "omniq_queue_oldest_due_age_seconds",
        "gauge",
        "How long the oldest due pending task of the queue has waited.",
        ((_labels(queue=queue.name), queue.oldest_due_age) for queue in queues),
    )
    workers = metrics.workers
    lines += _family(
        "omniq_workers",
        "gauge",
        "Registered worker pools, alive or lost (no heartbeat within their lease).",
        [
            (_labels(state="alive"), metrics.workers_alive),
            (_labels(state="lost"), metrics.workers_lost),
        ],
    )
    lines += _family(
        "omniq_worker_up",
        "gauge",
        "1 while the pool's heartbeat is current, 0 once it is lost.",
        ((_labels(worker=w.name, host=w.host, key=w.key), int(w.alive)) for w in workers),
    )
    lines += _family(
        "omniq_worker_executions_total",
        "counter",
        "Task executions a pool finished since it started, by outcome.",
        (
            sample
            for w in workers
            for sample in (
                (
                    _labels(worker=w.name, host=w.host, key=w.key, outcome="completed"),
                    w.processed - w.failed,
                ),
                (_labels(worker=w.name, host=w.host, key=w.key, outcome="failed"), w.failed),
            )
        ),
    )
    schedules = [info for info in metrics.schedules if info.problem is None]
    lines += _family(
        "omniq_schedule_next_fire_timestamp_seconds",
        "gauge",
        "When the schedule fires next (Unix time).",
        (
            (_labels(schedule=info.name), info.next_fire.timestamp())
            for info in schedules
            if info.next_fire is not None
        ),
    )
    lines += _family(
        "omniq_schedule_last_fire_timestamp_seconds",
        "gauge",
        "When the schedule fired last (Unix time).",
        (
            (_labels(schedule=info.name), info.last_fire.timestamp())
            for info in schedules
            if info.last_fire is not None
        ),
    )
    return "\n".join(lines) + "\n"


def render_down() -> str:
    """What ``/metrics`` says when the store cannot be read."""
    return (
        "\n".join(_family("omniq_store_up", "gauge", "Whether the store could be read.", [("", 0)]))
        + "\n"
    )


async def metrics_endpoint(board: Dashboard, request: Request) -> Response:
    """``GET /metrics``: the snapshot in the Prometheus text format (503 when the store fails)."""
    del request
    try:
        snapshot = await board.metrics()
    except Exception as error:
        log_store_error("metrics", error)
        return PlainTextResponse(render_down(), status_code=503, media_type=CONTENT_TYPE)
    return PlainTextResponse(render(snapshot), media_type=CONTENT_TYPE)


async def healthz(board: Dashboard, request: Request) -> Response:
    """``GET /healthz``: 200 when the store answers within 5 s, else 503."""
    del request
    try:
        await asyncio.wait_for(board.omniq.queue.next_eta(), HEALTH_TIMEOUT)
    except Exception as error:  # a timeout, a closed database, a server away
        log_store_error("health check", error)
        return JSONResponse({"status": "unavailable", "store": "unreachable"}, status_code=503)
    return JSONResponse({"status": "ok", "store": "reachable"})


def log_store_error(what: str, error: BaseException) -> None:
    """One warning line naming the error's type and first line (no DSN, no traceback)."""
    first = str(error).strip().splitlines()[0] if str(error).strip() else ""
    omniq_logging.get_logger().warning(
        f"omniq web: the {what} could not read the store: {type(error).__name__}: {first}"
    )
