"""nox sessions: the twin x backend test matrix, interop, shared tests, unasync check, lint, types.

``nox`` runs the default set (what CI runs); ``nox -s bench`` prints benchmark figures.
"""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True
nox.options.sessions = ["unasync", "lint", "types", "shared", "tests", "interop"]

TWINS = ["async", "sync"]
BACKENDS = ["sqlite", "memory", "file", "postgres"]
SOURCES = ["src/omniq", "tests", "scripts", "noxfile.py"]


def install(session: nox.Session, extras: str = "dev") -> None:
    session.install("-e", f".[{extras}]")


@nox.session
def unasync(session: nox.Session) -> None:
    """Fail when the generated blocking twin is stale or a guard trips."""
    session.install("unasync==0.6.0", "setuptools")
    session.run("python", "scripts/unasync.py", "--check")


@nox.session
def lint(session: nox.Session) -> None:
    """ruff: lint everything hand-written, check its formatting."""
    session.install("ruff")
    session.run("ruff", "check", *SOURCES)
    session.run("ruff", "format", "--check", *SOURCES)


@nox.session
def types(session: nox.Session) -> None:
    """mypy --strict over src, the generated twin included (psycopg too, for the PG module);
    then the typed user files: declared tasks used right pass, and each wrong use in
    ``declared_tasks_errors.py`` must still be an error (an unused ignore fails)."""
    install(session, "dev,postgres")
    session.run("mypy", "--strict", "src/omniq")
    session.run("mypy", "--strict", "--warn-unused-ignores", "tests/typing")


@nox.session
def shared(session: nox.Session) -> None:
    """Tests of the shared modules, the README and docs examples, the CLI, the examples."""
    install(session, "dev,postgres")  # docs/postgres.md's examples import psycopg
    session.run("pytest", "tests/shared", "tests/cli", "tests/examples", *session.posargs)


@nox.session
@nox.parametrize("backend", BACKENDS)
@nox.parametrize("twin", TWINS)
def tests(session: nox.Session, twin: str, backend: str) -> None:
    """The contract suite of one twin on one backend (PostgreSQL: OMNIQ_TEST_POSTGRES_DSN)."""
    install(session, "dev,postgres")
    env = {"OMNIQ_TEST_BACKEND": backend}
    session.run("pytest", f"tests/_{twin}", *session.posargs, env=env)


@nox.session
@nox.parametrize("backend", BACKENDS)
def interop(session: nox.Session, backend: str) -> None:
    """One store, both twins: what one writes the other runs."""
    install(session, "dev,postgres")
    session.run("pytest", "tests/interop", *session.posargs, env={"OMNIQ_TEST_BACKEND": backend})


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmark figures vs Huey (not in the default set): rewrites docs/performance.md."""
    install(session, "postgres")
    session.install("huey", "matplotlib")  # the benchmark's own tools, never omniq dependencies
    session.run("python", "-m", "omniq.bench", "--write-docs", *session.posargs)
