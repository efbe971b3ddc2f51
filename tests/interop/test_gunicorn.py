"""``gunicorn --preload -w 3``: the store opened in the master before fork, then used by
every worker at once (issue 13 E). Every request must succeed, and no worker may hang."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import BACKEND, TESTS_DIR, make_settings, requires_persistence
from processes import environment

from omniq import OmniQ

REQUESTS = 30


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


@requires_persistence()
@pytest.mark.skipif(sys.platform == "win32", reason="gunicorn runs on POSIX only")
def test_gunicorn_preload_workers_share_nothing_they_should_not(base_dir: Path) -> None:
    settings = make_settings(base_dir)
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--preload",
            "-w",
            "3",
            "-b",
            f"127.0.0.1:{port}",
            "--timeout",
            "30",
            "gunicorn_app:app",
        ],
        cwd=TESTS_DIR,
        env=environment(settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for_port(port)
        answers = []
        for _ in range(REQUESTS):
            request = urllib.request.Request(f"http://127.0.0.1:{port}/", method="POST")
            with urllib.request.urlopen(request, timeout=30) as response:
                assert response.status == 200
                answers.append(json.loads(response.read()))
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=60)
    assert len(answers) == REQUESTS, output
    assert all(answer["status"] == "pending" for answer in answers), answers
    assert "Traceback" not in output, output
    with OmniQ(settings) as omniq:
        assert omniq.stats()["pending"] == REQUESTS + 1  # + the master's start-up enqueue
    assert BACKEND in ("sqlite", "file", "postgres")
