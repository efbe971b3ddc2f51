"""A WSGI app for the fork-safety test: ``gunicorn --preload -w 3 gunicorn_app:app``.

With ``--preload`` the master imports this module once and forks the workers, so the
store is touched before ``fork()`` (the ``stats()`` below), as a real app's start-up
enqueue or health check would. Every worker then enqueues and reads on its own.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from typing import Any

from omniq import OmniQ, Settings

omniq = OmniQ(Settings.from_env())
omniq.stats()  # the store is open in the master, before gunicorn forks
omniq.enqueue("task_functions.add", args=[0, 0])


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """``POST /`` enqueues a task and answers its id, status and this worker's pid."""
    task_id = omniq.enqueue("task_functions.add", args=[1, 2])
    task = omniq.get_task(task_id)
    body = json.dumps(
        {"id": task_id, "status": None if task is None else task["status"], "pid": os.getpid()}
    ).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]
