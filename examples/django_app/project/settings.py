"""Settings of the example project: Django's Tasks framework on an omniq store.

The store is SQLite under ``OMNIQ_BASE_DIR`` (default: ``omniq_data/`` beside this
project); the web process enqueues, ``manage.py omniq_worker`` runs the tasks.
"""

from __future__ import annotations

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "only-for-the-example")
DEBUG = True
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "testserver"]
USE_TZ = True
ROOT_URLCONF = "examples.django_app.project.urls"
INSTALLED_APPS = [
    "omniq.contrib.django",  # the omniq_worker command
    "examples.django_app.reports",
]
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
DATABASES: dict[str, dict[str, str]] = {}  # this example keeps nothing in a database

TASKS = {
    "default": {
        "BACKEND": "omniq.contrib.django.OmniQBackend",
        "QUEUES": ["default", "reports"],
        # omniq.Settings keywords: the store every web and worker process shares
        "OPTIONS": {
            "backend": "sqlite",
            "base_dir": os.environ.get("OMNIQ_BASE_DIR") or BASE_DIR / "omniq_data",
        },
    }
}
