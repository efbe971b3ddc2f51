"""The dashboard's actions (POST): retry, cancel, retry failed, purge; login and logout.

Every action is refused in read-only mode (403), needs the form's CSRF token (403
without it) and a confirmation: the page's script asks the browser's ``confirm()``
and adds ``confirmed=1``; without script the action answers with a confirmation
page whose button posts the same form again, confirmed. After the action the
browser is sent back (303) to the page it came from, with a fixed notice.
"""

from __future__ import annotations

import asyncio
import hmac
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from omniq.durations import parse_duration
from omniq.models import TaskStatus
from omniq.web.app import FormError, read_form, url
from omniq.web.security import (
    SESSION_COOKIE,
    SESSION_SECONDS,
    check_csrf,
    cookie_header,
    session_value,
)

if TYPE_CHECKING:
    from omniq.web.app import Dashboard

FINAL = tuple(status.value for status in TaskStatus if status.is_final)
FAILED_LOGIN_PAUSE = 0.5  # seconds: guessing the token over HTTP stays slow


def _field(form: dict[str, list[str]], name: str) -> str:
    values = form.get(name)
    return values[0].strip() if values else ""


def local_path(text: str, default: str = "/") -> str:
    """``text`` if it is a path of this app (``/...``, not ``//host``), else ``default``."""
    if text.startswith("/") and not text.startswith("//") and "\\" not in text:
        return text
    return default


def _back(
    board: Dashboard,
    request: Request,
    form: dict[str, list[str]],
    done: str,
    count: int | None = None,
) -> Response:
    """The 303 to the page the form came from, with the notice ``done``."""
    board.changed()  # the next overview shows the change
    target = local_path(_field(form, "back"))
    query = f"done={done}" + ("" if count is None else f"&n={count}")
    joiner = "&" if "?" in target else "?"
    root = str(request.scope.get("root_path", ""))
    return RedirectResponse(f"{root}{target}{joiner}{query}", status_code=303)


async def _confirmed_form(
    board: Dashboard, request: Request, question: str
) -> dict[str, list[str]] | Response:
    """The form of a confirmed action, or the response that stops it here."""
    if board.read_only:
        return board.message(request, 403, "Read-only", "This dashboard is read-only.")
    try:
        form = await read_form(request)
    except FormError as error:
        return board.message(request, error.status, "Bad form", error.reason)
    refused = check_csrf(request.scope, _field(form, "csrf"))
    if refused is not None:
        return board.message(request, 403, "Refused", refused)
    if _field(form, "confirmed") != "1":
        fields = [(key, value) for key, values in form.items() for value in values]
        hidden = [(key, value) for key, value in fields if key not in ("csrf", "confirmed")]
        return board.render(
            request,
            "confirm.html",
            question=question,
            action=request.url.path,
            fields=hidden,
            back=local_path(_field(form, "back")),
        )
    return form


async def retry(board: Dashboard, request: Request) -> Response:
    """Put a failed or cancelled task back to pending."""
    task_id = request.path_params["task_id"]
    form = await _confirmed_form(board, request, f"Retry task {task_id}?")
    if isinstance(form, Response):
        return form
    try:
        done = await board.omniq.retry(task_id)
    except (TypeError, ValueError) as error:
        return board.message(request, 400, "Bad task id", str(error))
    return _back(board, request, form, "retried" if done else "not-retried")


async def cancel(board: Dashboard, request: Request) -> Response:
    """Cancel a pending task."""
    task_id = request.path_params["task_id"]
    form = await _confirmed_form(board, request, f"Cancel task {task_id}?")
    if isinstance(form, Response):
        return form
    try:
        done = await board.omniq.cancel(task_id)
    except (TypeError, ValueError) as error:
        return board.message(request, 400, "Bad task id", str(error))
    return _back(board, request, form, "cancelled" if done else "not-cancelled")


async def retry_failed(board: Dashboard, request: Request) -> Response:
    """Put every failed task of one queue (or of all) back to pending."""
    form = await _confirmed_form(board, request, "Retry every failed task?")
    if isinstance(form, Response):
        return form
    queue = _field(form, "queue") or None
    try:
        count = await board.omniq.retry_failed(queue=queue)
    except (TypeError, ValueError) as error:
        return board.message(request, 400, "Bad queue", str(error))
    return _back(board, request, form, "retried-failed", count)


async def purge(board: Dashboard, request: Request) -> Response:
    """Delete finished tasks (of the statuses ticked) older than the age given."""
    form = await _confirmed_form(board, request, "Delete these finished tasks for good?")
    if isinstance(form, Response):
        return form
    statuses = [status for status in form.get("status", []) if status]
    unknown = [status for status in statuses if status not in FINAL]
    if unknown or not statuses:
        return board.message(
            request, 400, "Bad form", f"tick one or more of {', '.join(FINAL)} to purge"
        )
    try:
        older_than = parse_duration(_field(form, "older_than"))
    except ValueError as error:
        return board.message(request, 400, "Bad age", str(error))
    count = await board.omniq.purge(older_than, statuses=statuses)
    return _back(board, request, form, "purged", count)


async def login(board: Dashboard, request: Request) -> Response:
    """The login form (GET) and its check (POST): the token, compared in constant time."""
    root = str(request.scope.get("root_path", ""))
    if board.token is None:
        return RedirectResponse(url(root, "/"), status_code=303)
    if request.method == "GET":
        target = local_path(request.query_params.get("next", "/"))
        return board.render(request, "login.html", next=target, failed=False)
    try:
        form = await read_form(request)
    except FormError as error:
        return board.message(request, error.status, "Bad form", error.reason)
    target = local_path(_field(form, "next"))
    refused = check_csrf(request.scope, _field(form, "csrf"))
    given = _field(form, "token").encode("utf-8")
    if refused is not None or not hmac.compare_digest(given, board.token.encode("utf-8")):
        await asyncio.sleep(FAILED_LOGIN_PAUSE)
        return board.render(request, "login.html", 401, next=target, failed=True)
    response = RedirectResponse(root + target, status_code=303)
    name, value = cookie_header(
        request.scope, SESSION_COOKIE, session_value(board.token), max_age=SESSION_SECONDS
    )
    response.raw_headers.append((name, value))
    return response


async def logout(board: Dashboard, request: Request) -> Response:
    """Forget the session cookie."""
    try:
        form = await read_form(request)
    except FormError as error:
        return board.message(request, error.status, "Bad form", error.reason)
    refused = check_csrf(request.scope, _field(form, "csrf"))
    if refused is not None:
        return board.message(request, 403, "Refused", refused)
    root = str(request.scope.get("root_path", ""))
    response = RedirectResponse(url(root, "/login"), status_code=303)
    response.raw_headers.append(cookie_header(request.scope, SESSION_COOKIE, "", max_age=0))
    return response
