"""``create_app``: the dashboard as a Starlette (ASGI) application.

:class:`Dashboard` holds what every page needs: the facade, the access token, the
read-only switch and the templates (Jinja2, autoescaped). The pages
(:mod:`omniq.web.pages`), the actions (:mod:`omniq.web.actions`) and the metrics
(:mod:`omniq.web.metrics`) are plain functions of the dashboard and the request;
:class:`omniq.web.security.Guard` wraps them all.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, urlencode

import jinja2
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from omniq._async.core import AsyncOmniQ
from omniq.monitoring import Metrics
from omniq.web import format as fmt
from omniq.web.security import Guard, Scope, check_token, csrf_token

MAX_FORM_BYTES = 64 * 1024
METRICS_TTL = 2.0  # seconds one snapshot serves every tab and scrape (actions renew it)
Handler = Callable[["Dashboard", Request], Awaitable[Response]]


class FormError(Exception):
    """A form the dashboard cannot take: ``status`` and a one-line reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class Dashboard:
    """The dashboard's shared state: the facade, the token, read-only, the templates."""

    def __init__(self, omniq: AsyncOmniQ, token: str | None, read_only: bool) -> None:
        self.omniq = omniq
        self.token = token
        self.read_only = read_only
        self.templates = jinja2.Environment(
            loader=jinja2.PackageLoader("omniq.web", "templates"),
            autoescape=True,  # every template, whatever its name: task data is hostile
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self._snapshot: tuple[float, Metrics] | None = None
        self._snapshot_lock: asyncio.Lock | None = None
        self.templates.filters.update(
            utc=fmt.utc,
            iso=fmt.iso,
            seconds=fmt.seconds,
            pretty=fmt.pretty,
            short_id=fmt.short_id,
        )

    async def metrics(self) -> Metrics:
        """The store's snapshot, taken at most every :data:`METRICS_TTL` seconds.

        Many open tabs refreshing themselves and a Prometheus scraping share one
        snapshot, and only one is taken at a time: on a big store each costs a scan.
        """
        if self._snapshot_lock is None:  # made here, in the server's event loop
            self._snapshot_lock = asyncio.Lock()
        async with self._snapshot_lock:
            cached = self._snapshot
            if cached is not None and time.monotonic() - cached[0] < METRICS_TTL:
                return cached[1]
            snapshot = await self.omniq.metrics()
            self._snapshot = (time.monotonic(), snapshot)
            return snapshot

    def changed(self) -> None:
        """Forget the snapshot: an action changed the store."""
        self._snapshot = None

    def render(
        self, request: Request | Scope, template: str, status: int = 200, **context: Any
    ) -> HTMLResponse:
        """An HTML page from ``template`` with the common context."""
        return HTMLResponse(self.page(request, template, **context), status_code=status)

    def page(self, request: Request | Scope, template: str, **context: Any) -> str:
        """The HTML text of ``template`` with the common context."""
        scope = request.scope if isinstance(request, Request) else request
        now = dt.datetime.now(dt.timezone.utc)
        root = str(scope.get("root_path", ""))
        path = str(scope.get("path", ""))[len(root) :] or "/"
        query = parse_qs(bytes(scope.get("query_string", b"")).decode("latin-1"))
        kept = {key: values for key, values in query.items() if key not in ("done", "n")}
        common = {
            "board": self,
            "csrf": csrf_token(scope),
            "now": now,
            "ago": functools.partial(fmt.relative, now=now),
            "url": lambda path, **query: url(root, path, **query),
            "path": path,
            "here": path + (f"?{urlencode(kept, doseq=True)}" if kept else ""),
            "notice": None,
        }
        common.update(context)
        return self.templates.get_template(template).render(common)

    def login_page(self, scope: Scope) -> bytes:
        """The login form (served with 401 to a browser without the token)."""
        path = str(scope.get("path", ""))[len(str(scope.get("root_path", ""))) :] or "/"
        query = bytes(scope.get("query_string", b"")).decode("latin-1")
        target = path + (f"?{query}" if query else "")
        return self.page(scope, "login.html", next=target, failed=False).encode("utf-8")

    def message(self, request: Request, status: int, title: str, text: str) -> HTMLResponse:
        """A page that says one thing (a refusal, a missing task, a bad filter)."""
        return self.render(request, "message.html", status, title=title, text=text)


def url(root: str, path: str, **query: Any) -> str:
    """``path`` below the app's mount point, with the non-empty ``query`` values."""
    values = {key: value for key, value in query.items() if value not in (None, "")}
    return root + path + (f"?{urlencode(values, doseq=True)}" if values else "")


async def read_form(request: Request) -> dict[str, list[str]]:
    """The fields of a urlencoded form (at most :data:`MAX_FORM_BYTES`)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise FormError(415, "send the form as application/x-www-form-urlencoded")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise FormError(413, "the form is too large")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise FormError(400, "the form is not UTF-8 text") from None
    return parse_qs(text, keep_blank_values=True, max_num_fields=100)


def create_app(
    omniq: AsyncOmniQ, *, token: str | None = None, read_only: bool = False
) -> Starlette:
    """The dashboard of ``omniq``'s store as an ASGI app (serve it, or mount it).

    ``token``: when set, every request must carry it (``Authorization: Bearer``, or
    the login form's cookie); at least 16 characters. ``read_only``: no action is
    shown or accepted. ``omniq`` must be an :class:`~omniq.AsyncOmniQ` (a blocking
    application makes one from its ``Settings``: ``AsyncOmniQ(settings)``); the app
    opens it on first use and leaves closing it to the caller.
    """
    if not isinstance(omniq, AsyncOmniQ):
        raise TypeError(
            "create_app needs an AsyncOmniQ (for a blocking app: "
            f"AsyncOmniQ(omniq.settings)), got {type(omniq).__name__}"
        )
    if not isinstance(read_only, bool):
        raise TypeError(f"read_only must be True or False, got {read_only!r}")
    from omniq.web import actions, metrics, pages

    board = Dashboard(omniq, check_token(token), read_only)

    def route(path: str, handler: Handler, methods: list[str]) -> Route:
        return Route(path, functools.partial(handler, board), methods=methods)

    routes = [
        route("/", pages.overview, ["GET"]),
        route("/tasks", pages.tasks, ["GET"]),
        route("/tasks/{task_id:path}/retry", actions.retry, ["POST"]),
        route("/tasks/{task_id:path}/cancel", actions.cancel, ["POST"]),
        route("/tasks/{task_id:path}", pages.task, ["GET"]),
        route("/workers", pages.workers, ["GET"]),
        route("/actions/retry-failed", actions.retry_failed, ["POST"]),
        route("/actions/purge", actions.purge, ["POST"]),
        route("/login", actions.login, ["GET", "POST"]),
        route("/logout", actions.logout, ["POST"]),
        route("/metrics", metrics.metrics_endpoint, ["GET"]),
        route("/healthz", metrics.healthz, ["GET"]),
        Mount("/static", StaticFiles(packages=[("omniq.web", "static")]), name="static"),
    ]
    guard = Middleware(Guard, token=board.token, login_page=board.login_page)
    app = Starlette(routes=routes, middleware=[guard])
    app.state.dashboard = board
    return app
