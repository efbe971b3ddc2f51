"""The Django example project: views enqueue through Django's Tasks API onto omniq, and
``manage.py omniq_worker`` (a real process, as a user starts it) runs them.

Needs Django 6 (Python 3.12+, the ``django`` extra); skipped elsewhere with the reason.
"""

from __future__ import annotations

import atexit
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

if sys.version_info < (3, 12):
    pytest.skip("Django 6 needs Python 3.12+", allow_module_level=True)
try:
    importlib.metadata.version("django")
except importlib.metadata.PackageNotFoundError:
    pytest.skip("Django is not installed: pip install -e '.[django]'", allow_module_level=True)

ROOT = Path(__file__).resolve().parents[2]
MANAGE = ROOT / "examples" / "django_app" / "manage.py"
STORE = Path(tempfile.mkdtemp(prefix="omniq-django-example-"))
atexit.register(shutil.rmtree, STORE, True)

# This process is the web process: the example's settings, on a store of this module's own.
# The variables are set only while Django reads the settings, so that no other test (nor
# the processes they start) inherits them.
sys.path.insert(0, str(ROOT))
import django  # noqa: E402
from django.conf import settings  # noqa: E402

if settings.configured:  # another project's settings (tests/django under pytest-django)
    pytest.skip("Django is already set up with other settings here", allow_module_level=True)

_SAVED = {name: os.environ.get(name) for name in ("OMNIQ_BASE_DIR", "DJANGO_SETTINGS_MODULE")}
os.environ["OMNIQ_BASE_DIR"] = str(STORE)
os.environ["DJANGO_SETTINGS_MODULE"] = "examples.django_app.project.settings"
try:
    django.setup()
finally:
    for _name, _value in _SAVED.items():
        if _value is None:
            os.environ.pop(_name, None)
        else:
            os.environ[_name] = _value

from django.test import Client  # noqa: E402


def manage(*args: str) -> subprocess.CompletedProcess[str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("OMNIQ_")}
    env["OMNIQ_BASE_DIR"] = str(STORE)
    env.pop("DJANGO_SETTINGS_MODULE", None)  # manage.py names the example's own
    completed = subprocess.run(
        [sys.executable, str(MANAGE), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    return completed


def test_the_project_passes_djangos_checks() -> None:
    assert "no issues" in manage("check").stdout


def test_a_report_is_enqueued_by_the_view_and_run_by_omniq_worker() -> None:
    client = Client()
    created = client.post(
        "/reports/", json.dumps({"text": "To be, or not to be"}), content_type="application/json"
    )
    assert created.status_code == 202
    result_id = created.json()["id"]
    assert created.json()["status"] == "READY"
    failing = client.post("/reports/", json.dumps({"text": "?!"}), content_type="application/json")
    assert client.get(f"/reports/{result_id}/").json() == {"id": result_id, "status": "READY"}

    worker = manage("omniq_worker", "--batch", "--queue-name", "reports")
    assert f"Task id={result_id} path=examples.django_app.reports.tasks.word_report" in (
        worker.stdout
    )

    assert client.get(f"/reports/{result_id}/").json() == {
        "id": result_id,
        "status": "SUCCESSFUL",
        "report": {"words": 6, "top": ["to", "be", "or"]},
    }
    assert client.get(f"/reports/{failing.json()['id']}/").json()["error"] == (
        "ValueError: the text has no words"
    )


def test_bad_requests() -> None:
    client = Client()
    assert client.post("/reports/", "{}", content_type="application/json").status_code == 400
    assert client.get("/reports/not-a-report/").status_code == 404
