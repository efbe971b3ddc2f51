"""PostgreSQL storage's SQL, schema and helpers: plain data, written once.

Shared by ``omniq._async.storage.postgres`` and its generated blocking twin, so the
statements are not copied into both. Times are epoch seconds from the database
clock (see ``NOW``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from omniq.models import TaskStatus
from omniq.records import RECORD_FIELDS, Transition

SCHEMA_VERSION = 1
TABLE = "omniq_tasks"
VERSION_TABLE = "omniq_schema_version"
COLUMNS = ", ".join(f'"{name}"' for name in RECORD_FIELDS)  # "interval" is a keyword
T_COLUMNS = ", ".join(f't."{name}"' for name in RECORD_FIELDS)
PLACEHOLDERS = ", ".join("%s" for _ in RECORD_FIELDS)
ETA_COLUMN = 1 + RECORD_FIELDS.index("eta")  # in claim rows, which start with seq
FINAL = tuple(s.value for s in (TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED))
# The database clock as epoch seconds. Stable within a statement, so the planner can
# compare it with an index (clock_timestamp() is volatile and could not be).
NOW = "extract(epoch FROM statement_timestamp())::float8"
# First key of the advisory lock that serializes migrations (the second: the schema hash).
MIGRATION_LOCK_CLASS = 0x6F6D6E69  # "omni"
NAME_LIMIT = 63  # PostgreSQL identifiers, channel names included, are at most 63 bytes
PAYLOAD_LIMIT = 8000  # bytes of a NOTIFY payload
LISTEN_SLICE = 0.5  # how long one wait for notifications lasts before the stop flag is read
RECONNECT_MIN, RECONNECT_MAX = 0.1, 10.0

MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        f"""
        CREATE TABLE {TABLE} (
            seq bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
            id text PRIMARY KEY,
            func_path text NOT NULL,
            payload text NOT NULL,
            status text NOT NULL,
            attempts integer NOT NULL DEFAULT 0,
            max_retries integer,
            eta double precision NOT NULL,
            "interval" double precision,
            timeout double precision,
            result text,
            error text,
            created_at double precision NOT NULL,
            updated_at double precision NOT NULL,
            started_at double precision,
            finished_at double precision,
            lease_until double precision,
            attempt_token text,
            correlation_id text,
            parent_id text
        )
        """,
        # The claim walks this index in order and stops after LIMIT rows: its cost does
        # not grow with the backlog. Partial, so finished tasks do not bloat it.
        f"CREATE INDEX {TABLE}_due ON {TABLE} (eta, seq) WHERE status = 'pending'",
        f"CREATE INDEX {TABLE}_lease ON {TABLE} (lease_until) WHERE status = 'running'",
        f"CREATE INDEX {TABLE}_status ON {TABLE} (status, updated_at, seq)",
        f"CREATE INDEX {TABLE}_updated ON {TABLE} (updated_at, seq)",
    ),
}

INSERT = f"INSERT INTO {TABLE} ({COLUMNS}) VALUES ({PLACEHOLDERS})"
INSERT_ONE = f"WITH new AS ({INSERT} RETURNING 1) SELECT pg_notify(%s, '')"

CLAIM = f"""
    UPDATE {TABLE} AS t
    SET status = 'running', attempts = t.attempts + 1, attempt_token = %(token)s,
        lease_until = {NOW} + %(lease)s, started_at = {NOW}, updated_at = {NOW}
    FROM (
        SELECT seq FROM {TABLE}
        WHERE status = 'pending' AND eta <= {NOW}
        ORDER BY eta, seq
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    ) AS due
    WHERE t.seq = due.seq
    RETURNING t.seq, {T_COLUMNS}
"""

FINISH = f"""
    UPDATE {TABLE}
    SET status = %(status)s, result = %(result)s, error = %(error)s,
        eta = COALESCE({NOW} + %(delay)s::float8, eta), updated_at = {NOW},
        finished_at = CASE WHEN %(final)s THEN {NOW} END,
        lease_until = NULL, attempt_token = NULL
    WHERE id = %(id)s AND status = 'running' AND attempt_token = %(token)s
        AND (%(expiry)s::float8 IS NULL OR lease_until < {NOW} + %(expiry)s::float8)
"""

# Many outcomes without successors in one statement (one round-trip, one commit); the
# notification is sent if any of them made a task pending again (a retry), and the
# tasks that reached a final state are named, in one notification, on the finished
# channel (result waiters; the subquery runs once, and only if a row changed).
# The ids of the finished rows of ``done``, comma-separated; '' (any) past NOTIFY's limit.
FINISHED_IDS = f"""CASE WHEN sum(octet_length(id) + 1) < {PAYLOAD_LIMIT}
    THEN string_agg(id, ',') ELSE '' END"""

FINISH_MANY = f"""
    WITH done AS (
        UPDATE {TABLE} AS t
        SET status = v.status, result = v.result, error = v.error,
            eta = COALESCE({NOW} + v.delay, t.eta), updated_at = {NOW},
            finished_at = CASE WHEN v.final THEN {NOW} END,
            lease_until = NULL, attempt_token = NULL
        FROM unnest(
            %(ids)s::text[], %(tokens)s::text[], %(statuses)s::text[], %(results)s::text[],
            %(errors)s::text[], %(delays)s::float8[], %(finals)s::bool[], %(wakes)s::bool[],
            %(expiries)s::float8[]
        ) AS v(id, token, status, result, error, delay, final, wakes, expiry)
        WHERE t.id = v.id AND t.status = 'running' AND t.attempt_token = v.token
            AND (v.expiry IS NULL OR t.lease_until < {NOW} + v.expiry)
        RETURNING t.id, v.wakes, v.final
    )
    SELECT id, CASE WHEN wakes THEN pg_notify(%(channel)s, '') END, (
        SELECT pg_notify(%(finished_channel)s, {FINISHED_IDS}) FROM done WHERE final
        HAVING count(*) > 0
    )
    FROM done
"""

RELEASE = f"""
    UPDATE {TABLE}
    SET status = 'pending', attempts = GREATEST(attempts - 1, 0), eta = {NOW},
        updated_at = {NOW}, lease_until = NULL, attempt_token = NULL
    WHERE id = %s AND status = 'running' AND attempt_token = %s
"""

HEARTBEAT = f"""
    UPDATE {TABLE} AS t SET lease_until = {NOW} + %s
    FROM unnest(%s::text[], %s::text[]) AS held(id, token)
    WHERE t.id = held.id AND t.status = 'running' AND t.attempt_token = held.token
    RETURNING t.id
"""

REQUEUE = f"""
    UPDATE {TABLE}
    SET status = 'pending', attempts = 0, eta = {NOW}, updated_at = {NOW}, error = NULL,
        result = NULL, finished_at = NULL, lease_until = NULL, attempt_token = NULL
    WHERE id = %s AND status IN ('failed', 'cancelled')
"""


def finish_params(task_id: str, token: str, transition: Transition) -> dict[str, Any]:
    return {
        "status": transition.status,
        "result": transition.result,
        "error": transition.error,
        "delay": None if transition.eta is None else transition.eta - transition.now,
        "final": transition.is_final,
        "id": task_id,
        "token": token,
        "expiry": expiry(transition),
    }


def expiry(transition: Transition) -> float | None:
    """A recovery's ``expired_before``, relative to its ``now``: compared on the db clock."""
    if transition.expired_before is None:
        return None
    return transition.expired_before - transition.now


def wakes(transition: Transition) -> bool:
    """Whether applying ``transition`` makes a task pending (a retry, a next run)."""
    return transition.status == TaskStatus.PENDING.value or transition.successor is not None


def finished_channel(channel: str) -> str:
    """The channel naming finished tasks, beside ``channel`` (at most 63 bytes).

    ``channel_name`` never makes an ``omniq-done.`` name, so the two cannot meet.
    """
    name = "omniq-done." + channel.removeprefix("omniq.")
    if len(name.encode()) > NAME_LIMIT:
        name = "omniq-done." + hashlib.sha256(channel.encode()).hexdigest()[:32]
    return name


def finished_payloads(task_ids: Sequence[str]) -> list[str]:
    """``task_ids`` comma-separated, in as few NOTIFY payloads as their limit allows."""
    payloads: list[str] = []
    current: list[str] = []
    size = 0
    for task_id in task_ids:
        length = len(task_id.encode()) + 1
        if current and size + length >= PAYLOAD_LIMIT:
            payloads.append(",".join(current))
            current, size = [], 0
        current.append(task_id)
        size += length
    if current:
        payloads.append(",".join(current))
    return payloads


def channel_name(schema: str) -> str:
    """The NOTIFY channel of the tasks table in ``schema`` (at most 63 bytes)."""
    name = f"omniq.{schema}"
    if len(name.encode()) > NAME_LIMIT:
        name = "omniq." + hashlib.sha256(schema.encode()).hexdigest()[:32]
    return name
