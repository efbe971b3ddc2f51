"""Make tests/fixtures/v1/postgres.sql: a PostgreSQL store written by omniq 0.1.0 (schema v1).

Run from a checkout of b656dee (omniq 0.1.0), with its tests/ on the path and a server::

    PYTHONPATH=src python scripts/make_v1_postgres_fixture.py OUT.sql [DSN]

It fills a scratch schema through 0.1.0's own API (the tasks of make_v1_fixtures.py, plus
one RUNNING task whose worker "died"), then writes the v1 DDL (0.1.0's MIGRATIONS[1]) and
the rows as INSERTs (pg_dump --column-inserts), to be run with search_path at an empty
schema. The v2 migration test (tests/_async/test_postgres.py) loads it.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

sys.path.insert(0, "tests")
from omniq import OmniQ, Settings  # 0.1.0's, from the checkout
from omniq._postgres_sql import MIGRATIONS, VERSION_TABLE

SCHEMA = "omniq_v1_fixture"
HEADER = """\
-- A PostgreSQL store written by omniq 0.1.0 (schema v1), for the v2 migration test.
-- Made by scripts/make_v1_postgres_fixture.py at b656dee. Run it with search_path set to
-- an empty schema. It holds a completed task (add 20+22), a failed one (fail_always,
-- max_retries=1), a cancelled one, a RUNNING one whose worker died (its lease ran out),
-- three pending add tasks due at once (args [i, 100]) and one due in 2030.
"""


def main() -> None:
    out = Path(sys.argv[1])
    dsn = sys.argv[2] if len(sys.argv) > 2 else "postgresql://postgres@127.0.0.1:5432/test"
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE')
        admin.execute(f'CREATE SCHEMA "{SCHEMA}"')
    store = make_conninfo(dsn, options=f"-csearch_path={SCHEMA}")
    with OmniQ(Settings(backend="postgres", dsn=store)) as q:
        q.enqueue("task_functions.add", args=[20, 22])
        q.enqueue("task_functions.fail_always", args=["/tmp/v1-side"], max_retries=1)
        q.cancel(q.enqueue("task_functions.add", args=[0, 0]))
        with q.worker_pool(concurrency=1) as pool:
            pool.process_tasks(limit=2)
        running = q.enqueue("task_functions.add", args=[7, 7])
        (claimed,) = q.queue.dequeue_many(1, lease_timeout=1)  # and its worker "dies"
        assert claimed.id == running
        for i in range(3):
            q.enqueue("task_functions.add", args=[i, 100])
        q.enqueue("task_functions.add", args=[5, 5], eta=dt.datetime(2030, 1, 1, tzinfo=dt.UTC))
        print(q.stats())
    params = conninfo_to_dict(dsn)
    command = [
        "pg_dump",
        "--data-only",
        "--column-inserts",
        f"--schema={SCHEMA}",
        f"--host={params.get('host', 'localhost')}",
        f"--port={params.get('port', 5432)}",
        f"--username={params.get('user', 'postgres')}",
        str(params.get("dbname", "test")),
    ]
    dump = subprocess.run(
        command,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    inserts = [
        line.replace(f"{SCHEMA}.", "") for line in dump.splitlines() if line.startswith("INSERT")
    ]
    version_table = (
        f"CREATE TABLE {VERSION_TABLE} (\n"
        "    version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now()\n);"
    )
    ddl = [" ".join(statement.split()) + ";" for statement in MIGRATIONS[1]]
    sequence = (
        "SELECT setval(pg_get_serial_sequence('omniq_tasks', 'seq'), max(seq)) FROM omniq_tasks;"
    )
    out.write_text("\n".join([HEADER.rstrip(), version_table, *ddl, *inserts, sequence]) + "\n")
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(f'DROP SCHEMA "{SCHEMA}" CASCADE')


if __name__ == "__main__":
    main()
