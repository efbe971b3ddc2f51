"""The Flask example (``omniq.contrib.flask``), driven through Flask's test client, with
``omniq worker`` and ``flask omniq worker`` as its workers, and under ``gunicorn --preload``.

The workers are started from the command, as the example's docstring tells users to,
as subprocesses on the same SQLite store.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # the repository root: "examples.flask_app" imports

from examples.flask_app.app import create_app, omniq  # noqa: E402
from examples.flask_app.tasks import report_title  # noqa: E402


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def app(store: Path) -> Iterator[Flask]:
    app = create_app({"OMNIQ_BASE_DIR": str(store)})
    yield app
    omniq.close(app)


def environment(store: Path) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("OMNIQ_")}
    env["OMNIQ_BASE_DIR"] = str(store)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def run(command: list[str], store: Path) -> subprocess.CompletedProcess[str]:
    completed = subprocess.run(
        command, cwd=ROOT, env=environment(store), capture_output=True, text=True, timeout=120
    )
    assert completed.returncode == 0, completed.stderr
    return completed


def run_worker(store: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """``omniq worker --import examples.flask_app.tasks ...`` from the repository root."""
    command = [sys.executable, "-m", "omniq", "worker", "--import", "examples.flask_app.tasks"]
    return run([*command, *options], store)


def run_flask_worker(store: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """``flask --app examples.flask_app.app omniq worker ...``: the app's config and context."""
    command = [sys.executable, "-m", "flask", "--app", "examples.flask_app.app", "omniq", "worker"]
    return run([*command, "--import", "examples.flask_app.tasks", *options], store)


def post_report(client: FlaskClient, text: str) -> str:
    response = client.post("/reports", json={"text": text})
    assert response.status_code == 202, response.get_json()
    body = response.get_json()
    assert body["url"] == f"/reports/{body['task_id']}"
    return str(body["task_id"])


def test_a_report_is_enqueued_by_the_view_and_run_by_the_worker(app: Flask, store: Path) -> None:
    client = app.test_client()
    task_id = post_report(client, "To be, or not to be: that is the question.")
    assert client.get(f"/reports/{task_id}").get_json() == {
        "task_id": task_id,
        "status": "pending",
    }

    worker = run_worker(store, "--limit", "1")
    assert "stopped after 1 task(s)" in worker.stderr

    response = client.get(f"/reports/{task_id}")
    assert response.status_code == 200
    assert response.get_json() == {
        "task_id": task_id,
        "status": "completed",
        "report": {"words": 10, "top": ["to", "be", "or"]},
    }


def test_the_flask_worker_runs_tasks_in_an_app_context(app: Flask, store: Path) -> None:
    client = app.test_client()
    task_id = post_report(client, "one two two")
    with app.app_context():
        title_id = report_title.using(omniq.facade).enqueue("one two two")
    worker = run_flask_worker(store, "--limit", "2")
    assert "stopped after 2 task(s)" in worker.stderr
    assert client.get(f"/reports/{task_id}").get_json()["status"] == "completed"
    assert omniq.facade_for(app).get_result(title_id) == "Report: one two two"


def test_a_failing_report_shows_its_error_after_the_retry(app: Flask, store: Path) -> None:
    client = app.test_client()
    task_id = post_report(client, "... !!! ???")  # no words: the task raises
    run_worker(store, "--limit", "2", "--duration", "30")  # waits for the retry (~1 s)
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


# ---------------------------------------------------------------------- gunicorn --preload


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"gunicorn did not listen on {port} within {timeout}s")


@pytest.mark.skipif(sys.platform == "win32", reason="gunicorn runs on POSIX only")
def test_under_gunicorn_preload_every_worker_uses_the_store(store: Path) -> None:
    port = free_port()
    server = subprocess.Popen(
        [
            *(sys.executable, "-m", "gunicorn", "--preload", "-w", "2"),
            *("-b", f"127.0.0.1:{port}", "--timeout", "30", "flask_gunicorn_app:app"),
        ],
        cwd=Path(__file__).resolve().parent,
        env=environment(store),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    pids: set[str] = set()
    ids: list[str] = []
    try:
        wait_for_port(port)
        deadline = time.monotonic() + 120
        # Until both workers have answered (the kernel spreads the connections), at least 30.
        while len(ids) < 30 or (len(pids) < 2 and time.monotonic() < deadline):
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/reports",
                data=b'{"text": "fork safe"}',
                headers={"Content-Type": "application/json"},
                method="POST",
            )
            with urllib.request.urlopen(request, timeout=30) as response:
                assert response.status == 202
                pids.add(response.headers["X-Worker-Pid"])
                ids.append(json.loads(response.read())["task_id"])
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=60)
    assert "Traceback" not in output, output
    assert len(pids) == 2, output
    run_worker(store, "--limit", str(len(ids)))
    check = create_app({"OMNIQ_BASE_DIR": str(store)})
    try:
        with check.app_context():
            statuses = {omniq.facade.get_task(task_id)["status"] for task_id in ids}
    finally:
        omniq.close(check)
    assert statuses == {"completed"}
