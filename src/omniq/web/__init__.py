"""omniq's web dashboard: an ASGI app (Starlette) over any omniq store, SQLite included.

``create_app(AsyncOmniQ(settings))`` gives the app; serve it with ``omniq web`` (or
any ASGI server), or mount it in a Starlette/FastAPI application. It needs the
``web`` extra: ``pip install 'omniq[web]'`` (Starlette, Jinja2 and uvicorn). See
docs/dashboard.md.
"""

from __future__ import annotations

try:
    import jinja2  # noqa: F401
    import starlette  # noqa: F401
except ImportError as error:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        f"omniq.web needs the web extra ({error.name} is missing): pip install 'omniq[web]'"
    ) from error

from omniq.web.app import create_app

__all__ = ["create_app"]
