"""The Flask example, driven through Flask's test client, with ``omniq worker`` as the worker.

The worker is started from the command, as the example's docstring tells users to,
as a subprocess on the same SQLite store.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # the repository root: "examples.flask_app" imports

from examples.flask_app.app import create_app  # noqa: E402
from omniq import Settings  # noqa: E402


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(base_dir=tmp_path / "store")


@pytest.fixture
def app(settings: Settings) -> Iterator[Flask]:
    app = create_app(settings)
    yield app
    app.extensions["omniq"].close()


def run_worker(settings: Settings, *options: str) -> subprocess.CompletedProcess[str]:
    """``omniq worker --import examples.flask_app.tasks ...`` from the repository root."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("OMNIQ_")}
    env["OMNIQ_BASE_DIR"] = str(settings.base_dir)
    command = [sys.executable, "-m", "omniq", "worker", "--import", "examples.flask_app.tasks"]
    completed = subprocess.run(
        [*command, *options], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert completed.returncode == 0, completed.stderr
    return completed


def post_report(client: FlaskClient, text: str) -> str:
    response = client.post("/reports", json={"text": text})
    assert response.status_code == 202, response.get_json()
    body = response.get_json()
    assert body["url"] == f"/reports/{body['task_id']}"
    return str(body["task_id"])


def test_a_report_is_enqueued_by_the_view_and_run_by_the_worker(
    app: Flask, settings: Settings
) -> None:
    client = app.test_client()
    task_id = post_report(client, "To be, or not to be: that is the question.")
    assert client.get(f"/reports/{task_id}").get_json() == {
        "task_id": task_id,
        "status": "pending",
    }

    worker = run_worker(settings, "--limit", "1")
    assert "stopped after 1 task(s)" in worker.stderr

    response = client.get(f"/reports/{task_id}")
    assert response.status_code == 200
    assert response.get_json() == {
        "task_id": task_id,
        "status": "completed",
        "report": {"words": 10, "top": ["to", "be", "or"]},
    }


def test_a_failing_report_shows_its_error_after_the_retry(app: Flask, settings: Settings) -> None:
    client = app.test_client()
    task_id = post_report(client, "... !!! ???")  # no words: the task raises
    run_worker(settings, "--limit", "2", "--duration", "30")  # waits for the retry (~1 s)
    assert client.get(f"/reports/{task_id}").get_json() == {
        "task_id": task_id,
        "status": "failed",
        "error": "runtime: the text has no words",
    }


def test_bad_requests(app: Flask) -> None:
    client = app.test_client()
    assert client.post("/reports", json={"text": "  "}).status_code == 400
    assert client.post("/reports", data="not json").status_code == 400
    assert client.get("/reports/no-such-report").status_code == 404
