"""SQLite storage's schema, migrations and statements: plain data, written once.

Shared by ``omniq._async.storage.sqlite`` and its generated blocking twin.

Schema v2 keeps the pages a commit writes few, because with ``synchronous=FULL``
every page is written to the WAL and synced: the table is ``WITHOUT ROWID``,
keyed by the task id (ids are time-ordered, so inserts land on the right edge and
the id breaks ties in enqueue order), and every secondary index is partial, so a
write touches only the indexes of the states it moves a task between. An enqueue
writes the table and the due index (and the unique-key index when it has a key).

The claim order (priority, then eta, then id) across queues comes from the due
index ``(queue, priority, eta, id)``: a short recursive query finds each
(queue, priority) *level* that has pending tasks and the earliest eta in it (one
index seek per level), and the claim then takes the first due rows of each level
that has any, each branch one index range of at most ``limit`` rows. The cost
grows with the number of levels, never with the backlog.
"""

from __future__ import annotations

import functools

from omniq.records import FINAL_STATUSES, RECORD_FIELDS

SCHEMA_VERSION = 2
TABLE = "omniq_tasks"
COLUMNS = ", ".join(RECORD_FIELDS)
_FINAL = ", ".join(f"'{status}'" for status in sorted(FINAL_STATUSES))

_TABLE_DEFINITION = f"""
    CREATE TABLE {TABLE} (
        id TEXT PRIMARY KEY NOT NULL,
        func_path TEXT NOT NULL,
        payload TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        max_retries INTEGER,
        eta REAL NOT NULL,
        interval REAL,
        timeout REAL,
        result TEXT,
        error TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        started_at REAL,
        finished_at REAL,
        lease_until REAL,
        attempt_token TEXT,
        correlation_id TEXT,
        parent_id TEXT,
        queue TEXT NOT NULL DEFAULT 'default',
        priority INTEGER NOT NULL DEFAULT 0,
        unique_key TEXT,
        history TEXT,
        worker TEXT
    ) WITHOUT ROWID
"""

_INDEXES = (
    # The claim: per (queue, priority) level, due tasks by eta then id. Partial, so
    # running and finished tasks do not bloat it.
    f"CREATE INDEX {TABLE}_due ON {TABLE} (queue, priority, eta, id) WHERE status = 'pending'",
    f"CREATE INDEX {TABLE}_lease ON {TABLE} (lease_until) WHERE status = 'running'",
    # Retention pruning and purge, in bounded batches.
    f"CREATE INDEX {TABLE}_finished ON {TABLE} (finished_at) WHERE status IN ({_FINAL})",
    # One pending or running task per unique key: the store settles every race.
    f"CREATE UNIQUE INDEX {TABLE}_unique ON {TABLE} (unique_key) "
    "WHERE unique_key IS NOT NULL AND status IN ('pending', 'running')",
)

STATE_TABLE = "omniq_state"
# Named records beside the tasks: schedules (their mark is the last fire time) and the
# worker registry. Few rows, each written now and then.
_STATE_DEFINITION = f"""
    CREATE TABLE {STATE_TABLE} (
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        data TEXT NOT NULL,
        updated_at REAL NOT NULL,
        mark REAL,
        PRIMARY KEY (kind, name)
    ) WITHOUT ROWID
"""

CREATE = (
    _TABLE_DEFINITION,
    *_INDEXES,
    _STATE_DEFINITION,
    f"PRAGMA user_version = {SCHEMA_VERSION}",
)

# Version 1 (omniq 0.1.0): a rowid table with an AUTOINCREMENT seq. Rebuilt as v2 in
# one transaction; every task is kept, in its state, with queue 'default' and
# priority 0. Its uuid4 ids do not sort by time, so pending v1 tasks with equal etas
# may run in another order than they were enqueued (v1 etas are distinct in practice).
_V1_COLUMNS = (
    "id, func_path, payload, status, attempts, max_retries, eta, interval, timeout, result, "
    "error, created_at, updated_at, started_at, finished_at, lease_until, attempt_token, "
    "correlation_id, parent_id"
)
MIGRATE_FROM_V1 = (
    _TABLE_DEFINITION.replace(f"CREATE TABLE {TABLE}", f"CREATE TABLE {TABLE}_v2"),
    f"INSERT INTO {TABLE}_v2 ({_V1_COLUMNS}) SELECT {_V1_COLUMNS} FROM {TABLE} ORDER BY seq",
    f"DROP TABLE {TABLE}",
    f"ALTER TABLE {TABLE}_v2 RENAME TO {TABLE}",
    *_INDEXES,
    _STATE_DEFINITION,
    f"PRAGMA user_version = {SCHEMA_VERSION}",
)
V1_TABLE_COLUMNS = frozenset(("seq", *_V1_COLUMNS.split(", ")))
V2_TABLE_COLUMNS = frozenset(RECORD_FIELDS)

_PENDING = f"{TABLE} INDEXED BY {TABLE}_due WHERE status = 'pending'"

# Every (queue, priority) level with pending tasks, highest priority first within a
# queue, with its earliest eta: each step is one seek in the due index.
ALL_LEVELS = f"""
    WITH RECURSIVE level(q, p) AS (
        SELECT first.q, (SELECT priority FROM {_PENDING} AND queue = first.q
                         ORDER BY priority DESC LIMIT 1)
        FROM (SELECT queue AS q FROM {_PENDING} ORDER BY queue DESC LIMIT 1) AS first
        UNION ALL
        SELECT
            CASE WHEN (SELECT priority FROM {_PENDING} AND queue = level.q
                       AND priority < level.p ORDER BY priority DESC LIMIT 1) IS NOT NULL
                 THEN level.q
                 ELSE (SELECT queue FROM {_PENDING} AND queue < level.q
                       ORDER BY queue DESC LIMIT 1) END,
            COALESCE(
                (SELECT priority FROM {_PENDING} AND queue = level.q AND priority < level.p
                 ORDER BY priority DESC LIMIT 1),
                (SELECT priority FROM {_PENDING} AND queue = (
                    SELECT queue FROM {_PENDING} AND queue < level.q
                    ORDER BY queue DESC LIMIT 1) ORDER BY priority DESC LIMIT 1))
        FROM level WHERE level.q IS NOT NULL
    )
    SELECT q, p, (SELECT eta FROM {_PENDING} AND queue = level.q AND priority = level.p
                  ORDER BY eta LIMIT 1)
    FROM level WHERE q IS NOT NULL
"""


@functools.lru_cache(maxsize=64)
def levels_of(count: int) -> str:
    """The levels of ``count`` named queues (the queues are the parameters)."""
    seeds = " UNION ALL ".join("SELECT ? AS q" for _ in range(count))
    return f"""
        WITH RECURSIVE level(q, p) AS (
            SELECT seed.q, (SELECT priority FROM {_PENDING} AND queue = seed.q
                            ORDER BY priority DESC LIMIT 1)
            FROM ({seeds}) AS seed
            UNION ALL
            SELECT level.q, (SELECT priority FROM {_PENDING} AND queue = level.q
                             AND priority < level.p ORDER BY priority DESC LIMIT 1)
            FROM level WHERE level.p IS NOT NULL
        )
        SELECT q, p, (SELECT eta FROM {_PENDING} AND queue = level.q AND priority = level.p
                      ORDER BY eta LIMIT 1)
        FROM level WHERE p IS NOT NULL
    """


_CLAIM_SET = (
    "SET status = 'running', attempts = attempts + 1, attempt_token = ?, lease_until = ?, "
    "started_at = ?, updated_at = ?, worker = ?"
)
_BRANCH = (
    f"SELECT id, priority, eta FROM {_PENDING} AND queue = ? AND priority = ? AND eta <= ? "
    "ORDER BY eta, id LIMIT ?"
)


@functools.lru_cache(maxsize=64)
def claim_of(levels: int) -> str:
    """The claim over ``levels`` (queue, priority) levels with due tasks.

    Parameters: the five of the SET, then (queue, priority, now, limit) per level,
    then the limit once more when there are several levels.
    """
    if levels == 1:
        chosen = _BRANCH.replace("SELECT id, priority, eta", "SELECT id")
    else:
        branches = " UNION ALL ".join(f"SELECT * FROM ({_BRANCH})" for _ in range(levels))
        chosen = f"SELECT id FROM ({branches}) ORDER BY priority DESC, eta, id LIMIT ?"
    return f"UPDATE {TABLE} {_CLAIM_SET} WHERE id IN ({chosen}) RETURNING {COLUMNS}"


@functools.lru_cache(maxsize=256)
def insert_of(columns: tuple[str, ...], unique: bool) -> str:
    """An insert of just ``columns`` (the non-null ones: binding fewer values is cheaper).

    With ``unique``, a task whose key a pending or running task holds is skipped.
    """
    marks = ", ".join("?" for _ in columns)
    sql = f"INSERT INTO {TABLE} ({', '.join(columns)}) VALUES ({marks})"
    if unique:
        sql += (
            " ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL AND "
            "status IN ('pending', 'running') DO NOTHING"
        )
    return sql


@functools.lru_cache(maxsize=16)
def insert_rows_of(columns: tuple[str, ...], count: int) -> str:
    """One insert of ``count`` rows of ``columns`` (no unique keys): a multi-row ``VALUES``.

    SQLite inserts such a statement's rows in one step, about half the cost a row of
    an ``executemany`` of single-row inserts, which steps and resets once a row.
    """
    row = "(" + ", ".join("?" for _ in columns) + ")"
    return f"INSERT INTO {TABLE} ({', '.join(columns)}) VALUES {', '.join([row] * count)}"


HOLDER = f"SELECT id FROM {TABLE} WHERE unique_key = ? AND status IN ('pending', 'running')"

FINISH = f"""
    UPDATE {TABLE}
    SET status = ?, result = ?, error = ?, eta = COALESCE(?, eta), updated_at = ?,
        finished_at = ?, lease_until = NULL, attempt_token = NULL,
        history = COALESCE(?, history)
    WHERE id = ? AND status = 'running' AND COALESCE(attempt_token, '') = ?
        AND (? IS NULL OR lease_until < ?)
"""

RELEASE = f"""
    UPDATE {TABLE}
    SET status = 'pending', attempts = MAX(attempts - 1, 0), eta = ?, updated_at = ?,
        lease_until = NULL, attempt_token = NULL, history = COALESCE(?, history)
    WHERE id = ? AND status = 'running' AND attempt_token = ?
"""

HEARTBEAT = (
    f"UPDATE {TABLE} SET lease_until = ? WHERE id = ? AND status = 'running' AND attempt_token = ?"
)

EXPIRED = (
    f"SELECT {COLUMNS} FROM {TABLE} INDEXED BY {TABLE}_lease "
    "WHERE status = 'running' AND lease_until < ? ORDER BY lease_until LIMIT ?"
)

GET = f"SELECT {COLUMNS} FROM {TABLE} WHERE id = ?"

CANCEL = (
    f"UPDATE {TABLE} SET status = 'cancelled', updated_at = ?, finished_at = ? "
    "WHERE id = ? AND status = 'pending'"
)

# Back to pending unless another pending or running task took its unique key meanwhile.
REQUEUE = f"""
    UPDATE {TABLE} SET status = 'pending', attempts = 0, eta = ?, updated_at = ?,
        error = NULL, result = NULL, finished_at = NULL, started_at = NULL
    WHERE id = ? AND status IN ('failed', 'cancelled')
        AND (unique_key IS NULL OR NOT EXISTS (
            SELECT 1 FROM {TABLE} AS other
            WHERE other.unique_key = {TABLE}.unique_key
                AND other.status IN ('pending', 'running')))
"""

COUNT_BY_QUEUE = f"SELECT queue, status, COUNT(*) FROM {TABLE} GROUP BY queue, status"


def purge_of(statuses: tuple[str, ...], limited: bool) -> str:
    """Delete tasks of ``statuses`` (final ones, checked by the caller) finished before ``?``.

    The statuses are literals, so the planner sees that the finished index applies.
    """
    chosen = ", ".join(f"'{status}'" for status in statuses)
    where = f"status IN ({_FINAL}) AND status IN ({chosen}) AND finished_at < ?"
    if not limited:
        return f"DELETE FROM {TABLE} WHERE {where}"
    return (
        f"DELETE FROM {TABLE} WHERE id IN (SELECT id FROM {TABLE} INDEXED BY {TABLE}_finished "
        f"WHERE {where} LIMIT ?)"
    )


def list_of(status: bool, queue: bool) -> str:
    """A page of tasks, newest change first, filtered by status and/or queue."""
    terms = [term for term, wanted in (("status = ?", status), ("queue = ?", queue)) if wanted]
    where = f"WHERE {' AND '.join(terms)}" if terms else ""
    return (
        f"SELECT {COLUMNS} FROM {TABLE} {where} ORDER BY updated_at DESC, id DESC LIMIT ? OFFSET ?"
    )


@functools.lru_cache(maxsize=64)
def find_of(status: bool, queue: bool, func: bool, task_id: bool, parent: bool) -> str:
    """A page of tasks matching a :class:`~omniq.records.TaskFilter` (the set fields, in
    this order, are the parameters), newest change first."""
    terms = [
        term
        for term, wanted in (
            ("status = ?", status),
            ("queue = ?", queue),
            ("instr(func_path, ?) > 0", func),
            ("instr(id, ?) > 0", task_id),
            ("parent_id = ?", parent),
        )
        if wanted
    ]
    where = f"WHERE {' AND '.join(terms)}" if terms else ""
    return (
        f"SELECT {COLUMNS} FROM {TABLE} {where} ORDER BY updated_at DESC, id DESC LIMIT ? OFFSET ?"
    )


# Finished tasks per (time slot, queue, status) since a moment: a range of the finished
# index (the slot, the since time and the since time again are the parameters).
COUNT_FINISHED = f"""
    SELECT CAST((finished_at - ?) / ? AS INTEGER) AS slot, queue, status, COUNT(*)
    FROM {TABLE} INDEXED BY {TABLE}_finished
    WHERE status IN ({_FINAL}) AND finished_at >= ?
    GROUP BY slot, queue, status
"""

STATE_COLUMNS = "kind, name, data, updated_at, mark"
PUT_STATE = (
    f"INSERT INTO {STATE_TABLE} (kind, name, data, updated_at) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (kind, name) DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at"
)
GET_STATE = f"SELECT {STATE_COLUMNS} FROM {STATE_TABLE} WHERE kind = ? AND name = ?"
LIST_STATE = f"SELECT {STATE_COLUMNS} FROM {STATE_TABLE} WHERE kind = ? ORDER BY name"
DELETE_STATE = f"DELETE FROM {STATE_TABLE} WHERE kind = ? AND name = ?"
ADVANCE_STATE = (
    f"UPDATE {STATE_TABLE} SET mark = ? WHERE kind = ? AND name = ? AND (mark IS NULL OR mark < ?)"
)
