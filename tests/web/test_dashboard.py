"""The dashboard in a real browser, as a person uses it: headless Chromium via Playwright.

Each test starts the dashboard (uvicorn, a loopback port) on a store of the backend
under test, with tasks in every state, and reads, clicks and confirms like a user.
Run on SQLite, files and PostgreSQL by ``nox -s web``. The overview and task-page tests
save screenshots beside the test, and for the docs (``docs/dashboard-overview.png``,
``docs/dashboard-task.png``) when run on SQLite with ``OMNIQ_WRITE_SCREENSHOTS=1`` (so
that a test run leaves the working tree as it was).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from conftest import BACKEND

from omniq import OmniQ, TaskStatus
from omniq.web.security import CSRF_COOKIE

from .conftest import DOCS, TOKEN, WAIT, Server, add_history, fill_every_state

ServeFactory = Callable[..., Server]


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def count(page: Any, name: str) -> str:
    return str(page.locator(f"[data-count='{name}']").inner_text())


def queue_cell(page: Any, queue: str, status: str) -> str:
    return str(
        page.locator(f"#queues tr[data-queue='{queue}'] td[data-status='{status}']").inner_text()
    )


def screenshot(page: Any, name: str, tmp_path: Path) -> None:
    """Save a screenshot beside the test, and under docs/ when asked (see the module)."""
    page.screenshot(path=str(tmp_path / name), full_page=True)
    if BACKEND == "sqlite" and os.environ.get("OMNIQ_WRITE_SCREENSHOTS") == "1":
        page.screenshot(path=str(DOCS / name), full_page=True)


def test_the_overview_counts_every_queue_and_status(
    serve: ServeFactory, page: Any, out: str, tmp_path: Path
) -> None:
    server = serve()
    fill_every_state(server.settings, out)
    completed_before, failed_before = add_history(server.settings)
    with OmniQ(server.settings) as omniq:
        omniq.schedule("nightly-report", "task_functions.add", cron="0 3 * * *", args=[1, 2])
        with omniq.worker_pool(name="mailer", queues=["emails"], concurrency=8, schedules=False):
            page.goto(server.url + "/")
    assert page.title() == "Overview · omniq"
    expect(page.locator("#workers tbody tr")).to_contain_text("mailer")
    expect(page.locator("#schedules tbody tr")).to_contain_text("nightly-report")
    assert count(page, "workers-alive") == "1"
    total = 5 + 3 + 3 + 1 + 1 + completed_before + failed_before
    assert count(page, "total") == str(total)
    assert count(page, "pending") == "3"
    assert count(page, "running") == "1"
    assert count(page, "completed") == str(5 + completed_before)
    assert count(page, "failed") == str(3 + failed_before)
    assert count(page, "cancelled") == "1"
    assert queue_cell(page, "emails", "pending") == "1"
    assert queue_cell(page, "default", "running") == "1"
    assert queue_cell(page, "default", "cancelled") == "1"
    # The chart is drawn by the page's own script: one bar group per minute.
    expect(page.locator("#throughput-chart svg g")).to_have_count(60)
    screenshot(page, "dashboard-overview.png", tmp_path)


def test_the_overview_refreshes_itself(serve: ServeFactory, page: Any, out: str) -> None:
    server = serve()
    fill_every_state(server.settings, out)
    page.goto(server.url + "/")
    assert count(page, "pending") == "3"
    with OmniQ(server.settings) as omniq:
        omniq.enqueue("task_functions.add", args=[1, 1])
    expect(page.locator("[data-count='pending']")).to_have_text("4", timeout=WAIT * 1000)


def test_open_a_failed_task_retry_it_and_see_it_pending(
    serve: ServeFactory, page: Any, out: str, tmp_path: Path, no_backoff: None
) -> None:
    server = serve()
    ids = fill_every_state(server.settings, out, attempts=3)
    failed_id = ids["failed"][0]  # the one of the default queue
    page.goto(server.url + "/")
    page.locator("#queues tr[data-queue='default'] td[data-status='failed'] a").click()
    expect(page.locator("#task-list tbody tr")).to_have_count(1)
    page.locator(f"#task-list tr[data-task='{failed_id}'] a").click()
    expect(page.locator("h1")).to_contain_text(failed_id)
    expect(page.locator("h1 .status")).to_have_text("failed")
    expect(page.locator("#error")).to_contain_text("RuntimeError")
    expect(page.locator("#traceback")).to_contain_text("Traceback (most recent call last)")
    attempts = page.locator("#attempts li")
    expect(attempts).to_have_count(3)
    expect(attempts.nth(0)).to_contain_text("#1 retry")
    expect(attempts.nth(2)).to_contain_text("#3 failed")
    screenshot(page, "dashboard-task.png", tmp_path)
    questions: list[str] = []

    def accept(dialog: Any) -> None:
        questions.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    page.get_by_role("button", name="Retry").click()
    expect(page.locator(".notice-ok")).to_have_text("The task is pending again.")
    expect(page.locator("h1 .status")).to_have_text("pending")
    assert questions == [f"Retry task {failed_id}?"]
    with OmniQ(server.settings) as omniq:
        task = omniq.get_task(failed_id)
    assert task is not None and task.status == TaskStatus.PENDING


def test_dismissing_the_confirmation_changes_nothing(
    serve: ServeFactory, page: Any, out: str
) -> None:
    server = serve()
    ids = fill_every_state(server.settings, out)
    page.goto(f"{server.url}/tasks/{ids['pending'][0]}")
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.get_by_role("button", name="Cancel").click()
    expect(page.locator("h1 .status")).to_have_text("pending")
    with OmniQ(server.settings) as omniq:
        task = omniq.get_task(ids["pending"][0])
    assert task is not None and task.status == TaskStatus.PENDING


def test_retry_every_failed_task_of_one_queue(serve: ServeFactory, page: Any, out: str) -> None:
    server = serve()
    fill_every_state(server.settings, out)
    page.goto(server.url + "/")
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#queues tr[data-queue='emails']").get_by_role(
        "button", name="Retry failed"
    ).click()
    expect(page.locator(".notice-ok")).to_have_text("2 failed task(s) pending again.")
    assert queue_cell(page, "emails", "failed") == "0"
    assert queue_cell(page, "default", "failed") == "1"


def test_read_only_shows_no_button_and_refuses_a_forged_post(
    serve: ServeFactory, page: Any, out: str
) -> None:
    server = serve(read_only=True)
    ids = fill_every_state(server.settings, out)
    page.goto(server.url + "/")
    expect(page.locator(".bar .badge")).to_have_text("read-only")
    expect(page.locator("main button")).to_have_count(0)
    expect(page.locator("main form[method='post']")).to_have_count(0)
    page.goto(f"{server.url}/tasks/{ids['failed'][0]}")
    expect(page.locator("h1 .status")).to_have_text("failed")
    expect(page.locator("main button")).to_have_count(0)
    # A hand-made POST, with a valid CSRF pair even, is refused all the same.
    csrf = next(c["value"] for c in page.context.cookies() if c["name"] == CSRF_COOKIE)
    response = page.request.post(
        f"{server.url}/tasks/{ids['failed'][0]}/retry",
        form={"csrf": csrf, "confirmed": "1", "back": "/"},
    )
    assert response.status == 403
    with OmniQ(server.settings) as omniq:
        task = omniq.get_task(ids["failed"][0])
    assert task is not None and task.status == TaskStatus.FAILED


def test_a_token_is_needed_for_every_page(serve: ServeFactory, page: Any, out: str) -> None:
    server = serve(token=TOKEN)
    fill_every_state(server.settings, out)
    for path in ("/", "/tasks", "/workers", "/metrics", "/healthz"):
        assert httpx.get(server.url + path).status_code == 401, path
    assert httpx.get(server.url + "/static/omniq.css").status_code == 200  # assets are public
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert httpx.get(server.url + "/metrics", headers=bearer).status_code == 200
    wrong = {"Authorization": f"Bearer {TOKEN}x"}
    assert httpx.get(server.url + "/metrics", headers=wrong).status_code == 401
    # A browser gets the login form, with status 401.
    response = page.goto(server.url + "/tasks?status=failed")
    assert response is not None and response.status == 401
    page.get_by_label("Token").fill("not the token, surely")
    page.get_by_role("button", name="Log in").click()
    expect(page.locator(".notice-error")).to_have_text("That is not the token.")
    page.get_by_label("Token").fill(TOKEN)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("h1")).to_have_text("Tasks")  # back where it was going
    expect(page.locator("#task-list tbody tr")).to_have_count(3)
    session = [c for c in page.context.cookies() if c["name"] == "omniq_session"]
    assert session and session[0]["httpOnly"] and session[0]["sameSite"] == "Strict"
    assert TOKEN not in session[0]["value"]
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("button", name="Log in")).to_be_visible()
    assert page.goto(server.url + "/").status == 401


def test_task_data_is_shown_as_text_never_run(serve: ServeFactory, page: Any) -> None:
    server = serve()
    attack = "<script>window.__pwned = 1</script><img src=x onerror='window.__pwned=2'>"
    with OmniQ(server.settings) as omniq:
        task_id = omniq.enqueue("task_functions.echo", args=[attack], kwargs={"note": attack})
    page.goto(f"{server.url}/tasks/{task_id}")
    expect(page.locator("#args")).to_contain_text("<script>window.__pwned = 1</script>")
    expect(page.locator("#kwargs")).to_contain_text("onerror=")
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page.locator("main script").count() == 0
    assert page.locator("main img").count() == 0


def test_a_cross_site_post_is_refused(serve: ServeFactory, out: str) -> None:
    server = serve()
    ids = fill_every_state(server.settings, out)
    target = f"{server.url}/tasks/{ids['failed'][0]}/retry"
    with httpx.Client() as client:
        client.get(server.url + "/")  # sets the CSRF cookie
        csrf = client.cookies[CSRF_COOKIE]
        no_token = client.post(target, data={"confirmed": "1"})
        wrong = client.post(target, data={"confirmed": "1", "csrf": csrf + "x"})
        cross = client.post(
            target, data={"confirmed": "1", "csrf": csrf}, headers={"Sec-Fetch-Site": "cross-site"}
        )
        unconfirmed = client.post(target, data={"csrf": csrf})
    assert (no_token.status_code, wrong.status_code, cross.status_code) == (403, 403, 403)
    assert unconfirmed.status_code == 200 and "Confirm" in unconfirmed.text  # asks first
    with OmniQ(server.settings) as omniq:
        task = omniq.get_task(ids["failed"][0])
    assert task is not None and task.status == TaskStatus.FAILED


def test_without_script_the_server_asks_for_confirmation(
    serve: ServeFactory, chromium: Any, out: str
) -> None:
    server = serve()
    ids = fill_every_state(server.settings, out)
    context = chromium.new_context(java_script_enabled=False)
    try:
        tab = context.new_page()
        tab.goto(f"{server.url}/tasks/{ids['failed'][0]}")
        tab.get_by_role("button", name="Retry").click()
        expect(tab.locator("h1")).to_have_text(f"Retry task {ids['failed'][0]}?")
        tab.get_by_role("button", name="Confirm").click()
        expect(tab.locator(".notice-ok")).to_have_text("The task is pending again.")
    finally:
        context.close()


def test_workers_and_purge(serve: ServeFactory, page: Any, out: str) -> None:
    server = serve()
    fill_every_state(server.settings, out)
    with OmniQ(server.settings) as omniq, omniq.worker_pool(name="mailer", queues=["emails"]):
        page.goto(server.url + "/workers")
        row = page.locator("#worker-list tbody tr")
        expect(row).to_have_count(1)
        expect(row).to_contain_text("mailer")
        expect(row).to_contain_text("alive")
    page.goto(server.url + "/")
    page.locator("input[name='older_than']").fill("0s")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Purge").click()
    expect(page.locator(".notice-ok")).to_have_text("9 finished task(s) purged.")
    assert count(page, "completed") == "0" and count(page, "pending") == "3"
