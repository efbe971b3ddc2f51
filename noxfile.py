"""nox sessions: the test matrix on every supported Python, interop, shared tests, the
unasync check, lint, types and the docs site.

``nox`` runs the default set (what CI runs); ``nox -l`` lists it; ``nox -s bench`` prints
benchmark figures. Virtualenvs are made by uv (the ``dev`` extra installs it beside nox,
where nox finds it without an activated venv): a fresh ``.[dev,postgres]`` venv takes
seconds instead of half a minute with pip.

The matrix: every twin x backend cell, interop on every backend and the shared tests on
MAIN_PYTHON; on the other supported Pythons both twins on SQLite; the shared tests (CLI,
docs examples: mostly subprocesses, the slowest session) also on the newest Python, so
CI stays near half an hour on two cores.
Interpreters come from the machine (``python3.10`` ...), never downloaded; where pyenv
installed them but activated only one (as on CI's machine), the others are found too.
A missing one fails the run on CI (``CI`` set) and is skipped elsewhere.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import nox

nox.options.default_venv_backend = "uv"
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = "CI" in os.environ
nox.options.download_python = "never"
nox.options.sessions = [
    *("unasync", "lint", "types", "docs", "shared", "tests", "interop", "web", "django"),
]

MAIN_PYTHON = "3.11"
PYTHONS = ["3.10", "3.11", "3.12", "3.13"]  # requires-python and the classifiers
SHARED_PYTHONS = [MAIN_PYTHON, PYTHONS[-1]]
DJANGO_PYTHONS = ["3.12", "3.13"]  # Django 6 needs 3.12+
TWINS = ["async", "sync"]
BACKENDS = ["sqlite", "memory", "file", "postgres"]
SOURCES = ["src/omniq", "benchmarks", "tests", "scripts", "noxfile.py"]
# The suites mostly wait (disk syncs, child processes, timeouts), so two pytest-xdist
# workers halve their time on two cores; every test has its own store, so they share
# nothing ("-n 0" in the posargs runs one process, for a debugger).
PARALLEL = ["-n", "2"]


def activate_pyenv_pythons() -> None:
    """Let nox find every supported Python that pyenv installed, not only the active ones.

    pyenv's shims run only the versions it has activated (``pyenv global``, a
    ``.python-version``, ``PYENV_VERSION``). nox's interpreter discovery resolves a shim
    through ``PYENV_VERSION`` and ``PYENV_ROOT``, so this sets them, for nox's process:
    the active versions, then the newest installed patch release of each of PYTHONS.
    Nothing happens without pyenv or when ``PYENV_VERSION`` is already set.
    """
    pyenv = shutil.which("pyenv")
    if pyenv is None or os.environ.get("PYENV_VERSION"):
        return
    root = subprocess.run([pyenv, "root"], capture_output=True, text=True, check=False)
    active = subprocess.run([pyenv, "version-name"], capture_output=True, text=True, check=False)
    if root.returncode != 0 or active.returncode != 0:
        return
    versions = [v for v in active.stdout.strip().split(":") if v]
    installed = Path(root.stdout.strip()) / "versions"
    for python in PYTHONS:
        patches = [
            path.name
            for path in installed.glob(f"{python}.*")
            if re.fullmatch(rf"{re.escape(python)}\.\d+", path.name)
            and (path / "bin" / f"python{python}").exists()
        ]
        if patches and not any(v.startswith(f"{python}.") for v in versions):
            versions.append(max(patches, key=lambda name: int(name.rsplit(".", 1)[1])))
    os.environ["PYENV_VERSION"] = ":".join(versions)
    os.environ.setdefault("PYENV_ROOT", root.stdout.strip())  # where discovery looks for them


activate_pyenv_pythons()


def test_cells() -> list[nox.Param]:
    """(python, twin, backend): the full matrix on MAIN_PYTHON, SQLite on the others."""
    return [
        nox.param(python, twin, backend)
        for python in PYTHONS
        for twin in TWINS
        for backend in (BACKENDS if python == MAIN_PYTHON else ["sqlite"])
    ]


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
    """mypy --strict: src (with the generated twin), benchmarks/, and user code (tests/typing).

    In tests/typing each wrong use must still be an error (an unused ignore fails).

    psycopg is installed too, for the PostgreSQL modules.
    """
    install(session, "dev,postgres")
    session.run("mypy", "--strict", "src/omniq")
    session.run("mypy", "--strict", "benchmarks")
    session.run("mypy", "--strict", "--warn-unused-ignores", "tests/typing")


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site (mkdocs.yml) with --strict: a broken link fails it."""
    install(session, "docs")
    site = Path(session.create_tmp()) / "site"
    # NO_MKDOCS_2_WARNING: Material's banner about its end of life, not about our docs.
    env = {"NO_MKDOCS_2_WARNING": "1"}
    session.run("mkdocs", "build", "--strict", "--site-dir", str(site), *session.posargs, env=env)


@nox.session(python=SHARED_PYTHONS)
def shared(session: nox.Session) -> None:
    """Tests of the shared modules, the README and docs examples, the CLI, the examples.

    The django extra installs Django on 3.12+ only: docs/django.md's examples and the
    Django example project run on 3.13, and are skipped (with the reason) on 3.11.
    """
    install(session, "dev,postgres,django")  # docs/postgres.md's examples import psycopg
    tests = ["tests/shared", "tests/cli", "tests/examples"]
    session.run("pytest", *PARALLEL, *tests, *session.posargs)


@nox.session
@nox.parametrize(("python", "twin", "backend"), test_cells())
def tests(session: nox.Session, twin: str, backend: str) -> None:
    """The contract suite of one twin on one backend (PostgreSQL: OMNIQ_TEST_POSTGRES_DSN)."""
    install(session, "dev,postgres")
    env = {"OMNIQ_TEST_BACKEND": backend}
    session.run("pytest", *PARALLEL, f"tests/_{twin}", *session.posargs, env=env)


@nox.session(python=MAIN_PYTHON)
@nox.parametrize("backend", BACKENDS)
def interop(session: nox.Session, backend: str) -> None:
    """One store, both twins: what one writes the other runs."""
    install(session, "dev,postgres")
    session.run("pytest", "tests/interop", *session.posargs, env={"OMNIQ_TEST_BACKEND": backend})


@nox.session(python=MAIN_PYTHON)
@nox.parametrize("backend", ["sqlite", "file", "postgres"])
def web(session: nox.Session, backend: str) -> None:
    """The dashboard in a real browser: Debian's headless Chromium (/usr/bin/chromium, which
    .ci/run installs with apt) driven by Playwright; never `playwright install`."""
    install(session, "dev,postgres")
    session.run("pytest", "tests/web", *session.posargs, env={"OMNIQ_TEST_BACKEND": backend})


def django_cells() -> list[nox.Param]:
    """(python, backend): SQLite on every Python Django supports, PostgreSQL on the first."""
    return [
        nox.param(python, backend)
        for python in DJANGO_PYTHONS
        for backend in (["sqlite", "postgres"] if python == DJANGO_PYTHONS[0] else ["sqlite"])
    ]


@nox.session
@nox.parametrize(("python", "backend"), django_cells())
def django(session: nox.Session, backend: str) -> None:
    """omniq.contrib.django: Django's own task tests adapted to OmniQBackend, and real
    omniq_worker processes (tests/django, under pytest-django)."""
    install(session, "dev,postgres,django")
    session.install("pytest-django>=4.9")
    env = {
        "OMNIQ_TEST_BACKEND": backend,
        "DJANGO_SETTINGS_MODULE": "django_test_settings",
        "PYTHONPATH": "tests/django",
    }
    session.run("pytest", "tests/django", *session.posargs, env=env)


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmark figures vs Huey (not in the default set): rewrites docs/performance.md."""
    install(session, "postgres")
    session.install("huey", "matplotlib")  # the benchmark's own tools, never omniq dependencies
    session.run("python", "-m", "benchmarks", "--write-docs", *session.posargs)


@nox.session(name="bench-peers")
def bench_peers(session: nox.Session) -> None:
    """omniq on PostgreSQL beside the PostgreSQL peers it can install (not in the default set)."""
    install(session, "postgres")
    # the peers, never omniq dependencies
    session.install("pgqueuer", "asyncpg", "procrastinate", "chancy")
    session.run("python", "-m", "benchmarks.peers", *session.posargs)
