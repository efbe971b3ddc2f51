"""Django settings of the backend tests (``DJANGO_SETTINGS_MODULE=django_test_settings``).

The omniq store of the ``TASKS`` aliases comes from the environment, so a worker
process started by a test (``python -m django omniq_worker``) serves the test's store:
``OMNIQ_TEST_BACKEND`` (sqlite, file, memory or postgres), ``OMNIQ_DJANGO_STORE`` (the
base directory), ``OMNIQ_DJANGO_DSN`` (PostgreSQL) and ``OMNIQ_DJANGO_LEASE_TIMEOUT``.
Tests in this process replace ``TASKS`` with a fresh store each
(``djsupport.StoreTestMixin``).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

SECRET_KEY = "omniq-django-tests"
USE_TZ = True
INSTALLED_APPS = ["omniq.contrib.django", "djapp"]
# A file, not ":memory:": Django never closes an in-memory SQLite connection, so the
# worker threads' connections would outlive their tests.
_DB = Path(tempfile.gettempdir()) / f"omniq-django-db-{os.getpid()}"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("OMNIQ_DJANGO_DB", f"{_DB}.sqlite3"),
        "TEST": {"NAME": f"{_DB}-test.sqlite3"},
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
BACKEND = "omniq.contrib.django.OmniQBackend"
QUEUES = ["default", "queue_1", "emails"]


def store_options() -> dict[str, Any]:
    """The omniq ``Settings`` keywords of the store the environment names."""
    base_dir = os.environ.get("OMNIQ_DJANGO_STORE") or str(
        Path(tempfile.gettempdir()) / f"omniq-django-{os.getpid()}"
    )
    options: dict[str, Any] = {
        "backend": os.environ.get("OMNIQ_TEST_BACKEND", "sqlite"),
        "base_dir": base_dir,
        "poll_interval": 0.05,
    }
    if os.environ.get("OMNIQ_DJANGO_LEASE_TIMEOUT"):
        options["lease_timeout"] = float(os.environ["OMNIQ_DJANGO_LEASE_TIMEOUT"])
    if options["backend"] == "postgres":
        # Tests and their workers name a schema of their own; the server's default
        # database only stands in until they do (a backend is made at import).
        options["dsn"] = os.environ.get("OMNIQ_DJANGO_DSN") or os.environ.get(
            "OMNIQ_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"
        )
    return options


def tasks_setting(options: dict[str, Any]) -> dict[str, Any]:
    """``TASKS``: ``default`` and ``other``, two aliases on one store."""
    return {
        "default": {"BACKEND": BACKEND, "QUEUES": QUEUES, "OPTIONS": options},
        "other": {"BACKEND": BACKEND, "QUEUES": ["default"], "OPTIONS": options},
    }


TASKS = tasks_setting(store_options())
