"""Helpers of the Django backend tests; importing this skips the module without Django.

These tests need Django 6 (Python 3.12+) and pytest-django, with
``DJANGO_SETTINGS_MODULE=django_test_settings`` and this directory on ``PYTHONPATH``:
``nox -s django`` sets all that up. Each test gets a store of its own, of the backend
``OMNIQ_TEST_BACKEND`` names (PostgreSQL: a schema of its own, dropped afterwards by
the suite's ``conftest.py``).
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

# Asked of the installed distributions first: with tests/ on sys.path and no Django,
# "import django" would find this very directory as a namespace package.
if sys.version_info < (3, 12):
    pytest.skip("Django 6 needs Python 3.12+: run nox -s django", allow_module_level=True)
try:
    importlib.metadata.version("django")
except importlib.metadata.PackageNotFoundError:
    pytest.skip("Django is not installed: run nox -s django", allow_module_level=True)
pytest.importorskip("django.tasks", reason="Django 6.0+ has django.tasks: run nox -s django")
pytest.importorskip("pytest_django", reason="the Django tests run under pytest-django")
if os.environ.get("DJANGO_SETTINGS_MODULE") != "django_test_settings":
    pytest.skip(
        "set DJANGO_SETTINGS_MODULE=django_test_settings (nox -s django does)",
        allow_module_level=True,
    )

import conftest as suite  # tests/conftest.py: the backend under test, PostgreSQL schemas
import django_test_settings
from django.test import override_settings

from omniq.contrib.django import facades

BACKEND = suite.BACKEND
HERE = Path(__file__).resolve().parent


def store_options(base_dir: Path, **extra: Any) -> dict[str, Any]:
    """``OPTIONS`` for a fresh store of the backend under test under ``base_dir``."""
    options: dict[str, Any] = {"backend": BACKEND, "base_dir": str(base_dir), "poll_interval": 0.05}
    if BACKEND == "postgres":
        options["dsn"] = suite.postgres_store(base_dir)
    options.update(extra)
    return options


class StoreTestMixin:
    """Each test on a fresh store: ``TASKS`` (``default`` and ``other``) replaced for it.

    ``extra_options`` adds ``OPTIONS`` keywords; ``tasks`` may rewrite the ``TASKS``
    dict (``self.options`` is the store's ``OPTIONS``).
    """

    extra_options: dict[str, Any] = {}

    def tasks(self, options: dict[str, Any]) -> dict[str, Any]:
        return django_test_settings.tasks_setting(options)

    def setUp(self) -> None:
        super().setUp()  # type: ignore[misc]
        self.store_dir = Path(tempfile.mkdtemp(prefix="omniq-django-"))
        self.options = store_options(self.store_dir / "store", **self.extra_options)
        self.enterContext(override_settings(TASKS=self.tasks(self.options)))  # type: ignore[attr-defined]
        self.addCleanup(shutil.rmtree, self.store_dir, True)  # type: ignore[attr-defined]
        self.addCleanup(facades.close_all)  # type: ignore[attr-defined]  # runs first

    def worker_env(self) -> dict[str, str]:
        """The environment of a worker process on this test's store."""
        env = dict(os.environ)
        env["OMNIQ_DJANGO_STORE"] = self.options["base_dir"]
        env["OMNIQ_TEST_BACKEND"] = BACKEND
        env["OMNIQ_DJANGO_DSN"] = self.options.get("dsn", "")
        env["OMNIQ_DJANGO_LEASE_TIMEOUT"] = str(self.options.get("lease_timeout", ""))
        env["DJANGO_SETTINGS_MODULE"] = "django_test_settings"
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
        env.pop("OMNIQ_LOG_LEVEL", None)
        return env

    def start_worker(self, *options: str) -> subprocess.Popen[str]:
        """``python -m django omniq_worker OPTIONS`` on this test's store."""
        process = subprocess.Popen(
            [sys.executable, "-m", "django", "omniq_worker", "--verbosity", "2", *options],
            env=self.worker_env(),
            cwd=HERE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.addCleanup(_kill, process)  # type: ignore[attr-defined]
        return process


def _kill(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.kill()
    process.communicate(timeout=60)


def wait_until(condition: Callable[[], bool], timeout: float = 60.0, what: str = "") -> None:
    """Poll ``condition`` until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(0.02)


def wait_for_file(path: str, timeout: float = 60.0) -> None:
    """Wait until ``path`` exists (a task writes it to say it started)."""
    wait_until(Path(path).exists, timeout, path)
