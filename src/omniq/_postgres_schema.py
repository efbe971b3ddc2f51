"""PostgreSQL storage's schema and its migrations: plain data, written once.

Shared by ``omniq._async.storage.postgres`` and its generated blocking twin.

Every migration runs in one transaction that holds a transaction-scoped advisory
lock (``MIGRATION_LOCK_CLASS``, the schema's hash), so any number of processes may
start at once: one migrates, the others wait and then find the current version.
A fresh store runs every migration in turn, so the path a store of an older omniq
takes is the one every test takes too.

Schema v2 (omniq 0.2) adds the queue, priority, unique key, attempt history and
claiming worker of each task, and the table of named state records (schedules).
``ADD COLUMN`` with a constant default is instant (PostgreSQL 11+), so the v1 tasks
keep their rows and get queue ``'default'`` and priority 0; only the new indexes are
built from the table.

Schema v3 drops the two v1 indexes every write paid for, ``(status, updated_at, seq)``
and ``(updated_at, seq)``: as on SQLite, every secondary index is now partial, so an
insert, a claim and a finish each add entries only to the keys and the index of the
state the task enters. It also tunes autovacuum for a table whose rows turn over fast.
"""

from __future__ import annotations

from omniq.records import FINAL_STATUSES, RECORD_FIELDS

SCHEMA_VERSION = 3
TABLE = "omniq_tasks"
VERSION_TABLE = "omniq_schema_version"
STATE_TABLE = "omniq_state"
# First key of the advisory lock that serializes migrations (the second: the schema hash).
MIGRATION_LOCK_CLASS = 0x6F6D6E69  # "omni"
FINAL = tuple(sorted(FINAL_STATUSES))
FINAL_LIST = ", ".join(f"'{status}'" for status in FINAL)
# The predicate of the unique-key index; inserts name it to pick that index as arbiter.
UNIQUE_ACTIVE = "unique_key IS NOT NULL AND status IN ('pending', 'running')"
# Every column a v2 table has: the record's fields and the enqueue order.
V2_COLUMNS = frozenset(("seq", *RECORD_FIELDS))

_V1 = (
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
    f"CREATE INDEX {TABLE}_due ON {TABLE} (eta, seq) WHERE status = 'pending'",
    f"CREATE INDEX {TABLE}_lease ON {TABLE} (lease_until) WHERE status = 'running'",
    f"CREATE INDEX {TABLE}_status ON {TABLE} (status, updated_at, seq)",
    f"CREATE INDEX {TABLE}_updated ON {TABLE} (updated_at, seq)",
)

_V2 = (
    f"""
    ALTER TABLE {TABLE}
        ADD COLUMN queue text NOT NULL DEFAULT 'default',
        ADD COLUMN priority integer NOT NULL DEFAULT 0,
        ADD COLUMN unique_key text,
        ADD COLUMN history text,
        ADD COLUMN worker text
    """,
    # The claim: per (queue, priority) level, due tasks by eta then enqueue order. A
    # loose index scan over it finds the levels, so the claim's cost grows with the
    # number of levels, never with the backlog. Partial: running and finished tasks
    # do not bloat it.
    f"DROP INDEX {TABLE}_due",
    f"CREATE INDEX {TABLE}_due ON {TABLE} (queue, priority, eta, seq) WHERE status = 'pending'",
    # Retention pruning and purge, in bounded batches, oldest first.
    f"CREATE INDEX {TABLE}_finished ON {TABLE} (finished_at) WHERE status IN ({FINAL_LIST})",
    # One pending or running task per unique key: the index settles every race, and
    # tasks without a key have no entry in it.
    f"CREATE UNIQUE INDEX {TABLE}_unique ON {TABLE} (unique_key) WHERE {UNIQUE_ACTIVE}",
    # Named records beside the tasks: schedules (their mark is the last fire time) and
    # the worker registry. Few rows, each written now and then.
    f"""
    CREATE TABLE {STATE_TABLE} (
        kind text NOT NULL,
        name text NOT NULL,
        data text NOT NULL,
        updated_at double precision NOT NULL,
        mark double precision,
        PRIMARY KEY (kind, name)
    )
    """,
)

_V3 = (
    # Every write of a task paid for these two (an update of a task is never HOT: its
    # status is indexed); the task list scans the table instead, as it does on SQLite.
    # Without them an enqueue adds 3 index entries instead of 5, and so do a claim and
    # a finish (docs/postgres.md, "Schema v3").
    f"DROP INDEX {TABLE}_status",
    f"DROP INDEX {TABLE}_updated",
    # Each task leaves two dead tuples behind (its claim and its finish): vacuum once 2%
    # of the table changed rather than the default 20%, so dead entries do not pile up
    # in the indexes the claim walks.
    f"ALTER TABLE {TABLE} SET (autovacuum_vacuum_scale_factor = 0.02, "
    "autovacuum_analyze_scale_factor = 0.05)",
)

MIGRATIONS: dict[int, tuple[str, ...]] = {1: _V1, 2: _V2, 3: _V3}

CREATE_VERSION_TABLE = (
    f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} ("
    "version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
)
CURRENT_VERSION = f"SELECT coalesce(max(version), 0) FROM {VERSION_TABLE}"
RECORD_VERSION = f"INSERT INTO {VERSION_TABLE} (version) VALUES (%s)"
LOCK = "SELECT pg_advisory_xact_lock(%s, hashtext(%s))"
# The columns of the tasks table in the current schema (none: there is no table).
TABLE_COLUMNS = (
    "SELECT attname FROM pg_attribute "
    f"WHERE attrelid = to_regclass(quote_ident(current_schema()) || '.{TABLE}') "
    "AND attnum > 0 AND NOT attisdropped"
)
