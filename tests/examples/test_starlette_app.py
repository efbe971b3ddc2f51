"""The Starlette example, driven through Starlette's test client.

With its lifespan worker (an ``AsyncWorkerPool`` on the app's loop), and without it,
with ``omniq worker --async`` started from the command instead. SQLite store.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

with warnings.catch_warnings():
    # Recent Starlette releases prefer the httpx2 fork and warn when they find httpx.
    warnings.filterwarnings("ignore", message=".*httpx2")
    from starlette.testclient import TestClient

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # the repository root: "examples.starlette_app" imports

from examples.starlette_app.app import create_app  # noqa: E402
from omniq import Settings  # noqa: E402


def settings_in(tmp_path: Path) -> Settings:
    return Settings(base_dir=tmp_path / "store", poll_interval=0.05)


def test_the_lifespan_worker_runs_what_a_request_enqueued(tmp_path: Path) -> None:
    with TestClient(create_app(settings_in(tmp_path))) as client:
        response = client.post("/greetings", json={"name": "Ada"})
        assert response.status_code == 202
        task_id = response.json()["task_id"]
        waited = client.get(f"/greetings/{task_id}", params={"wait": "10"})
        assert waited.status_code == 200
        assert waited.json() == {
            "task_id": task_id,
            "status": "completed",
            "greeting": "Hello, Ada!",
        }


def test_many_requests_at_once(tmp_path: Path) -> None:
    with TestClient(create_app(settings_in(tmp_path))) as client:
        ids = [
            client.post("/greetings", json={"name": f"n{i}"}).json()["task_id"] for i in range(20)
        ]
        greetings = [
            client.get(f"/greetings/{task_id}", params={"wait": "10"}).json()["greeting"]
            for task_id in ids
        ]
    assert greetings == [f"Hello, n{i}!" for i in range(20)]


def test_without_the_lifespan_worker_a_command_worker_runs_the_tasks(tmp_path: Path) -> None:
    settings = settings_in(tmp_path)
    with TestClient(create_app(settings, run_worker=False)) as client:
        task_id = client.post("/greetings", json={"name": "Grace"}).json()["task_id"]
        assert client.get(f"/greetings/{task_id}").json()["status"] == "pending"

        env = {name: value for name, value in os.environ.items() if not name.startswith("OMNIQ_")}
        completed = subprocess.run(
            [
                *(sys.executable, "-m", "omniq", "worker", "--async"),
                *("--import", "examples.starlette_app.tasks", "--limit", "1"),
                *("--base-dir", str(settings.base_dir)),
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert completed.returncode == 0, completed.stderr
        assert client.get(f"/greetings/{task_id}").json() == {
            "task_id": task_id,
            "status": "completed",
            "greeting": "Hello, Grace!",
        }


def test_bad_requests(tmp_path: Path) -> None:
    with TestClient(create_app(settings_in(tmp_path), run_worker=False)) as client:
        assert client.post("/greetings", json={}).status_code == 400
        assert client.post("/greetings", content=b"not json").status_code == 400
        assert client.get("/greetings/no-such-task").status_code == 404
        assert client.get("/greetings/x", params={"wait": "soon"}).status_code == 400
