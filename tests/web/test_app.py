"""The dashboard app without a browser: Starlette's test client, and the pieces on their own.

Health and metrics when the store fails, mounting under a prefix, the guards' rules
(loopback, tokens, sessions), the Prometheus text format, bad input.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from omniq import AsyncOmniQ, OmniQ, Settings
from omniq._async.storage.memory import AsyncMemoryStorage
from omniq.exceptions import StorageError
from omniq.web import create_app
from omniq.web.metrics import render
from omniq.web.security import (
    SESSION_SECONDS,
    is_loopback,
    session_value,
    valid_bearer,
    valid_session,
)

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*httpx2")
    from starlette.testclient import TestClient

TOKEN = "x" * 16 + "-web-test"


class BrokenStorage(AsyncMemoryStorage):
    """A store that cannot be read (as a database whose server went away)."""

    async def next_eta(self, queues: Sequence[str] | None = None) -> float | None:
        raise StorageError("the server closed the connection")

    async def count_by_queue(self) -> dict[str, dict[str, int]]:
        raise StorageError("the server closed the connection")


@contextlib.contextmanager
def client(omniq: AsyncOmniQ, mount: str = "", **options: object) -> Iterator[TestClient]:
    """A test client of the dashboard (mounted at ``mount``) that closes ``omniq`` after."""

    @contextlib.asynccontextmanager
    async def lifespan(app: object) -> AsyncIterator[None]:
        yield
        await omniq.close()  # in the loop that opened it

    dashboard = create_app(omniq, **options)  # type: ignore[arg-type]
    app = Starlette(routes=[Mount(mount, app=dashboard)]) if mount else dashboard
    app.router.lifespan_context = lifespan
    with TestClient(app) as test_client:
        yield test_client


def test_health_and_metrics_when_the_store_answers(tmp_path: Path) -> None:
    with client(AsyncOmniQ(Settings(base_dir=tmp_path))) as web:
        health = web.get("/healthz")
        metrics = web.get("/metrics")
    assert health.status_code == 200 and health.json() == {"status": "ok", "store": "reachable"}
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "omniq_store_up 1" in metrics.text


def test_health_and_metrics_when_the_store_fails() -> None:
    with client(AsyncOmniQ(storage=BrokenStorage())) as web:
        health = web.get("/healthz")
        metrics = web.get("/metrics")
    assert health.status_code == 503 and health.json()["status"] == "unavailable"
    assert metrics.status_code == 503 and "omniq_store_up 0" in metrics.text


def test_mounted_under_a_prefix_every_link_and_cookie_stays_below_it(tmp_path: Path) -> None:
    settings = Settings(base_dir=tmp_path)
    with OmniQ(settings) as omniq:
        task_id = omniq.enqueue("examples.tasks.add", args=[1, 2])
    with client(AsyncOmniQ(settings), mount="/ops/queue") as web:
        mounted(web, task_id)


def mounted(web: TestClient, task_id: str) -> None:
    overview = web.get("/ops/queue/")
    assert overview.status_code == 200
    assert 'href="/ops/queue/static/omniq.css"' in overview.text
    assert 'href="/ops/queue/tasks?status=pending"' in overview.text
    assert "Path=/ops/queue" in overview.headers["set-cookie"]
    assert web.get("/ops/queue/static/omniq.js").status_code == 200
    listing = web.get("/ops/queue/tasks")
    assert f'href="/ops/queue/tasks/{task_id}"' in listing.text
    csrf = web.cookies["omniq_csrf"]
    cancelled = web.post(
        f"/ops/queue/tasks/{task_id}/cancel",
        data={"csrf": csrf, "confirmed": "1", "back": f"/tasks/{task_id}"},
        follow_redirects=False,
    )
    assert cancelled.status_code == 303
    assert cancelled.headers["location"] == f"/ops/queue/tasks/{task_id}?done=cancelled"


def test_every_response_carries_the_security_headers(tmp_path: Path) -> None:
    with client(AsyncOmniQ(Settings(base_dir=tmp_path))) as web:
        response = web.get("/")
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie


def test_a_back_address_elsewhere_is_not_followed(tmp_path: Path) -> None:
    settings = Settings(base_dir=tmp_path)
    with OmniQ(settings) as omniq:
        task_id = omniq.enqueue("examples.tasks.add", args=[1, 2])
    with client(AsyncOmniQ(settings)) as web:
        web.get("/")
        response = web.post(
            f"/tasks/{task_id}/cancel",
            data={"csrf": web.cookies["omniq_csrf"], "confirmed": "1", "back": "//evil.example/x"},
            follow_redirects=False,
        )
    assert response.headers["location"] == "/?done=cancelled"


def test_bad_filters_and_unknown_tasks(tmp_path: Path) -> None:
    with client(AsyncOmniQ(Settings(base_dir=tmp_path))) as web:
        assert web.get("/tasks?status=nonsense").status_code == 400
        assert web.get("/tasks?queue=has spaces").status_code == 400
        assert web.get("/tasks?limit=abc&offset=-5").status_code == 200  # defaults instead
        missing = web.get("/tasks/no-such-task")
        assert missing.status_code == 404 and "There is no task no-such-task." in missing.text
        assert web.get("/tasks/" + "x" * 300).status_code == 400


def test_purge_needs_a_duration_and_a_final_status(tmp_path: Path) -> None:
    with client(AsyncOmniQ(Settings(base_dir=tmp_path))) as web:
        web.get("/")
        form = {"csrf": web.cookies["omniq_csrf"], "confirmed": "1"}
        assert web.post("/actions/purge", data={**form, "older_than": "5x"}).status_code == 400
        no_status = web.post("/actions/purge", data={**form, "older_than": "1d"})
        assert no_status.status_code == 400
        pending = {**form, "older_than": "1d", "status": "pending"}
        assert web.post("/actions/purge", data=pending).status_code == 400


def test_a_form_that_is_not_urlencoded_is_refused(tmp_path: Path) -> None:
    with client(AsyncOmniQ(Settings(base_dir=tmp_path))) as web:
        response = web.post("/actions/retry-failed", json={"csrf": "x"})
        assert response.status_code == 415


def test_create_app_checks_what_it_is_given(tmp_path: Path) -> None:
    with OmniQ(Settings(base_dir=tmp_path)) as blocking, pytest.raises(TypeError, match="Async"):
        create_app(blocking)  # type: ignore[arg-type]
    omniq = AsyncOmniQ(Settings(base_dir=tmp_path))
    with pytest.raises(ValueError, match="at least 16 characters") as refused:
        create_app(omniq, token="too-short")
    assert "too-short" not in str(refused.value)
    with pytest.raises(TypeError, match="read_only"):
        create_app(omniq, read_only="yes")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.4", False),
        ("example.org", False),
    ],
)
def test_which_addresses_are_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_sessions_expire_and_are_bound_to_the_token() -> None:
    now = time.time()
    value = session_value(TOKEN, now)
    assert valid_session(TOKEN, value, now + 60)
    assert not valid_session(TOKEN + "other", value, now)
    assert not valid_session(TOKEN, value, now + SESSION_SECONDS + 1)
    stamp, signature = value.split(".")
    # Another first character of the signature (a fixed "0" forged nothing 1 time in 16).
    forged = f"{stamp}.{'1' if signature[0] == '0' else '0'}{signature[1:]}"
    assert not valid_session(TOKEN, forged, now)
    assert not valid_session(TOKEN, "garbage", now) and not valid_session(TOKEN, None, now)
    assert TOKEN not in value


def test_bearer_tokens() -> None:
    assert valid_bearer(TOKEN, f"Bearer {TOKEN}") and valid_bearer(TOKEN, f"bearer {TOKEN}")
    assert not valid_bearer(TOKEN, f"Basic {TOKEN}")
    assert not valid_bearer(TOKEN, f"Bearer {TOKEN[:-1]}") and not valid_bearer(TOKEN, None)


async def test_prometheus_labels_are_escaped() -> None:
    omniq = AsyncOmniQ(Settings(eager=False, backend="memory"))
    async with omniq.worker_pool(name='odd "pool"\nname'):
        text = render(await omniq.metrics())
    assert 'worker="odd \\"pool\\"\\nname"' in text
    for line in text.splitlines():
        assert line.startswith("#") or line.split(" ")[-1].replace(".", "").isdigit(), line
