"""The SQLite store's operations: plain blocking functions on a ``sqlite3.Connection``.

Written once and shared by both twins. The blocking ``SQLiteStorage`` calls them
directly; ``AsyncSQLiteStorage`` runs each one whole on aiosqlite's connection thread
(``omniq._concurrency.arun_sqlite``), so an operation of many statements (a batch of
outcomes and the next claim) costs the event loop one thread hop, not one per
statement. The connection is in autocommit mode: a lone write statement is atomic on
its own (and takes the write lock when it starts, waiting on the busy timeout); several
go in a ``BEGIN IMMEDIATE`` transaction, which takes the write lock up front.
"""

from __future__ import annotations

import contextlib
import dataclasses
import operator
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from omniq import _sqlite_sql as sql
from omniq._sqlite_idle import Idle
from omniq.exceptions import StorageError
from omniq.records import (
    FINAL_STATUSES,
    RECORD_FIELDS,
    STATUSES,
    StateRecord,
    TaskFilter,
    TaskRecord,
    Transition,
)

# Claimed rows in claim order: higher priority, then earlier eta, then id.
_PRIORITY, _ETA, _ID = (RECORD_FIELDS.index(name) for name in ("priority", "eta", "id"))

# Rows per multi-row insert of a batch, largest first. SQLite's time a row, 10,000
# rows in one transaction: 12.0 µs one a row (executemany), 7.0 in chunks of 20,
# 6.3 in chunks of 200 or 500.
MULTI_ROW_CHUNKS = (200, 20)
Items = Sequence[tuple[str, str, Transition]]


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` if the body raises)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        with contextlib.suppress(sqlite3.Error):  # keep the error that got us here
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def scalar(conn: sqlite3.Connection, query: str) -> int:
    """The first column of the first row of ``query``, as an int (0 for no row)."""
    row = conn.execute(query).fetchone()
    return int(row[0]) if row else 0


def rows(conn: sqlite3.Connection, statement: str, params: Sequence[object]) -> list[Any]:
    """Every row of a read."""
    return conn.execute(statement, params).fetchall()


def records(conn: sqlite3.Connection, statement: str, params: Sequence[object]) -> list[TaskRecord]:
    """Every row of a read of tasks, as records."""
    return [TaskRecord(*row) for row in conn.execute(statement, params)]


def write(conn: sqlite3.Connection, statement: str, params: Sequence[object]) -> int:
    """One autocommit write; how many rows it changed."""
    return conn.execute(statement, params).rowcount


# ---------------------------------------------------------------------- adding tasks


def insert_of(record: TaskRecord) -> tuple[str, tuple[object, ...]]:
    """The insert of one record, binding only its non-null columns (cheaper to bind)."""
    columns: list[str] = []
    values: list[object] = []
    for name, value in record.__dict__.items():  # the fields, in RECORD_FIELDS order
        if value is not None:
            columns.append(name)
            values.append(value)
    return sql.insert_of(tuple(columns), record.unique_key is not None), tuple(values)


def add(conn: sqlite3.Connection, new: Sequence[TaskRecord]) -> list[str]:
    """Insert new tasks, all or none; return the id standing for each (see the contract).

    A lone task without a unique key is one autocommit statement; otherwise one
    transaction.
    """
    if len(new) == 1 and new[0].unique_key is None:
        conn.execute(*insert_of(new[0]))
        return [new[0].id]
    with transaction(conn):
        return add_in(conn, new)


def add_in(conn: sqlite3.Connection, new: Sequence[TaskRecord]) -> list[str]:
    """The inserts of :func:`add`, in the caller's transaction.

    Consecutive tasks with the same columns go in one ``executemany``; a task with a
    unique key is inserted on its own, and when the unique index refuses it the
    holder's id is read in the same transaction (under the write lock: no race).
    """
    ids = [record.id for record in new]
    if all(record.unique_key is None for record in new):
        _insert_rows(conn, *_batch_columns(new))
        return ids
    inserts = [insert_of(record) for record in new]
    position = 0
    while position < len(new):
        statement, values = inserts[position]
        key = new[position].unique_key
        if key is not None:
            if conn.execute(statement, values).rowcount != 1:
                ids[position] = _holder(conn, key)
            position += 1
            continue
        run = position + 1
        while run < len(new) and inserts[run][0] == statement and new[run].unique_key is None:
            run += 1
        conn.executemany(statement, [inserts[k][1] for k in range(position, run)])
        position = run
    return ids


def _batch_columns(new: Sequence[TaskRecord]) -> tuple[tuple[str, ...], list[tuple[object, ...]]]:
    """The columns of a batch without unique keys, and its rows of those columns.

    The columns are those the first record sets, when no record sets another (the
    records of one ``enqueue_many`` leave the same ones None): a column left out takes
    its NULL for free, which costs SQLite about 40 % less a row than binding every
    column. Otherwise every column.
    """
    if not new:
        return RECORD_FIELDS, []
    first = new[0].__dict__
    unset = [name for name, value in first.items() if value is None]
    if len(unset) > 1:
        nulls = operator.attrgetter(*unset)
        if all(nulls(record).count(None) == len(unset) for record in new):
            names = tuple(name for name, value in first.items() if value is not None)
            values = operator.attrgetter(*names)
            return names, [values(record) for record in new]
    return RECORD_FIELDS, [tuple(record.__dict__.values()) for record in new]


def _insert_rows(
    conn: sqlite3.Connection, columns: tuple[str, ...], rows: Sequence[tuple[object, ...]]
) -> None:
    """Insert ``rows`` of ``columns`` in multi-row inserts of a few fixed sizes.

    Each size in ``MULTI_ROW_CHUNKS`` that fits SQLite's limit of bound values takes
    as many whole chunks as are left; the last few rows go through the one-row
    statement. Fixed sizes keep the connection's statement cache at a few statements
    per column set, not one per batch size.
    """
    limit = _variable_limit(conn) // len(columns)
    start = 0
    for per in MULTI_ROW_CHUNKS:
        if per > limit or len(rows) - start < per:
            continue
        statement = sql.insert_rows_of(columns, per)
        while len(rows) - start >= per:
            conn.execute(statement, [value for row in rows[start : start + per] for value in row])
            start += per
    if start < len(rows):
        conn.executemany(sql.insert_of(columns, False), rows[start:])


def _variable_limit(conn: sqlite3.Connection) -> int:
    """How many values one statement may bind (999 where Python cannot ask: 3.10)."""
    getlimit = getattr(conn, "getlimit", None)
    category = getattr(sqlite3, "SQLITE_LIMIT_VARIABLE_NUMBER", None)  # Python 3.11+
    if getlimit is None or category is None:
        return 999  # SQLite's smallest default (before 3.32)
    return int(getlimit(category))


def _holder(conn: sqlite3.Connection, unique_key: str) -> str:
    row = conn.execute(sql.HOLDER, (unique_key,)).fetchone()
    if row is None:  # the index refused the key, so a holder exists in this transaction
        raise StorageError(f"unique key {unique_key!r} is held, but by no task")
    return str(row[0])


# ---------------------------------------------------------------------- claiming


def levels(conn: sqlite3.Connection, queues: Sequence[str] | None) -> list[tuple[str, int, float]]:
    """The (queue, priority, earliest eta) of every level with pending tasks."""
    if queues is None:
        found = conn.execute(sql.ALL_LEVELS).fetchall()
    else:
        found = conn.execute(sql.levels_of(len(queues)), tuple(queues)).fetchall()
    return [(str(q), int(p), float(eta)) for q, p, eta in found]


def claim(
    conn: sqlite3.Connection,
    token: str,
    now: float,
    lease_until: float,
    limit: int,
    queues: Sequence[str] | None,
    worker: str | None,
) -> tuple[list[TaskRecord], Idle | None]:
    """Claim up to ``limit`` due tasks in claim order with one ``UPDATE ... RETURNING``.

    No BEGIN is needed around it: the levels are read, then the UPDATE is atomic on
    its own and checks again that each row is pending and due (a level that appears
    in between is like a task enqueued just after this claim: the next claim takes
    it). When nothing is due, the second value is the idle shortcut's state.
    """
    found = levels(conn, queues)
    due = sorted(((q, p) for q, p, eta in found if eta <= now), key=lambda level: -level[1])
    if not due:
        # Remember (data_version, earliest eta) for the idle shortcut. The version is
        # read first and the levels again after it, so a commit in between shows as a
        # changed version and the shortcut cannot miss it.
        version = scalar(conn, "PRAGMA data_version")
        etas = [eta for _, _, eta in levels(conn, queues)]
        idle = (version, min(etas, default=None)) if all(eta > now for eta in etas) else None
        return [], idle
    params: list[object] = [token, lease_until, now, now, worker]
    for queue, priority in due:
        params.extend((queue, priority, now, limit))
    if len(due) > 1:
        params.append(limit)
    claimed = conn.execute(sql.claim_of(len(due)), params).fetchall()
    return _ordered(claimed), None


def _ordered(claimed: Iterable[Sequence[Any]]) -> list[TaskRecord]:
    """Claimed rows as records in claim order (RETURNING promises no order)."""
    ordered = sorted(claimed, key=lambda row: (-row[_PRIORITY], row[_ETA], row[_ID]))
    return [TaskRecord(*row) for row in ordered]


# ---------------------------------------------------------------------- outcomes


def _finish_params(task_id: str, token: str, transition: Transition) -> tuple[object, ...]:
    finished_at = transition.now if transition.is_final else None
    return (
        transition.status,
        transition.result,
        transition.error,
        transition.eta,
        transition.now,
        finished_at,
        transition.history,
        task_id,
        token,
        transition.expired_before,
        transition.expired_before,
    )


def finish_many(conn: sqlite3.Connection, items: Items) -> list[bool]:
    """Apply several outcomes in one transaction (one disk sync for all of them)."""
    if len(items) == 1 and items[0][2].successor is None:
        return [conn.execute(sql.FINISH, _finish_params(*items[0])).rowcount == 1]
    with transaction(conn):
        return [_finish_one(conn, *item) for item in items]


def _finish_one(conn: sqlite3.Connection, task_id: str, token: str, transition: Transition) -> bool:
    changed = conn.execute(sql.FINISH, _finish_params(task_id, token, transition)).rowcount == 1
    if changed and transition.successor is not None:
        _insert_successor(conn, transition.successor)
    return changed


def _insert_successor(conn: sqlite3.Connection, successor: TaskRecord) -> None:
    """The next run of an interval task; it keeps the unique key unless another holds it."""
    if conn.execute(*insert_of(successor)).rowcount != 1:
        conn.execute(*insert_of(dataclasses.replace(successor, unique_key=None)))


def finish_and_claim(
    conn: sqlite3.Connection,
    items: Items,
    token: str,
    now: float,
    lease_until: float,
    limit: int,
    queues: Sequence[str] | None,
    worker: str | None,
) -> tuple[list[bool], list[TaskRecord], Idle | None]:
    """Record outcomes and claim the next tasks in one transaction (one disk sync)."""
    with transaction(conn):
        finished = [_finish_one(conn, *item) for item in items]
        claimed, idle = claim(conn, token, now, lease_until, limit, queues, worker)
    return finished, claimed, idle


def heartbeat(
    conn: sqlite3.Connection, leases: Sequence[tuple[str, str]], lease_until: float
) -> list[str]:
    """Extend leases still held; return the ids of the ones lost."""
    lost: list[str] = []
    with transaction(conn):
        for task_id, token in leases:
            if conn.execute(sql.HEARTBEAT, (lease_until, task_id, token)).rowcount != 1:
                lost.append(task_id)
    return lost


# ---------------------------------------------------------------------- inspection


def next_eta(conn: sqlite3.Connection, queues: Sequence[str] | None) -> float | None:
    """The earliest pending eta: the first entry of each level of the due index."""
    return min((eta for _, _, eta in levels(conn, queues)), default=None)


def earliest_pending(conn: sqlite3.Connection, queues: Sequence[str]) -> dict[str, float]:
    """The earliest pending eta per queue."""
    earliest: dict[str, float] = {}
    for queue, _, eta in levels(conn, queues):
        earliest[queue] = min(eta, earliest.get(queue, eta))
    return earliest


def list_tasks(
    conn: sqlite3.Connection, status: str | None, limit: int, offset: int, queue: str | None
) -> list[TaskRecord]:
    """Tasks, newest change first, optionally of one status and one queue."""
    params = [value for value in (status, queue) if value is not None]
    statement = sql.list_of(status is not None, queue is not None)
    return records(conn, statement, (*params, limit, offset))


def find_tasks(
    conn: sqlite3.Connection, query: TaskFilter, limit: int, offset: int
) -> list[TaskRecord]:
    """Tasks matching ``query``, newest change first (one query)."""
    values = (query.status, query.queue, query.func_contains, query.id_contains, query.parent_id)
    params = [value for value in values if value is not None]
    statement = sql.find_of(*(value is not None for value in values))
    return records(conn, statement, (*params, limit, offset))


def count_by_queue(conn: sqlite3.Connection) -> dict[str, dict[str, int]]:
    """Per queue, how many tasks are in each status (zeros included)."""
    counts: dict[str, dict[str, int]] = {}
    for queue, status, count in conn.execute(sql.COUNT_BY_QUEUE):
        per_queue = counts.setdefault(str(queue), dict.fromkeys(STATUSES, 0))
        per_queue[str(status)] = int(count)
    return counts


def count_finished(
    conn: sqlite3.Connection, since: float, width: float
) -> list[tuple[int, str, str, int]]:
    """Finished tasks per time slot, queue and status (a range of the finished index)."""
    found = conn.execute(sql.COUNT_FINISHED, (since, width, since))
    return [(int(slot), str(queue), str(status), int(n)) for slot, queue, status, n in found]


def purge(
    conn: sqlite3.Connection, before: float, statuses: Sequence[str], limit: int | None
) -> int:
    """Delete finished tasks of ``statuses`` finished before ``before`` (``limit`` at most)."""
    final = tuple(sorted(status for status in set(statuses) if status in FINAL_STATUSES))
    if not final:
        return 0
    params: tuple[object, ...] = (before,) if limit is None else (before, limit)
    return conn.execute(sql.purge_of(final, limit is not None), params).rowcount


# ---------------------------------------------------------------------- state records


def get_state(conn: sqlite3.Connection, kind: str, name: str) -> StateRecord | None:
    """The named record, or ``None``."""
    row = conn.execute(sql.GET_STATE, (kind, name)).fetchone()
    return None if row is None else StateRecord(*row)


def list_state(conn: sqlite3.Connection, kind: str) -> list[StateRecord]:
    """Every record of ``kind``, by name."""
    return [StateRecord(*row) for row in conn.execute(sql.LIST_STATE, (kind,))]


def advance_state(
    conn: sqlite3.Connection, kind: str, name: str, mark: float, new: Sequence[TaskRecord]
) -> bool:
    """Move the mark forward and add the tasks, in one transaction (under the write lock)."""
    with transaction(conn):
        if conn.execute(sql.ADVANCE_STATE, (mark, kind, name, mark)).rowcount != 1:
            return False
        add_in(conn, new)
    return True
