"""``omniq workers``, ``omniq stats``, ``omniq web`` and ``omniq worker --health-file``,
run as a user runs them: subprocesses on a fresh SQLite store."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from processes import wait_until
from test_cli import Cli, clean_environment, expect_usage_error

from omniq import AsyncOmniQ, Settings

TOKEN = "a-long-enough-secret-token-1234"


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path / "store", tmp_path)


def stop(process: subprocess.Popen[str]) -> tuple[str, str]:
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    return out, err


def test_workers_lists_a_running_worker_and_forgets_it_when_it_stops(
    cli: Cli, tmp_path: Path
) -> None:
    assert cli.json("workers") == []
    assert "no worker is registered" in cli.run("workers").stderr
    health = tmp_path / "health"
    worker = cli.start("worker", "--queue", "emails", "--health-file", str(health))
    try:
        wait_until(health.exists, what="the health file")
        (entry,) = cli.json("workers")
        assert entry["pid"] == worker.pid and entry["alive"] is True
        assert entry["queues"] == ["emails"] and entry["host"] == socket.gethostname()
        table = cli.ok("workers").splitlines()
        assert table[0].split()[:3] == ["STATE", "POOL", "HOST"]
        assert table[1].startswith("alive")
    finally:
        _, err = stop(worker)
    assert worker.returncode == 0, err
    assert cli.json("workers") == []


def test_a_health_file_in_a_missing_directory_is_a_usage_error(cli: Cli, tmp_path: Path) -> None:
    completed = cli.run("worker", "--health-file", str(tmp_path / "no" / "such" / "file"))
    expect_usage_error(completed, "--health-file", "does not exist")


def test_stats_prints_what_the_metrics_endpoint_serves(cli: Cli, tmp_path: Path) -> None:
    for value in range(3):
        cli.enqueue("task_functions.add", "--args", f"[{value}, 1]", "--queue", "emails")
    cli.enqueue("task_functions.fail_always", "--args", '["x"]', "--max-retries", "1")
    cli.enqueue("task_functions.add", "--args", "[1, 1]", "--delay", "1h")
    assert cli.run("worker", "--limit", "4").returncode == 0
    stats = cli.json("stats")
    assert stats["total"] == 5
    assert stats["counts"] == {
        "pending": 1,
        "running": 0,
        "completed": 3,
        "failed": 1,
        "cancelled": 0,
    }
    assert stats["queues"]["emails"]["completed_last_hour"] == 3
    assert stats["queues"]["default"]["failed_last_hour"] == 1
    assert stats["queues"]["default"]["oldest_due_age"] == 0  # the pending one is not due
    assert stats["workers_alive"] == 0
    table = cli.ok("stats")
    assert "last hour: 3 completed, 1 failed" in table
    # The same numbers in the Prometheus format.
    with ThreadPoolExecutor(1) as thread:  # a loop of its own, whatever runs in this thread
        text = thread.submit(asyncio.run, metrics_text(Settings(base_dir=cli.base_dir))).result()
    assert 'omniq_tasks{queue="emails",status="completed"} 3' in text
    assert 'omniq_tasks{queue="default",status="failed"} 1' in text
    assert 'omniq_tasks_finished_last_hour{queue="emails",status="completed"} 3' in text
    assert 'omniq_workers{state="alive"} 0' in text


async def metrics_text(settings: Settings) -> str:
    """What the dashboard's ``/metrics`` serves for ``settings``' store."""
    from omniq.web import create_app

    async with AsyncOmniQ(settings) as omniq:
        transport = httpx.ASGITransport(app=create_app(omniq))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as web:
            return (await web.get("/metrics")).text


def test_web_refuses_other_addresses_without_a_token(cli: Cli) -> None:
    expect_usage_error(cli.run("web", "--host", "0.0.0.0"), "--host 0.0.0.0", "token")
    expect_usage_error(cli.run("web", "--host", "example.org"), "token")
    expect_usage_error(cli.run("web", "--token", "short"), "at least 16 characters")
    expect_usage_error(cli.run("web", "--port", "70000"), "--port")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_web_serves_the_dashboard_with_the_token_from_the_environment(cli: Cli) -> None:
    cli.enqueue("task_functions.add", "--args", "[1, 2]")
    port = free_port()
    env = clean_environment(OMNIQ_WEB_TOKEN=TOKEN)
    process = subprocess.Popen(
        [*cli.args(["web", "--port", str(port), "--read-only"], True)],
        cwd=cli.cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(url + "/healthz").status_code == 401
        except httpx.TransportError:
            return process.poll() is not None  # ended: reported below

    try:
        wait_until(up, what="the dashboard")
        assert process.poll() is None
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        assert httpx.get(url + "/healthz", headers=bearer).json()["status"] == "ok"
        overview = httpx.get(url + "/", headers=bearer)
        assert overview.status_code == 200 and 'data-count="pending">1<' in overview.text
        assert "read-only" in overview.text
    finally:
        out, err = stop(process)
    assert TOKEN not in out + err  # never printed, never logged
    assert f"http://127.0.0.1:{port}/" in err and "token required" in err


def test_import_of_the_dashboard_without_the_extra_names_it() -> None:
    code = (
        "import sys; sys.modules['starlette'] = None\n"
        "try:\n    import omniq.web\nexcept ImportError as e:\n    print(e)\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert "pip install 'omniq[web]'" in completed.stdout, completed.stderr
    plain = subprocess.run(
        [sys.executable, "-c", "import sys; sys.modules['starlette'] = None; import omniq"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert plain.returncode == 0, plain.stderr


def test_list_searches_and_retry_all_failed_of_one_queue(cli: Cli) -> None:
    mail = cli.enqueue(
        "task_functions.fail_always", "--args", '["x"]', "--max-retries", "1", "--queue", "emails"
    )
    other = cli.enqueue("task_functions.fail_always", "--args", '["x"]', "--max-retries", "1")
    plain = cli.enqueue("task_functions.add", "--args", "[1, 2]")
    assert cli.run("worker", "--limit", "3").returncode == 0
    found = cli.json("list", "--function", "fail_")
    assert sorted(task["id"] for task in found) == sorted([mail, other])
    assert [task["id"] for task in cli.json("list", "--id", plain[-12:])] == [plain]
    assert "matching the search" in cli.run("list", "--function", "nothing_like_it").stderr
    assert cli.json("retry", "--all-failed", "--queue", "emails") == {"retried": 1}
    assert cli.task(mail)["status"] == "pending" and cli.task(other)["status"] == "failed"
    expect_usage_error(cli.run("retry", other, "--queue", "emails"), "--queue", "--all-failed")
    expect_usage_error(cli.run("list", "--function", ""), "--function")
