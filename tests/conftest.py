"""Fixtures shared by every suite: the backend under test and a fresh store per test.

The backend comes from ``OMNIQ_TEST_BACKEND`` (``sqlite`` when unset), so the nox
matrix runs the same contract suite on every backend in both twins.

PostgreSQL: the server is ``OMNIQ_TEST_POSTGRES_DSN`` (default: the local ``test``
database). Each store (each ``base_dir``) gets a schema of its own, created on first
use and dropped after the test; its DSN sets ``search_path`` to it. Without a server
(or without psycopg) the tests that need it are skipped, unless
``OMNIQ_REQUIRE_SERVICES=1`` (CI sets it): then they fail.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from omniq import Settings, retry

TESTS_DIR = Path(__file__).resolve().parent
# Task functions are imported by path ("task_functions.add"), also by worker
# processes started from tests, which inherit PYTHONPATH.
sys.path.insert(0, str(TESTS_DIR))
os.environ["PYTHONPATH"] = os.pathsep.join(
    filter(None, [str(TESTS_DIR), os.environ.get("PYTHONPATH")])
)

BACKEND = os.environ.get("OMNIQ_TEST_BACKEND", "sqlite")
PERSISTENT_BACKENDS = {"sqlite", "file", "postgres"}
POSTGRES_DSN = os.environ.get(
    "OMNIQ_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"
)
REQUIRE_SERVICES = os.environ.get("OMNIQ_REQUIRE_SERVICES", "") not in ("", "0")
SCHEMA_PREFIX = "omniq_test_"


@pytest.fixture
def backend() -> str:
    """The backend under test."""
    return BACKEND


@pytest.fixture
def base_dir(tmp_path: Path) -> Path:
    """A fresh, not yet existing base directory."""
    return tmp_path / "omniq-store"


@pytest.fixture
def out(tmp_path: Path) -> str:
    """A file tasks append their side effects to."""
    return str(tmp_path / "side-effects.log")


def requires_persistence() -> pytest.MarkDecorator:
    """Skip on backends whose tasks live in one process's memory."""
    return pytest.mark.skipif(
        BACKEND not in PERSISTENT_BACKENDS,
        reason=f"the {BACKEND} backend keeps tasks in one process's memory",
    )


def make_settings(base_dir: Path, **overrides: object) -> Settings:
    """Settings for the backend under test, storing under ``base_dir``.

    On PostgreSQL the store is a schema of its own for each ``base_dir`` (so two
    calls with one ``base_dir`` share a store, as they do on disk).
    """
    # The tests' task functions may run in any facade's pools (the allow-list); the
    # allow-list tests build settings without this.
    options: dict[str, object] = {
        "backend": BACKEND,
        "base_dir": base_dir,
        "poll_interval": 0.05,
        "task_modules": ("task_functions",),
    }
    if BACKEND == "postgres":
        options["dsn"] = postgres_store(base_dir)
    options.update(overrides)
    return Settings(**options)  # type: ignore[arg-type]


# ---------------------------------------------------------------------- PostgreSQL

_schemas: dict[str, str] = {}  # base_dir -> schema, for the running test
_leftovers: list[str] = []  # schemas a test could not drop; tried again at the end
_unavailable: list[str] = []  # why the server cannot be used (checked once)


def postgres_unavailable(reason: str) -> NoReturn:
    """Skip the test, or fail it when CI requires the services."""
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason} (OMNIQ_REQUIRE_SERVICES is set)", pytrace=False)
    pytest.skip(reason)


def postgres_admin() -> Any:
    """An autocommit connection to the test server (skips or fails without one)."""
    if _unavailable:
        postgres_unavailable(_unavailable[0])
    try:
        import psycopg
    except ImportError:
        _unavailable.append('psycopg is not installed: pip install -e ".[dev,postgres]"')
        postgres_unavailable(_unavailable[0])
    try:
        return psycopg.connect(POSTGRES_DSN, autocommit=True, connect_timeout=5)
    except psycopg.Error as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        _unavailable.append(f"no PostgreSQL server at OMNIQ_TEST_POSTGRES_DSN: {first_line}")
        postgres_unavailable(_unavailable[0])


def schema_dsn(schema: str) -> str:
    """The test server's DSN with ``search_path`` (and ``application_name``) set to ``schema``."""
    from psycopg.conninfo import make_conninfo

    return make_conninfo(POSTGRES_DSN, options=f"-csearch_path={schema}", application_name=schema)


def postgres_store(base_dir: Path) -> str:
    """The DSN of ``base_dir``'s store: a new schema on first use in this test."""
    key = str(base_dir)
    if key not in _schemas:
        schema = f"{SCHEMA_PREFIX}{uuid.uuid4().hex[:16]}"
        with postgres_admin() as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        _schemas[key] = schema
    return schema_dsn(_schemas[key])


def drop_schema(schema: str) -> bool:
    """Drop ``schema`` and its tables; True when it is gone.

    Sessions still connected to it (a worker process that outlived its test) are
    ended first if they hold a lock the drop waits for.
    """
    import psycopg

    try:
        with psycopg.connect(POSTGRES_DSN, autocommit=True, connect_timeout=5) as conn:
            conn.execute("SET lock_timeout = '5s'")
            try:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            except psycopg.errors.LockNotAvailable:
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = %s AND pid <> pg_backend_pid()",
                    (schema,),
                )
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    except psycopg.Error:
        return False
    return True


@pytest.fixture(autouse=True)
def _postgres_schemas() -> Iterator[None]:
    """Drop the schemas the test created (they are created on demand by make_settings)."""
    yield
    schemas = list(_schemas.values())
    _schemas.clear()
    for schema in schemas:
        if not drop_schema(schema):
            _leftovers.append(schema)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Last try for schemas a test could not drop."""
    for schema in _leftovers:
        drop_schema(schema)


@pytest.fixture
def settings(base_dir: Path) -> Settings:
    """Settings for a fresh store of the backend under test."""
    return make_settings(base_dir)


@pytest.fixture
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries become due at once, so retry tests need not wait 1, 2, 4... seconds."""
    monkeypatch.setattr(retry, "retry_delay", lambda attempts, rng=None: 0.0)
