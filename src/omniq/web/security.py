"""The dashboard's guards: the access token, the login cookie, CSRF, and response headers.

:class:`Guard` is ASGI middleware around the whole app:

* With a token, every request but the static assets and the login form must carry
  it: ``Authorization: Bearer <token>``, or the HttpOnly session cookie that the
  login form sets (``<issued>.<HMAC-SHA256 of it keyed by the token>``, valid for
  :data:`SESSION_SECONDS`; the token itself is never stored in the browser). Every
  comparison is :func:`hmac.compare_digest`. A missing or wrong token gets 401: the
  login page for a browser, plain text with ``WWW-Authenticate: Bearer`` otherwise.
* CSRF: a random per-browser token in a ``SameSite=Strict`` HttpOnly cookie, put
  into every form by the pages; :func:`check_csrf` refuses a POST whose field does
  not match the cookie, or that a browser marks as cross-site.
* Every response gets a strict Content-Security-Policy (no inline script, nothing
  from another origin), ``X-Frame-Options: DENY``, ``nosniff`` and no referrer.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import time
from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import SimpleCookie
from typing import Any

CSRF_COOKIE = "omniq_csrf"
SESSION_COOKIE = "omniq_session"
SESSION_SECONDS = 12 * 3600
MIN_TOKEN_LENGTH = 16
PUBLIC_PREFIXES = ("/static/",)
LOGIN_PATH = "/login"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
LoginPage = Callable[[Scope], bytes]

SECURITY_HEADERS = (
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
)


def check_token(token: str | None) -> str | None:
    """``token`` if it is good enough to guard the dashboard (``None``: no token).

    ``ValueError`` for one shorter than :data:`MIN_TOKEN_LENGTH` characters or with
    whitespace; ``TypeError`` for a non-str. The message never shows the token.
    """
    if token is None:
        return None
    if not isinstance(token, str):
        raise TypeError(f"the dashboard token must be a str, got {type(token).__name__}")
    if len(token) < MIN_TOKEN_LENGTH or any(char.isspace() for char in token):
        raise ValueError(
            f"the dashboard token must be at least {MIN_TOKEN_LENGTH} characters without "
            "spaces; make one with: python -c 'import secrets; print(secrets.token_urlsafe())'"
        )
    return token


def is_loopback(host: str) -> bool:
    """Whether binding to ``host`` serves this machine only (127.0.0.0/8, ::1, localhost)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def route_path(scope: Scope) -> str:
    """The request path below the app's mount point (``root_path``)."""
    path = str(scope.get("path", ""))
    root = str(scope.get("root_path", ""))
    if root and path.startswith(root):
        path = path[len(root) :]
    return path or "/"


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of request header ``name`` (lowercase bytes), decoded as latin-1."""
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def cookies(scope: Scope) -> dict[str, str]:
    """The request's cookies (a malformed cookie header gives none)."""
    raw = header(scope, b"cookie")
    if not raw:
        return {}
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(raw)
    except Exception:  # http.cookies.CookieError, or worse from hostile input
        return {}
    return {key: morsel.value for key, morsel in jar.items()}


def _sign(token: str, issued: str) -> str:
    return hmac.new(
        token.encode("utf-8"), f"omniq-web-session:{issued}".encode(), hashlib.sha256
    ).hexdigest()


def session_value(token: str, now: float | None = None) -> str:
    """A session cookie value: when it was issued, and its signature by the token."""
    issued = str(int(time.time() if now is None else now))
    return f"{issued}.{_sign(token, issued)}"


def valid_session(token: str, value: str | None, now: float | None = None) -> bool:
    """Whether a session cookie was signed by ``token`` within :data:`SESSION_SECONDS`."""
    if not value or "." not in value:
        return False
    issued, signature = value.split(".", 1)
    if not issued.isdigit() or not hmac.compare_digest(signature, _sign(token, issued)):
        return False
    age = (time.time() if now is None else now) - int(issued)
    return -60 <= age <= SESSION_SECONDS


def valid_bearer(token: str, authorization: str | None) -> bool:
    """Whether an ``Authorization`` header carries ``Bearer <token>``."""
    if not authorization:
        return False
    scheme, _, credentials = authorization.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        credentials.strip().encode("utf-8"), token.encode("utf-8")
    )


def cookie_header(
    scope: Scope, name: str, value: str, *, max_age: int | None = None
) -> tuple[bytes, bytes]:
    """A ``Set-Cookie`` header: HttpOnly, SameSite=Strict, on the app's path, Secure on https."""
    path = str(scope.get("root_path", "")) or "/"
    parts = [f"{name}={value}", f"Path={path}", "HttpOnly", "SameSite=Strict"]
    if max_age is not None:
        parts.append(f"Max-Age={max_age}")
    if scope.get("scheme") == "https":
        parts.append("Secure")
    return b"set-cookie", "; ".join(parts).encode("latin-1")


def csrf_token(scope: Scope) -> str:
    """This browser's CSRF token (set by :class:`Guard` for every request)."""
    return str(scope["state"]["omniq_csrf"])


def check_csrf(scope: Scope, submitted: str | None) -> str | None:
    """Why a POST is refused as a possible cross-site request, or ``None`` if it is fine."""
    if header(scope, b"sec-fetch-site") == "cross-site":
        return "the request came from another site"
    expected = cookies(scope).get(CSRF_COOKIE)
    if not expected or not submitted:
        return "the form has no CSRF token (reload the page and try again)"
    if not hmac.compare_digest(expected.encode("utf-8"), submitted.encode("utf-8")):
        return "the form's CSRF token does not match (reload the page and try again)"
    return None


class Guard:
    """ASGI middleware: token check, CSRF cookie, security headers (module docstring)."""

    def __init__(self, app: ASGIApp, *, token: str | None, login_page: LoginPage) -> None:
        self.app = app
        self.token = token
        self.login_page = login_page

    def authorized(self, scope: Scope) -> bool:
        """Whether the request carries the token (always, without one)."""
        if self.token is None:
            return True
        if valid_bearer(self.token, header(scope, b"authorization")):
            return True
        return valid_session(self.token, cookies(scope).get(SESSION_COOKIE))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = route_path(scope)
        extra: list[tuple[bytes, bytes]] = list(SECURITY_HEADERS)
        csrf = cookies(scope).get(CSRF_COOKIE)
        if not csrf or len(csrf) > 100:
            csrf = secrets.token_urlsafe(32)
            extra.append(cookie_header(scope, CSRF_COOKIE, csrf))
        scope.setdefault("state", {})["omniq_csrf"] = csrf

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        public = path.startswith(PUBLIC_PREFIXES) or path == LOGIN_PATH
        if public or self.authorized(scope):
            await self.app(scope, receive, send_with_headers)
            return
        await self._refuse(scope, send_with_headers)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        accept = header(scope, b"accept") or ""
        if scope.get("method") == "GET" and "text/html" in accept:
            body, content_type = self.login_page(scope), b"text/html; charset=utf-8"
        else:
            body, content_type = (
                b"401 Unauthorized: this dashboard needs its token\n",
                (b"text/plain; charset=utf-8"),
            )
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", content_type),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b'Bearer realm="omniq"'),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
