"""A Flask app that hands slow work to omniq, through the ``omniq.contrib.flask`` extension.

``POST /reports`` with ``{"text": "..."}`` enqueues a task and answers 202 with its id
at once; ``GET /reports/<id>`` tells how it is going and, when done, its result. The
store comes from the app's config (``OMNIQ_*`` keys, over the ``OMNIQ_*`` environment
variables). The tasks run in a worker process; from the repository root, in two shells::

    OMNIQ_BASE_DIR=./omniq_data flask --app examples.flask_app.app run
    OMNIQ_BASE_DIR=./omniq_data flask --app examples.flask_app.app omniq worker \\
        --import examples.flask_app.tasks

(``omniq worker --import examples.flask_app.tasks`` works too; ``flask omniq worker``
reads the app's config and runs each task in an app context.) Then
``curl -X POST localhost:5000/reports -H 'Content-Type: application/json'
-d '{"text": "to be or not to be"}'`` and ``curl localhost:5000/reports/<id>``.
Under gunicorn: ``gunicorn --preload -w 2 'examples.flask_app.app:create_app()'``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask, request, url_for

from examples.flask_app.tasks import word_report
from omniq import TaskStatus
from omniq.contrib.flask import OmniQ

# One extension for every app this module makes; each app gets its own facade, made on
# first use, shared by the server's threads, and closed when the process exits.
omniq = OmniQ()


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """The app; ``config`` adds to ``app.config`` (``OMNIQ_BASE_DIR``, ``OMNIQ_SETTINGS``...)."""
    app = Flask(__name__)
    app.config["REPORT_TOP"] = 3
    app.config.update(config or {})
    omniq.init_app(app)

    @app.post("/reports")
    def create_report() -> tuple[dict[str, Any], int]:
        payload = request.get_json(silent=True) or {}
        text = payload.get("text")
        if not isinstance(text, str) or not text.strip():
            return {"error": "send JSON with a non-empty 'text'"}, 400
        # Typed: mypy checks the arguments against word_report's own signature.
        task_id = word_report.using(omniq.facade).enqueue(text, top=app.config["REPORT_TOP"])
        return {"task_id": task_id, "url": url_for("show_report", task_id=task_id)}, 202

    @app.get("/reports/<task_id>")
    def show_report(task_id: str) -> tuple[dict[str, Any], int]:
        task = omniq.facade.get_task(task_id)
        if task is None:
            return {"error": f"no report {task_id}"}, 404
        body: dict[str, Any] = {"task_id": task_id, "status": task.status.value}
        if task.status == TaskStatus.COMPLETED:
            body["report"] = task.result
        elif task.error is not None:
            body["error"] = str(task.error)
        return body, 200

    return app
