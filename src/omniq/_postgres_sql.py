"""PostgreSQL storage's statements and their parameters: plain data, written once.

Shared by ``omniq._async.storage.postgres`` and its generated blocking twin, so the
statements are not copied into both. Times are epoch seconds from the database
clock (see ``NOW``). Each rule of the contract is settled by one statement: the
claim order and routing by the claim, unique keys by the unique index (``ON
CONFLICT``), so no read-then-write in Python can race another process.

The claim walks the due index ``(queue, priority, eta, seq)``: a recursive query
finds each (queue, priority) *level* with pending tasks (a loose index scan: one
seek per level), the levels are visited highest priority first, and in each a
``LATERAL`` seek takes its first due rows ``FOR UPDATE SKIP LOCKED``. An
incremental sort on the priority merges the levels of one priority by eta and stops
reading once ``limit`` rows are in hand, so lower priorities are never read (nor
locked). The cost grows with the number of levels, never with the backlog.
"""

from __future__ import annotations

import functools
import hashlib
import operator
from collections.abc import Sequence
from typing import Any

from omniq._postgres_schema import FINAL_LIST, STATE_TABLE, TABLE, UNIQUE_ACTIVE
from omniq.models import TaskStatus
from omniq.records import RECORD_FIELDS, TaskRecord, Transition

COLUMNS = ", ".join(f'"{name}"' for name in RECORD_FIELDS)  # "interval" is a keyword
T_COLUMNS = ", ".join(f't."{name}"' for name in RECORD_FIELDS)
# Claimed rows start with seq: their claim order is (-priority, eta, seq).
CLAIM_ORDER = tuple(1 + RECORD_FIELDS.index(name) for name in ("priority", "eta"))
# The database clock as epoch seconds. Stable within a statement, so the planner can
# compare it with an index (clock_timestamp() is volatile and could not be).
NOW = "extract(epoch FROM statement_timestamp())::float8"
NAME_LIMIT = 63  # PostgreSQL identifiers, channel names included, are at most 63 bytes
PAYLOAD_LIMIT = 8000  # bytes of a NOTIFY payload
_PENDING = f"FROM {TABLE} WHERE status = 'pending'"
_FLOATS = frozenset(
    (
        "eta",
        "interval",
        "timeout",
        "created_at",
        "updated_at",
        "started_at",
        "finished_at",
        "lease_until",
    )
)
_TYPES = {
    **dict.fromkeys(("attempts", "max_retries", "priority"), "integer"),
    **dict.fromkeys(_FLOATS, "float8"),
}

# ---------------------------------------------------------------------- levels and claims

# Every (queue, priority) level with pending tasks, in (queue, priority) order: each
# step is one seek in the due index, to the next priority of the queue or else to the
# first priority of the next queue.
_ALL_LEVELS = f"""level(q, p) AS (
    (SELECT queue, priority {_PENDING} ORDER BY queue, priority LIMIT 1)
    UNION ALL
    SELECT next.queue, next.priority FROM level CROSS JOIN LATERAL (
        (SELECT queue, priority {_PENDING} AND queue = level.q AND priority > level.p
         ORDER BY queue, priority LIMIT 1)
        UNION ALL
        (SELECT queue, priority {_PENDING} AND queue > level.q ORDER BY queue, priority LIMIT 1)
        LIMIT 1
    ) AS next
)"""

# The levels of the queues named by %(queues)s.
_QUEUE_LEVELS = f"""level(q, p) AS (
    SELECT first.queue, first.priority FROM unnest(%(queues)s::text[]) AS named(q)
    CROSS JOIN LATERAL (
        SELECT queue, priority {_PENDING} AND queue = named.q ORDER BY queue, priority LIMIT 1
    ) AS first
    UNION ALL
    SELECT next.queue, next.priority FROM level CROSS JOIN LATERAL (
        SELECT queue, priority {_PENDING} AND queue = level.q AND priority > level.p
        ORDER BY queue, priority LIMIT 1
    ) AS next
)"""


def _levels(named: bool) -> str:
    return _QUEUE_LEVELS if named else _ALL_LEVELS


@functools.lru_cache(maxsize=128)
def claim(named: bool, limit: int) -> str:
    """The claim over every queue, or (``named``) over the queues in ``%(queues)s``.

    Parameters: ``token``, ``lease`` (seconds from the database's now), ``worker``
    (and ``queues``). ``limit`` is written into the statement: no parameter then
    changes the plan, so the server plans a prepared claim once (psycopg prepares
    frequent statements) instead of on every run, which costs a third of a claim.
    The chosen rows reach the update as an array, so it finds them by index whatever
    the plan (a join let a generic plan hash the whole table).
    """
    return f"""
    WITH RECURSIVE {_levels(named)}
    UPDATE {TABLE} AS t
    SET status = 'running', attempts = t.attempts + 1, attempt_token = %(token)s,
        lease_until = {NOW} + %(lease)s, started_at = {NOW}, updated_at = {NOW},
        worker = %(worker)s
    WHERE t.seq = ANY(ARRAY(
        SELECT due.seq FROM (SELECT q, p FROM level ORDER BY p DESC) AS l
        CROSS JOIN LATERAL (
            SELECT seq, eta {_PENDING} AND queue = l.q AND priority = l.p AND eta <= {NOW}
            ORDER BY eta, seq LIMIT {int(limit)}
            FOR UPDATE SKIP LOCKED
        ) AS due
        ORDER BY l.p DESC, due.eta, due.seq
        LIMIT {int(limit)}
    ))
    RETURNING t.seq, {T_COLUMNS}
    """


@functools.lru_cache(maxsize=2)
def next_eta(named: bool) -> str:
    """The earliest pending eta of every queue, or of the queues in ``%(queues)s``."""
    return f"""
    WITH RECURSIVE {_levels(named)}
    SELECT min(first.eta) FROM level CROSS JOIN LATERAL (
        SELECT eta {_PENDING} AND queue = level.q AND priority = level.p ORDER BY eta LIMIT 1
    ) AS first
    """


# Per queue of %(queues)s with pending tasks, its earliest eta (one seek per level).
EARLIEST_PENDING = f"""
    WITH RECURSIVE {_QUEUE_LEVELS}
    SELECT level.q, min(first.eta) FROM level CROSS JOIN LATERAL (
        SELECT eta {_PENDING} AND queue = level.q AND priority = level.p ORDER BY eta LIMIT 1
    ) AS first
    GROUP BY level.q
"""


def claimed_records(rows: Sequence[Sequence[Any]]) -> list[TaskRecord]:
    """Claimed rows (seq first) as records, in claim order (RETURNING promises none)."""
    priority, eta = CLAIM_ORDER
    ordered = sorted(rows, key=lambda row: (-row[priority], row[eta], row[0]))
    return [TaskRecord(*row[1:]) for row in ordered]


# ---------------------------------------------------------------------- inserts

_INSERT = f"INSERT INTO {TABLE} ({COLUMNS})"
_VALUES = f"VALUES ({', '.join('%s' for _ in RECORD_FIELDS)})"
# A task whose unique key an active task holds is not stored: the holder is touched
# (a no-op update, which locks it) so that RETURNING names it, in the same statement,
# even when its insert committed after this statement's snapshot was taken.
_UNIQUE = (
    f"ON CONFLICT (unique_key) WHERE {UNIQUE_ACTIVE} DO UPDATE SET unique_key = EXCLUDED.unique_key"
)

INSERT = f"{_INSERT} {_VALUES}"
# One task without a unique key, and the wake-up: one statement, one round-trip.
INSERT_ONE = f"WITH new AS ({INSERT} RETURNING 1) SELECT pg_notify(%s, '') FROM new"
# One task with a unique key; the row names the task that stands for it (the wake-up
# only if that is the new task). Parameters: the record, its id, the channel.
INSERT_ONE_UNIQUE = f"""
    WITH new AS ({INSERT} {_UNIQUE} RETURNING id)
    SELECT id, CASE WHEN id = %s THEN pg_notify(%s, '') END FROM new
"""
# A successor (the next run of an interval task) keeps its key unless another holds it.
INSERT_UNLESS_HELD = f"{INSERT} ON CONFLICT (unique_key) WHERE {UNIQUE_ACTIVE} DO NOTHING"

_ARRAYS = ", ".join(f"%({name})s::{_TYPES.get(name, 'text')}[]" for name in RECORD_FIELDS)
_INPUT = f"SELECT * FROM unnest({_ARRAYS}) AS input({COLUMNS})"
_INSERT_INPUT = (
    f"""new AS ({_INSERT} SELECT {COLUMNS} FROM input {_UNIQUE} RETURNING id, unique_key)"""
)
# Whether any record was stored (not refused for its key): then the wake-up, once.
_WAKE_IF_STORED = "(SELECT pg_notify(%(channel)s, '') FROM new JOIN input USING (id) LIMIT 1)"
# Many tasks in one statement, from one array per column. Rows name (id, unique_key)
# of the task that stands for each stored or refused record; the caller keeps one
# record per unique key (the first), so no row meets its own batch in the index.
INSERT_MANY = f"""
    WITH input AS ({_INPUT}), {_INSERT_INPUT}
    SELECT id, unique_key, {_WAKE_IF_STORED} FROM new
"""


# A batch of at least COPY_MIN records without unique keys streams in with COPY: its
# rows are formatted in C, where the unnest arrays are dumped in Python (about 28 µs
# per record of 24 columns); below that the extra round trips (BEGIN, the COPY's
# start and end, NOTIFY, COMMIT) cost more than the arrays. The binary format costs
# the client 1.4 µs a row against 6 µs for text, and the server no number parsing.
COPY_MIN = 64
COPY_IN = f"COPY {TABLE} ({COLUMNS}) FROM STDIN (FORMAT BINARY)"
COPY_TYPES = tuple(_TYPES.get(name, "text") for name in RECORD_FIELDS)  # for set_types()
NOTIFY = "SELECT pg_notify(%s, '')"


_ROW = operator.attrgetter(*RECORD_FIELDS)  # one C call for all the columns


def record_row(record: TaskRecord) -> tuple[object, ...]:
    """A record's values in column order."""
    row: tuple[object, ...] = _ROW(record)
    return row


def column_arrays(records: Sequence[TaskRecord]) -> dict[str, list[object]]:
    """One list per column for :data:`INSERT_MANY` (times as floats: one array type)."""
    arrays: dict[str, list[object]] = {}
    for name in RECORD_FIELDS:
        values = [getattr(record, name) for record in records]
        if name in _FLOATS:
            values = [None if value is None else float(value) for value in values]
        arrays[name] = values
    return arrays


def first_of_each_key(records: Sequence[TaskRecord]) -> list[TaskRecord]:
    """``records`` without those whose unique key an earlier one has (the first wins)."""
    kept: list[TaskRecord] = []
    keys: set[str] = set()
    for record in records:
        if record.unique_key is not None:
            if record.unique_key in keys:
                continue
            keys.add(record.unique_key)
        kept.append(record)
    return kept


# ---------------------------------------------------------------------- outcomes

# A RUNNING task without an attempt token (a damaged or foreign row) is held by the
# empty token, so that recovery and the decoding check can settle it.
_HELD = "COALESCE(t.attempt_token, '')"

FINISH = f"""
    UPDATE {TABLE} AS t
    SET status = %(status)s, result = %(result)s, error = %(error)s,
        eta = COALESCE({NOW} + %(delay)s::float8, eta), updated_at = {NOW},
        finished_at = CASE WHEN %(final)s THEN {NOW} END,
        lease_until = NULL, attempt_token = NULL,
        history = COALESCE(%(history)s::text, history)
    WHERE id = %(id)s AND status = 'running' AND {_HELD} = %(token)s
        AND (%(expiry)s::float8 IS NULL OR lease_until < {NOW} + %(expiry)s::float8)
"""

# The ids of the finished rows of ``done``, comma-separated; '' (any) past NOTIFY's limit.
_FINISHED_IDS = f"""CASE WHEN sum(octet_length(id) + 1) < {PAYLOAD_LIMIT}
    THEN string_agg(id, ',') ELSE '' END"""

# Many outcomes without successors in one statement (one round-trip, one commit); the
# wake-up is sent if any of them made a task pending again (a retry), and the tasks
# that reached a final state are named, in one notification, on the finished channel
# (result waiters; the subquery runs once, and only if a row changed).
FINISH_MANY = f"""
    WITH done AS (
        UPDATE {TABLE} AS t
        SET status = v.status, result = v.result, error = v.error,
            eta = COALESCE({NOW} + v.delay, t.eta), updated_at = {NOW},
            finished_at = CASE WHEN v.final THEN {NOW} END,
            lease_until = NULL, attempt_token = NULL,
            history = COALESCE(v.history, t.history)
        FROM unnest(
            %(ids)s::text[], %(tokens)s::text[], %(statuses)s::text[], %(results)s::text[],
            %(errors)s::text[], %(delays)s::float8[], %(finals)s::bool[], %(wakes)s::bool[],
            %(expiries)s::float8[], %(histories)s::text[]
        ) AS v(id, token, status, result, error, delay, final, wakes, expiry, history)
        WHERE t.id = v.id AND t.status = 'running' AND {_HELD} = v.token
            AND (v.expiry IS NULL OR t.lease_until < {NOW} + v.expiry)
        RETURNING t.id, v.wakes, v.final
    )
    SELECT id, CASE WHEN wakes THEN pg_notify(%(channel)s, '') END, (
        SELECT pg_notify(%(finished_channel)s, {_FINISHED_IDS}) FROM done WHERE final
        HAVING count(*) > 0
    )
    FROM done
"""


def finish_params(task_id: str, token: str, transition: Transition) -> dict[str, Any]:
    """The parameters of :data:`FINISH`."""
    return {
        "status": transition.status,
        "result": transition.result,
        "error": transition.error,
        "delay": delay(transition),
        "final": transition.is_final,
        "history": transition.history,
        "id": task_id,
        "token": token,
        "expiry": expiry(transition),
    }


def finish_many_params(
    items: Sequence[tuple[str, str, Transition]], channel: str
) -> dict[str, Any]:
    """The parameters of :data:`FINISH_MANY`."""
    transitions = [transition for _, _, transition in items]
    return {
        "ids": [task_id for task_id, _, _ in items],
        "tokens": [token for _, token, _ in items],
        "statuses": [t.status for t in transitions],
        "results": [t.result for t in transitions],
        "errors": [t.error for t in transitions],
        "delays": [delay(t) for t in transitions],
        "finals": [t.is_final for t in transitions],
        "wakes": [wakes(t) for t in transitions],
        "expiries": [expiry(t) for t in transitions],
        "histories": [t.history for t in transitions],
        "channel": channel,
        "finished_channel": finished_channel(channel),
    }


def delay(transition: Transition) -> float | None:
    """A retry's eta relative to its ``now``: stamped on the database clock."""
    return None if transition.eta is None else transition.eta - transition.now


def expiry(transition: Transition) -> float | None:
    """A recovery's ``expired_before``, relative to its ``now``: compared on the db clock."""
    if transition.expired_before is None:
        return None
    return transition.expired_before - transition.now


def wakes(transition: Transition) -> bool:
    """Whether applying ``transition`` makes a task pending (a retry, a next run)."""
    return transition.status == TaskStatus.PENDING.value or transition.successor is not None


# ---------------------------------------------------------------------- the other writes


def _notifying(update: str) -> str:
    """``update`` (one row at most) and, if it changed a row, the wake-up: one statement."""
    return f"WITH changed AS ({update} RETURNING 1) SELECT pg_notify(%(channel)s, '') FROM changed"


RELEASE = _notifying(
    f"""UPDATE {TABLE} AS t
    SET status = 'pending', attempts = GREATEST(attempts - 1, 0), eta = {NOW},
        updated_at = {NOW}, lease_until = NULL, attempt_token = NULL,
        history = COALESCE(%(history)s::text, history)
    WHERE id = %(id)s AND status = 'running' AND {_HELD} = %(token)s"""
)

# Back to pending unless another pending or running task holds its unique key (a
# holder that commits meanwhile makes the index refuse the row: the caller says False).
REQUEUE = _notifying(
    f"""UPDATE {TABLE} AS t
    SET status = 'pending', attempts = 0, eta = {NOW}, updated_at = {NOW}, error = NULL,
        result = NULL, started_at = NULL, finished_at = NULL, lease_until = NULL,
        attempt_token = NULL
    WHERE id = %(id)s AND status IN ('failed', 'cancelled')
        AND (unique_key IS NULL OR NOT EXISTS (
            SELECT 1 FROM {TABLE} AS other
            WHERE other.unique_key = t.unique_key AND other.status IN ('pending', 'running')))"""
)

HEARTBEAT = f"""
    UPDATE {TABLE} AS t SET lease_until = {NOW} + %s
    FROM unnest(%s::text[], %s::text[]) AS held(id, token)
    WHERE t.id = held.id AND t.status = 'running' AND t.attempt_token = held.token
    RETURNING t.id
"""

CANCEL = f"""
    WITH c AS (
        UPDATE {TABLE} SET status = 'cancelled', updated_at = {NOW}, finished_at = {NOW}
        WHERE id = %s AND status = 'pending' RETURNING id
    )
    SELECT pg_notify(%s, id) FROM c
"""

# ---------------------------------------------------------------------- reads and purge

EXPIRED = (
    f"SELECT {COLUMNS} FROM {TABLE} WHERE status = 'running' AND lease_until < {NOW} "
    "ORDER BY lease_until LIMIT %s"
)
GET = f"SELECT {COLUMNS} FROM {TABLE} WHERE id = %s"
COUNT_BY_QUEUE = f"SELECT queue, status, count(*) FROM {TABLE} GROUP BY queue, status"


_FILTERS = (
    ("status", "status = %(status)s"),
    ("queue", "queue = %(queue)s"),
    ("func", "strpos(func_path, %(func)s) > 0"),
    ("id", "strpos(id, %(id)s) > 0"),
    ("parent", "parent_id = %(parent)s"),
)


@functools.lru_cache(maxsize=32)
def find_tasks(wanted: frozenset[str]) -> str:
    """A page of tasks, newest change first, filtered by the parameters named in
    ``wanted`` (of ``status``, ``queue``, ``func``, ``id``, ``parent``)."""
    chosen = [term for name, term in _FILTERS if name in wanted]
    where = f"WHERE {' AND '.join(chosen)}" if chosen else ""
    return (
        f"SELECT {COLUMNS} FROM {TABLE} {where} "
        "ORDER BY updated_at DESC, seq DESC LIMIT %(limit)s OFFSET %(offset)s"
    )


# Finished tasks per (time slot, queue, status) since %(since)s: a range of the
# finished index.
COUNT_FINISHED = f"""
    SELECT floor((finished_at - %(since)s) / %(width)s)::bigint AS slot, queue, status, count(*)
    FROM {TABLE} WHERE status IN ({FINAL_LIST}) AND finished_at >= %(since)s
    GROUP BY 1, 2, 3
"""


# The final statuses are literals too, so the planner sees that the finished index
# applies, whatever the parameters (psycopg prepares frequent statements).
_PURGEABLE = (
    f"status IN ({FINAL_LIST}) AND status = ANY(%(statuses)s::text[]) AND finished_at < %(before)s"
)
PURGE = f"DELETE FROM {TABLE} WHERE {_PURGEABLE}"
# One bounded batch, oldest first; rows another purger is deleting are skipped. An
# array, as in the claim, so that any plan deletes by index.
PURGE_BATCH = f"""
    DELETE FROM {TABLE} WHERE seq = ANY(ARRAY(
        SELECT seq FROM {TABLE} WHERE {_PURGEABLE}
        ORDER BY finished_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED
    ))
"""

# ---------------------------------------------------------------------- state records

_STATE_COLUMNS = "kind, name, data, updated_at, mark"
PUT_STATE = (
    f"INSERT INTO {STATE_TABLE} (kind, name, data, updated_at) VALUES (%s, %s, %s, %s) "
    "ON CONFLICT (kind, name) DO UPDATE SET data = EXCLUDED.data, updated_at = EXCLUDED.updated_at"
)
GET_STATE = f"SELECT {_STATE_COLUMNS} FROM {STATE_TABLE} WHERE kind = %s AND name = %s"
LIST_STATE = f"SELECT {_STATE_COLUMNS} FROM {STATE_TABLE} WHERE kind = %s ORDER BY name"
DELETE_STATE = f"DELETE FROM {STATE_TABLE} WHERE kind = %s AND name = %s"
# The mark moves forward and the records are stored, or neither: one statement. The
# update locks the row, so concurrent callers advancing to one mark queue on it and
# find, once it is theirs, that the mark has moved (READ COMMITTED re-checks the row).
ADVANCE_STATE = f"""
    WITH advanced AS (
        UPDATE {STATE_TABLE} SET mark = %(mark)s
        WHERE kind = %(kind)s AND name = %(name)s AND (mark IS NULL OR mark < %(mark)s)
        RETURNING 1
    ),
    input AS ({_INPUT} WHERE EXISTS (SELECT 1 FROM advanced)),
    {_INSERT_INPUT}
    SELECT (SELECT count(*) FROM advanced), {_WAKE_IF_STORED}
"""

# ---------------------------------------------------------------------- channels


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
