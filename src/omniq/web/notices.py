"""What an action says on the page it returns to: a fixed text per code, and a count.

The redirect after a POST carries ``?done=<code>&n=<count>``; only these texts can
be shown, so a crafted link cannot make the dashboard say anything else.
"""

from __future__ import annotations

from starlette.requests import Request

NOTICES = {
    "retried": ("ok", "The task is pending again."),
    "not-retried": (
        "error",
        "The task was not retried: only failed or cancelled tasks can be, and not while "
        "another pending or running task holds its unique key.",
    ),
    "cancelled": ("ok", "The task was cancelled."),
    "not-cancelled": ("error", "The task was not cancelled: only pending tasks can be."),
    "retried-failed": ("ok", "{n} failed task(s) pending again."),
    "purged": ("ok", "{n} finished task(s) purged."),
}


def notice_of(request: Request) -> tuple[str, str] | None:
    """``(kind, text)`` for the request's ``done`` code, or ``None``."""
    found = NOTICES.get(request.query_params.get("done", ""))
    if found is None:
        return None
    count = request.query_params.get("n", "")
    kind, text = found
    return kind, text.format(n=int(count) if count.isdigit() else 0)
