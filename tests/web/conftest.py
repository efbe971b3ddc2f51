"""Fixtures of the dashboard tests: a live server on a loopback port, a real browser.

The server is the real thing: uvicorn serving ``omniq.web.create_app`` in a thread
of its own (with its own event loop and its own ``AsyncOmniQ``) on a free port of
127.0.0.1, over the backend under test (``OMNIQ_TEST_BACKEND``: sqlite, file or
postgres).
The browser is Debian's headless Chromium, driven by Playwright
(``executable_path="/usr/bin/chromium"``; Playwright never downloads a browser here).
Without Chromium the browser tests are skipped, with the reason, unless ``CI`` is
set: then they fail, so CI cannot pass without them.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import random
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import make_settings

from omniq import AsyncOmniQ, OmniQ, Settings
from omniq.models import new_task_id
from omniq.records import TaskRecord

CHROMIUM = os.environ.get("OMNIQ_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
IN_CI = bool(os.environ.get("CI"))
WAIT = 30.0  # seconds: generous, a busy 2-core machine
DOCS = Path(__file__).resolve().parents[2] / "docs"
TOKEN = "correct-horse-battery-staple-42"


def browser_unavailable(reason: str) -> None:
    """Skip the test, or fail it on CI (where the browser must be there)."""
    if IN_CI:
        pytest.fail(f"{reason} (CI is set: .ci/run installs it with apt-get)", pytrace=False)
    pytest.skip(reason)


@dataclass
class Server:
    """A running dashboard: its base URL and the settings of its store."""

    url: str
    settings: Settings


class _ServerThread(threading.Thread):
    """uvicorn on a free loopback port, with the dashboard of ``settings``' store."""

    def __init__(self, settings: Settings, options: dict[str, Any]) -> None:
        super().__init__(name="omniq-web-test-server", daemon=True)
        self.settings = settings
        self.options = options
        self.port: int | None = None
        self.ready = threading.Event()
        self.failure: BaseException | None = None
        self.server: Any = None

    def run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as error:  # reported to the test by start()
            self.failure = error
            self.ready.set()

    async def _serve(self) -> None:
        import uvicorn

        from omniq.web import create_app

        async with AsyncOmniQ(self.settings) as omniq:
            app = create_app(omniq, **self.options)
            config = uvicorn.Config(
                app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"
            )
            self.server = uvicorn.Server(config)
            self.server.install_signal_handlers = lambda: None  # not the main thread
            serving = asyncio.ensure_future(self.server.serve())
            while not self.server.started and not serving.done():
                await asyncio.sleep(0.01)
            if self.server.started:
                self.port = self.server.servers[0].sockets[0].getsockname()[1]
            self.ready.set()
            await serving

    def start_and_wait(self) -> int:
        self.start()
        if not self.ready.wait(WAIT) or self.port is None:
            raise RuntimeError(f"the dashboard did not start: {self.failure!r}")
        return self.port

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
        self.join(WAIT)


@pytest.fixture
def store(base_dir: Path) -> Settings:
    """Settings of a fresh store of the backend under test."""
    return make_settings(base_dir)


@pytest.fixture
def serve(store: Settings) -> Iterator[Callable[..., Server]]:
    """Start a dashboard on ``store`` with ``create_app`` options; stopped after the test."""
    started: list[_ServerThread] = []

    def start(**options: Any) -> Server:
        thread = _ServerThread(store, options)
        started.append(thread)
        port = thread.start_and_wait()
        return Server(f"http://127.0.0.1:{port}", store)

    yield start
    for thread in started:
        thread.stop()


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    """One headless Chromium for the session (skipped without it, outside CI)."""
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        browser_unavailable(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        browser_unavailable('playwright is not installed: pip install -e ".[dev]"')
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(chromium: Any) -> Iterator[Any]:
    """A fresh browser tab (its own cookies), 1280x900, generous timeouts."""
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(WAIT * 1000)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    yield tab
    context.close()
    assert errors == [], f"the page's script failed: {errors}"


# ---------------------------------------------------------------------- store contents


def run_all(omniq: OmniQ, limit: int) -> None:
    """Run ``limit`` due tasks with a pool of this process."""
    with omniq.worker_pool(concurrency=2) as pool:
        pool.process_tasks(limit=limit)


def fill_every_state(settings: Settings, out: str, attempts: int = 1) -> dict[str, list[str]]:
    """Tasks in every state over two queues; their ids by state.

    default: 3 completed, 1 failed (after ``attempts`` executions: use ``no_backoff``
    for more than one), 2 pending, 1 cancelled, 1 running;
    emails: 2 completed, 2 failed, 1 pending.
    """
    ids: dict[str, list[str]] = {state: [] for state in ("completed", "failed", "pending")}
    with OmniQ(settings) as omniq:
        for value in range(3):
            ids["completed"].append(omniq.enqueue("task_functions.add", args=[value, 1]))
        for value in range(2):
            ids["completed"].append(
                omniq.enqueue("task_functions.add", args=[value, 2], queue="emails")
            )
        ids["failed"].append(
            omniq.enqueue("task_functions.fail_always", args=[out], max_retries=attempts)
        )
        for _ in range(2):
            ids["failed"].append(
                omniq.enqueue(
                    "task_functions.fail_always", args=[out], max_retries=1, queue="emails"
                )
            )
        run_all(omniq, 7 + attempts)
        cancelled = omniq.enqueue("task_functions.add", args=[0, 0])
        assert omniq.cancel(cancelled)
        ids["cancelled"] = [cancelled]
        ids["running"] = [omniq.enqueue("task_functions.add", args=[9, 9])]
        claimed = omniq.queue.dequeue()  # held as if by a worker: RUNNING, with a lease
        assert claimed is not None and claimed.id == ids["running"][0]
        for value in range(2):
            ids["pending"].append(omniq.enqueue("task_functions.add", args=[value, 5]))
        ids["pending"].append(omniq.enqueue("task_functions.add", args=[7, 7], queue="emails"))
    return ids


def add_history(settings: Settings, minutes: int = 60, seed: int = 7) -> tuple[int, int]:
    """Finished tasks spread over the last hour (for a chart worth a look); their counts."""
    rng = random.Random(seed)
    now = time.time()
    records: list[TaskRecord] = []
    completed = failed = 0
    for minute in range(minutes):
        finished_at = now - (minute + 0.5) * 60
        for _ in range(rng.randint(2, 9) + (minutes - minute) // 6):
            status = "failed" if rng.random() < 0.08 else "completed"
            completed += status == "completed"
            failed += status == "failed"
            records.append(history_record(status, finished_at, rng.choice(["default", "emails"])))
    with OmniQ(settings) as omniq:
        omniq.queue.storage.add(records)
    return completed, failed


def history_record(status: str, finished_at: float, queue: str) -> TaskRecord:
    """A finished task as a store keeps it (written straight to the store)."""
    error = None
    if status == "failed":
        error = json.dumps(
            {
                "error_type": "runtime",
                "message": "the mail server refused the message",
                "exception_type": "builtins.RuntimeError",
                "timestamp": dt.datetime.fromtimestamp(finished_at, dt.timezone.utc).isoformat(),
            }
        )
    return TaskRecord(
        id=new_task_id(),
        func_path="task_functions.add",
        payload='{"args":[1,2],"kwargs":{}}',
        status=status,
        attempts=1,
        max_retries=3,
        eta=finished_at - 2,
        interval=None,
        timeout=None,
        result="3" if status == "completed" else None,
        error=error,
        created_at=finished_at - 2,
        updated_at=finished_at,
        started_at=finished_at - 1,
        finished_at=finished_at,
        queue=queue,
        worker="WorkerPool-history",
    )
